//! Reading the payload of a shmchan segment consistently: a value through its lock, a channel's
//! indices and peers.
//!
//! The tool does not link the writer's Rust type: the library's format decoders
//! ([`shmchan::format`]) follow the lock protocols on the raw words, and this module turns what
//! they return into values, text and JSON.

use std::time::Duration;

use serde_json::{Value as Json, json};
use shmchan::LockKind;
use shmchan::format::ByteSource;
use shmchan::format::liveness::{Liveness, SideState};
use shmchan::format::mpmc::{MpmcHolder, MpmcState};
use shmchan::format::ring::RingState;
use shmchan::format::seqlock::{self, WriterLock};

use crate::probe::Header;
use crate::value::{self, Value};

/// A value read from a segment.
pub struct ReadValue {
    /// The decoded value.
    pub value: Value,
    /// Its type.
    pub ty: crate::ty::Ty,
    /// How it was read (`seqlock, sequence 12`, ...).
    pub how: String,
    /// Who holds the writer lock, if anyone (seqlock).
    pub writer: Option<String>,
}

/// How long a reader retries before reporting that writers never let it see a stable value.
const READ_DEADLINE: Duration = Duration::from_millis(500);

/// Reads the stored value of a `value` segment.
pub fn read_value(seg: &dyn ByteSource, h: &Header, creator_uid: u32) -> Result<ReadValue, String> {
    let ty = h.layout.as_ref().ok_or_else(|| {
        h.layout_error
            .clone()
            .unwrap_or_else(|| "no layout descriptor".to_owned())
    })?;
    let d = h.decoded.as_deref().ok_or("the header is not valid")?;
    // Bound every size by the payload (itself checked against the segment) before allocating:
    // a hostile header must not make the tool allocate what it claims.
    if d.type_size > d.payload_len {
        return Err(format!(
            "the {}-byte value does not fit the {}-byte payload",
            d.type_size, d.payload_len
        ));
    }
    let base = d.payload_off;
    match d.lock_kind {
        LockKind::SeqLock => {
            let snap = seqlock::read_snapshot(seg, d, READ_DEADLINE).map_err(|e| e.to_string())?;
            Ok(ReadValue {
                value: value::decode(ty, &snap.bytes, 0)?,
                ty: ty.clone(),
                how: format!(
                    "consistent snapshot under the seqlock: sequence {}, copy {}, {} attempt(s)",
                    snap.sequence, snap.copy, snap.attempts
                ),
                writer: Some(writer_text(snap.writer)),
            })
        }
        LockKind::Fcntl => {
            let path = h
                .lock_path
                .as_deref()
                .ok_or("fcntl-locked segment without a lock file path")?;
            let bytes = shmchan::tool::with_read_lock(path, creator_uid, READ_DEADLINE, || {
                seg.read_vec(base, d.type_size)
                    .map_err(|e| format!("reading the value: {e}"))
            })??;
            Ok(ReadValue {
                value: value::decode(ty, &bytes, 0)?,
                ty: ty.clone(),
                how: format!("under a read lock on {path}"),
                writer: None,
            })
        }
        _ => {
            let bytes = seg
                .read_vec(base, d.type_size)
                .map_err(|e| format!("reading the value: {e}"))?;
            Ok(ReadValue {
                value: value::decode(ty, &bytes, 0)?,
                ty: ty.clone(),
                how: "unlocked snapshot".to_owned(),
                writer: None,
            })
        }
    }
}

/// Who holds the seqlock's writer lock, and whether that thread still runs.
fn writer_text(w: WriterLock) -> String {
    let WriterLock::Held {
        tid,
        start_low32,
        pid,
    } = w
    else {
        return "free".to_owned();
    };
    // The lock records the low 32 bits of the start time: compare those.
    let alive = match shmchan::format::liveness::start_time(tid) {
        Some(t) if t as u32 == start_low32 => "alive",
        _ => "dead: the next writer takes the lock over",
    };
    match pid {
        Some(pid) => format!("held by thread {tid} of pid {pid} ({alive})"),
        None => format!("held by thread {tid} ({alive})"),
    }
}

/// A channel's state: JSON and text lines.
pub fn channel_state(seg: &dyn ByteSource, h: &Header) -> Result<(Json, Vec<String>), String> {
    let d = h.decoded.as_deref().ok_or("the header is not valid")?;
    let st = RingState::read(seg, d).map_err(|e| e.to_string())?;
    let (cap, slot) = (st.meta.capacity, st.meta.slot_size);
    let messages: Vec<(u64, Value)> = match ty_of(h) {
        Some(ty) => st
            .peek(seg, d, PEEK_MAX)
            .into_iter()
            .filter_map(|(j, b)| value::decode(ty, &b, 0).ok().map(|v| (j, v)))
            .collect(),
        None => Vec::new(),
    };
    let sender = side(&st.sender);
    let receiver = side(&st.receiver);
    let mut lines = vec![
        format!(
            "channel   capacity {cap} x {slot} bytes, head {}, tail {}, {}",
            st.head,
            st.tail,
            match st.queued {
                Some(q) => format!("{q} queued ({}% full)", q * 100 / cap.max(1)),
                None => format!(
                    "IMPOSSIBLE indices (tail - head = {} > capacity): corrupted",
                    st.tail.wrapping_sub(st.head)
                ),
            }
        ),
        format!("  sender    {}", sender.0),
        format!("  receiver  {}", receiver.0),
    ];
    if st.queued.is_none() {
        lines.push("  (a process wrote outside the protocol; recreate the channel)".to_owned());
    }
    if !messages.is_empty() {
        lines.push(format!(
            "next {} message(s) (the oldest first; any the receiver took meanwhile are left out):",
            messages.len()
        ));
        for (index, v) in &messages {
            let fields: Vec<String> = ty_of(h)
                .map(|t| value::flatten(v, t))
                .unwrap_or_default()
                .into_iter()
                .map(|(p, _, val)| format!("{p}={val}"))
                .collect();
            lines.push(format!("  #{index}  {}", fields.join(", ")));
        }
    }
    let j = json!({
        "capacity": cap,
        "slot_size": slot,
        "head": st.head,
        "tail": st.tail,
        "queued": st.queued,
        "indices_valid": st.queued.is_some(),
        "sender": sender.1,
        "receiver": receiver.1,
        "next_messages": messages
            .iter()
            .map(|(i, v)| json!({ "index": i, "value": value::to_json(v) }))
            .collect::<Vec<_>>(),
    });
    Ok((j, lines))
}

/// The most queued messages `inspect` decodes.
const PEEK_MAX: u64 = 8;

fn ty_of(h: &Header) -> Option<&crate::ty::Ty> {
    h.layout.as_ref()
}

/// One side's liveness record: text and JSON.
fn side(s: &SideState) -> (String, Json) {
    let holders: Vec<(u32, Liveness)> = s.holders.iter().map(|h| (h.pid, h.liveness())).collect();
    let state = if s.closed {
        "closed"
    } else if !s.attached {
        "not yet attached"
    } else if s.all_holders_dead() {
        "all holders dead (peer will see it disconnected)"
    } else {
        "connected"
    };
    let list: Vec<String> = holders
        .iter()
        .map(|(p, l)| format!("pid {p} ({})", l.as_str()))
        .collect();
    let text = format!(
        "{state}{}{}",
        if list.is_empty() {
            String::new()
        } else {
            format!(": {}", list.join(", "))
        },
        if s.untracked {
            " (untracked: too many holders)"
        } else {
            ""
        }
    );
    let j = json!({
        "state": state,
        "closed": s.closed,
        "holders": holders.iter().map(|(p, l)| json!({"pid": p, "liveness": l.as_str()})).collect::<Vec<_>>(),
        "untracked": s.untracked,
    });
    (text, j)
}

/// An mpmc queue's state: JSON and text lines (capacity, indices, recovery counters, and each
/// side's holders with what they hold).
pub fn mpmc_state(seg: &dyn ByteSource, h: &Header) -> Result<(Json, Vec<String>), String> {
    let d = h.decoded.as_deref().ok_or("the header is not valid")?;
    let st = MpmcState::read(seg, d).map_err(|e| e.to_string())?;
    let cap = st.meta.capacity;
    let holders = |v: &[MpmcHolder]| -> (String, Json) {
        let text: Vec<String> = v
            .iter()
            .map(|x| {
                format!(
                    "pid {} ({}{})",
                    x.pid,
                    x.liveness().as_str(),
                    x.holding
                        .map_or(String::new(), |m| format!(", holding #{m}"))
                )
            })
            .collect();
        let j: Vec<Json> = v
            .iter()
            .map(|x| {
                json!({
                    "pid": x.pid,
                    "liveness": x.liveness().as_str(),
                    "holding": x.holding,
                    "reservation": x.reservation,
                })
            })
            .collect();
        (
            if text.is_empty() {
                "none".to_owned()
            } else {
                text.join(", ")
            },
            Json::Array(j),
        )
    };
    let (ptext, pjson) = holders(&st.producers);
    let (ctext, cjson) = holders(&st.consumers);
    let lines = vec![
        format!(
            "mpmc      capacity {cap} x {} bytes, head {}, tail {}, {}",
            st.meta.slot_size,
            st.head,
            st.tail,
            match st.queued {
                Some(q) => format!("{q} queued ({}% full)", q * 100 / cap.max(1)),
                None => "IMPOSSIBLE indices: corrupted".to_owned(),
            }
        ),
        format!(
            "  recovered {} slot(s) of producers that died before publishing; lost {} message(s) whose consumer died holding them",
            st.recovered, st.lost
        ),
        format!("  producers {ptext}"),
        format!("  consumers {ctext}"),
    ];
    let j = json!({
        "capacity": cap,
        "slot_size": st.meta.slot_size,
        "head": st.head,
        "tail": st.tail,
        "queued": st.queued,
        "indices_valid": st.queued.is_some(),
        "recovered": st.recovered,
        "lost": st.lost,
        "producers": pjson,
        "consumers": cjson,
    });
    Ok((j, lines))
}
