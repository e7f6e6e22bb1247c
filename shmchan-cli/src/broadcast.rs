//! How `ls` and `inspect` present a broadcast channel: the publisher's cursor and its fork
//! successors, and each subscriber with its liveness, cursor and lag, decoded by
//! `shmchan::format::broadcast`.

use serde_json::{Value as Json, json};
use shmchan::format::ByteSource;
use shmchan::format::broadcast::{BroadcastState, BroadcastSubscriber};
use shmchan::format::liveness::Liveness;
use shmchan::format::mpmc::MpmcHolder;

use crate::probe::Header;

/// A subscriber's cursor and lag as text.
fn position(s: &BroadcastSubscriber) -> String {
    match (s.cursor, s.lag) {
        (None, _) => "joining".to_owned(),
        (Some(c), Some(lag)) => format!("at #{c}, {lag} behind"),
        (Some(c), None) => format!("at #{c}, IMPOSSIBLE cursor (ahead of the publisher)"),
    }
}

/// A broadcast channel's state: JSON and text lines. The JSON's `queued` is the largest lag
/// of a live subscriber (what `ls` shows against the capacity).
pub fn broadcast_state(seg: &dyn ByteSource, h: &Header) -> Result<(Json, Vec<String>), String> {
    let d = h.decoded.as_deref().ok_or("the header is not valid")?;
    let st = BroadcastState::read(seg, d).map_err(|e| e.to_string())?;
    let cap = st.meta.capacity;
    let subs: Vec<(BroadcastSubscriber, Liveness)> =
        st.subscribers.iter().map(|s| (*s, s.liveness())).collect();
    let slowest = subs
        .iter()
        .filter(|(_, l)| *l != Liveness::Dead)
        .filter_map(|(s, _)| s.lag)
        .max()
        .unwrap_or(0);
    let publisher = st.publisher.map(|p| (p.pid, p.liveness()));
    let successors: Vec<(MpmcHolder, Liveness)> =
        st.successors.iter().map(|p| (*p, p.liveness())).collect();
    let mut lines = vec![
        format!(
            "broadcast capacity {cap} x {} bytes, {} mode, {} published, {} missed by lagging subscribers",
            st.meta.slot_size,
            if st.drop_oldest {
                "drop-oldest"
            } else {
                "block"
            },
            st.tail,
            st.missed
        ),
        format!(
            "  publisher {}",
            match publisher {
                Some((pid, l)) => format!("pid {pid} ({})", l.as_str()),
                None if !successors.is_empty() => {
                    "gone (a successor takes its place on its first send)".to_owned()
                }
                None if st.publisher_attached => "gone".to_owned(),
                None => "none yet".to_owned(),
            }
        ),
    ];
    if !successors.is_empty() {
        let list: Vec<String> = successors
            .iter()
            .map(|(p, l)| {
                format!(
                    "pid {} ({}{})",
                    p.pid,
                    l.as_str(),
                    if p.reservation {
                        ", fork reservation"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        lines.push(format!(
            "  successors (forked copies of the publisher; one takes its place once it is gone): {}",
            list.join(", ")
        ));
    }
    lines.push(format!(
        "  subscribers {} of {}{}",
        subs.len(),
        st.meta.max_subscribers,
        if subs.is_empty() { "" } else { ":" }
    ));
    for (s, l) in &subs {
        lines.push(format!(
            "    #{:<3} pid {} ({}{}), {}",
            s.holder.index,
            s.holder.pid,
            l.as_str(),
            if s.holder.reservation {
                ", fork reservation"
            } else {
                ""
            },
            position(s)
        ));
    }
    let j = json!({
        "capacity": cap,
        "slot_size": st.meta.slot_size,
        "overflow": if st.drop_oldest { "drop-oldest" } else { "block" },
        "tail": st.tail,
        "queued": slowest,
        "missed": st.missed,
        "publisher": publisher.map(|(pid, l)| json!({"pid": pid, "liveness": l.as_str()})),
        "publisher_attached": st.publisher_attached,
        "successors": successors.iter().map(|(p, l)| json!({
            "index": p.index,
            "pid": p.pid,
            "liveness": l.as_str(),
            "reservation": p.reservation,
        })).collect::<Vec<_>>(),
        "max_subscribers": st.meta.max_subscribers,
        "subscribers": subs.iter().map(|(s, l)| json!({
            "index": s.holder.index,
            "pid": s.holder.pid,
            "start_time": s.start_time,
            "liveness": l.as_str(),
            "reservation": s.holder.reservation,
            "cursor": s.cursor,
            "lag": s.lag,
        })).collect::<Vec<_>>(),
    });
    Ok((j, lines))
}
