//! Reading the payload of a shmchan segment consistently: a value through its lock, a channel's
//! indices and peers.
//!
//! The tool does not link the writer's Rust type, so it follows the lock protocols on raw words,
//! mirroring the library's layouts (`shmchan/src/sync/seqlock.rs`, `shmchan/src/channel/ring.rs`,
//! `docs/locking.md`, `docs/channels.md`). The tests of this crate create real segments through
//! the library and check what the tool reads, so a layout change there fails here.

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::probe::Header;
use crate::procfs;
use crate::sys::{self, SegmentBytes};
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

/// The seqlock region at the start of the payload: owner lock words on the first 128-byte line,
/// the sequence on the second, then two copies of the value, each padded to 128 bytes.
mod seq {
    pub const OWNER: u64 = 0;
    pub const OWNER_INFO: u64 = 8;
    pub const SEQUENCE: u64 = 128;
    pub const COPIES: u64 = 256;
    pub const ALIGN: u64 = 128;
}

/// How long a reader retries before reporting that writers never let it see a stable value.
const READ_DEADLINE: Duration = Duration::from_millis(500);

/// Reads the stored value of a `value` segment.
pub fn read_value(seg: &dyn SegmentBytes, h: &Header) -> Result<ReadValue, String> {
    let ty = h.layout.as_ref().ok_or_else(|| {
        h.layout_error
            .clone()
            .unwrap_or_else(|| "no layout descriptor".to_owned())
    })?;
    // Bound every size by the payload (itself checked against the segment) before allocating:
    // a hostile header must not make the tool allocate what it claims.
    if h.type_size > h.payload_len {
        return Err(format!(
            "the {}-byte value does not fit the {}-byte payload",
            h.type_size, h.payload_len
        ));
    }
    let size = usize::try_from(h.type_size).map_err(|_| "type size too large".to_owned())?;
    let base = h.payload_off;
    match h.lock_kind {
        1 => read_seqlock(seg, h, base, size, ty),
        2 => {
            let path = h
                .lock_path
                .as_deref()
                .ok_or("fcntl-locked segment without a lock file path")?;
            let bytes = sys::with_read_lock(path, READ_DEADLINE, || {
                seg.read_vec(base, size)
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
                .read_vec(base, size)
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

fn read_seqlock(
    seg: &dyn SegmentBytes,
    h: &Header,
    base: u64,
    size: usize,
    ty: &crate::ty::Ty,
) -> Result<ReadValue, String> {
    // The writer copies whole u64 words: read the same words (never a different access size).
    // `size <= payload_len` (checked by the caller), so none of this overflows.
    let words_len = size.div_ceil(8) * 8;
    let stride = (words_len as u64).next_multiple_of(seq::ALIGN);
    let need = seq::COPIES + 2 * stride;
    if h.payload_len < need {
        return Err(format!(
            "payload of {} bytes is too small for a seqlock over a {size}-byte value ({need} bytes)",
            h.payload_len
        ));
    }
    let io = |e: std::io::Error| format!("reading the value: {e}");
    let deadline = Instant::now() + READ_DEADLINE;
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let s1 = seg.load_u64_acquire(base + seq::SEQUENCE).map_err(io)?;
        // Latch variant: copy `s1 & 1` is the one no writer is writing while `seq == s1`.
        let copy = base + seq::COPIES + (s1 & 1) * stride;
        let bytes = seg.read_vec(copy, words_len).map_err(io)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let s2 = seg.load_u64_acquire(base + seq::SEQUENCE).map_err(io)?;
        if s1 == s2 {
            let value = value::decode(ty, &bytes[..size], 0)?;
            let writer = writer_of(seg, base);
            return Ok(ReadValue {
                value,
                ty: ty.clone(),
                how: format!(
                    "consistent snapshot under the seqlock: sequence {s1}, copy {}, {attempts} attempt(s)",
                    s1 & 1
                ),
                writer,
            });
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the sequence kept moving for {READ_DEADLINE:?} ({attempts} attempts): writers too busy to read a stable value"
            ));
        }
        std::thread::yield_now();
    }
}

/// Who holds the seqlock's writer lock: `(tid << 32) | start_low32`, plus `(pid << 32) | tid`
/// of the latest owner.
fn writer_of(seg: &dyn SegmentBytes, base: u64) -> Option<String> {
    let owner = seg.load_u64_acquire(base + seq::OWNER).ok()?;
    if owner == 0 {
        return Some("free".to_owned());
    }
    let tid = (owner >> 32) as u32;
    let info = seg.load_u64_acquire(base + seq::OWNER_INFO).unwrap_or(0);
    let pid = if (info as u32) == tid {
        (info >> 32) as u32
    } else {
        0
    };
    // The lock records the low 32 bits of the start time: compare those.
    let alive = match procfs::start_time(tid) {
        Some(t) if t as u32 == owner as u32 => "alive",
        _ => "dead: the next writer takes the lock over",
    };
    Some(if pid != 0 {
        format!("held by thread {tid} of pid {pid} ({alive})")
    } else {
        format!("held by thread {tid} ({alive})")
    })
}

/// The SPSC ring at the start of a channel's payload (`shmchan/src/channel/ring.rs`): constant
/// meta on line 0, `tail` (producer) on line 1, `head` (consumer) on line 2, the futex words,
/// then each side's liveness record.
mod ring {
    pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMRING1");
    pub const CAPACITY: u64 = 8;
    pub const SLOT_SIZE: u64 = 16;
    pub const SLOTS_OFFSET: u64 = 32;
    pub const TAIL: u64 = 128;
    pub const HEAD: u64 = 256;
    pub const SENDER: u64 = 640;
    pub const RECEIVER: u64 = 1280;
    /// Side: state u32 (bit 0 closed), attached u32, untracked u32, reserved u32, then holders
    /// `{pid u32, reserved u32, start u64}`, then the role word u64 at 528.
    pub const HOLDERS: u64 = 16;
    pub const HOLDER_LEN: u64 = 16;
    pub const MAX_HOLDERS: u64 = 32;
}

/// A channel's state: JSON and text lines.
pub fn channel_state(seg: &dyn SegmentBytes, h: &Header) -> Result<(Json, Vec<String>), String> {
    let base = h.payload_off;
    let io = |e: std::io::Error| format!("reading the ring: {e}");
    let word = |off: u64| -> Result<u64, String> { seg.load_u64_acquire(base + off).map_err(io) };
    let magic = word(0)?;
    if magic != ring::MAGIC {
        return Err(format!(
            "no ring magic (found {magic:#018x}): not initialised or overwritten"
        ));
    }
    let cap = word(ring::CAPACITY)?;
    let slot = word(ring::SLOT_SIZE)?;
    let slots_off = word(ring::SLOTS_OFFSET)?;
    if !cap.is_power_of_two() || (h.capacity != 0 && cap != h.capacity) {
        return Err(format!(
            "impossible capacity {cap} (header says {})",
            h.capacity
        ));
    }
    if slots_off
        .checked_add(cap.saturating_mul(slot))
        .is_none_or(|end| end > h.payload_len)
    {
        return Err(format!(
            "slots ({cap} x {slot} bytes at {slots_off}) lie outside the {}-byte payload",
            h.payload_len
        ));
    }
    // Head first: the consumer only moves it towards tail, so reading tail second keeps
    // `tail - head` from going negative on a live channel.
    let head = word(ring::HEAD)?;
    let tail = word(ring::TAIL)?;
    // The consumer may take a stamped message before the producer publishes `tail`
    // (channel/ring.rs): `tail` lagging `head` by exactly one is a live channel, nothing queued.
    let lagging = head == tail.wrapping_add(1);
    let queued = if lagging { 0 } else { tail.wrapping_sub(head) };
    let valid = queued <= cap;
    let messages = if valid {
        peek_messages(
            seg,
            h,
            base,
            head,
            queued.min(PEEK_MAX),
            cap,
            slot,
            slots_off,
        )
    } else {
        Vec::new()
    };
    let sender = side(seg, base + ring::SENDER)?;
    let receiver = side(seg, base + ring::RECEIVER)?;
    let mut lines = vec![
        format!(
            "channel   capacity {cap} x {slot} bytes, head {head}, tail {tail}, {}",
            if valid {
                format!("{queued} queued ({}% full)", queued * 100 / cap.max(1))
            } else {
                format!("IMPOSSIBLE indices (tail - head = {queued} > capacity): corrupted")
            }
        ),
        format!("  sender    {}", sender.0),
        format!("  receiver  {}", receiver.0),
    ];
    if !valid {
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
        "head": head,
        "tail": tail,
        "queued": valid.then_some(queued),
        "indices_valid": valid,
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

/// Copies and decodes up to `n` messages from `head` on, without disturbing the channel.
///
/// Slot `j` holds message `j` until the consumer moves `head` past `j` (only then may the
/// producer reuse it for message `j + cap`). So: copy the slots, then re-read `head`; every copy
/// of an index still `>= head` was stable while it was copied. The `Acquire` load of `tail`
/// (by the caller) orders the producer's slot writes before our copies.
#[allow(clippy::too_many_arguments)]
fn peek_messages(
    seg: &dyn SegmentBytes,
    h: &Header,
    base: u64,
    head: u64,
    n: u64,
    cap: u64,
    slot: u64,
    slots_off: u64,
) -> Vec<(u64, Value)> {
    let Some(ty) = ty_of(h) else {
        return Vec::new();
    };
    let size = h.type_size;
    if size == 0 || size > slot {
        return Vec::new();
    }
    let mut copies = Vec::new();
    for j in head..head.saturating_add(n) {
        let at = base + slots_off + (j & (cap - 1)) * slot;
        match seg.read_vec(at, size as usize) {
            Ok(b) => copies.push((j, b)),
            Err(_) => break,
        }
    }
    std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
    let Ok(head_now) = seg.load_u64_acquire(base + ring::HEAD) else {
        return Vec::new();
    };
    copies
        .into_iter()
        .filter(|(j, _)| *j >= head_now)
        .filter_map(|(j, b)| value::decode(ty, &b, 0).ok().map(|v| (j, v)))
        .collect()
}

/// One side's liveness record: text and JSON.
fn side(seg: &dyn SegmentBytes, at: u64) -> Result<(String, Json), String> {
    let mut b = [0u8; 16];
    seg.read_at(at, &mut b)
        .map_err(|e| format!("reading a channel side: {e}"))?;
    let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    // State word: bit 0 closed, the other bits count re-opens.
    let (closed, attached, untracked) = (u32_at(0) & 1 != 0, u32_at(4) != 0, u32_at(8) != 0);
    let mut holders = Vec::new();
    for i in 0..ring::MAX_HOLDERS {
        let mut hb = [0u8; 16];
        seg.read_at(at + ring::HOLDERS + i * ring::HOLDER_LEN, &mut hb)
            .map_err(|e| format!("reading a channel holder: {e}"))?;
        let pid = u32::from_ne_bytes([hb[0], hb[1], hb[2], hb[3]]);
        if pid == 0 {
            continue;
        }
        let mut sb = [0u8; 8];
        sb.copy_from_slice(&hb[8..16]);
        let start = u64::from_ne_bytes(sb);
        holders.push((pid, procfs::liveness(pid, start)));
    }
    let state = if closed {
        "closed"
    } else if !attached {
        "not yet attached"
    } else if !holders.is_empty() && holders.iter().all(|h| h.1 == procfs::Liveness::Dead) {
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
        if untracked {
            " (untracked: too many holders)"
        } else {
            ""
        }
    );
    let j = json!({
        "state": state,
        "closed": closed,
        "holders": holders.iter().map(|(p, l)| json!({"pid": p, "liveness": l.as_str()})).collect::<Vec<_>>(),
        "untracked": untracked,
    });
    Ok((text, j))
}
