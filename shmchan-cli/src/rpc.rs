//! Presentation of an rpc channel (`shmchan::rpc`): its request queue, its servers and its
//! clients with the call each one waits on, decoded by `shmchan::format::rpc`.

use serde_json::{Value as Json, json};
use shmchan::format::ByteSource;
use shmchan::format::mpmc::MpmcHolder;
use shmchan::format::rpc::{RpcClient, RpcState};

use crate::probe::Header;

fn client_text(c: &RpcClient) -> String {
    let call = match (c.pending_call(), c.abandoned()) {
        (Some(call), _) => format!(", waiting on call {call}"),
        (None, true) => ", last call timed out".to_owned(),
        (None, false) => String::new(),
    };
    format!(
        "slot {} pid {} ({}{call})",
        c.holder.index,
        c.holder.pid,
        c.holder.liveness().as_str()
    )
}

fn client_json(c: &RpcClient) -> Json {
    json!({
        "slot": c.holder.index,
        "pid": c.holder.pid,
        "liveness": c.holder.liveness().as_str(),
        "reservation": c.holder.reservation,
        "pending_call": c.pending_call(),
        "abandoned": c.abandoned(),
        "request_call": c.request_call,
        "reply_call": c.reply_call,
    })
}

fn server_json(s: &MpmcHolder) -> Json {
    json!({
        "pid": s.pid,
        "liveness": s.liveness().as_str(),
        "reservation": s.reservation,
    })
}

fn list(items: Vec<String>) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// An rpc channel's state: JSON and text lines (queue fill, counters, servers, clients).
pub fn rpc_state(seg: &dyn ByteSource, h: &Header) -> Result<(Json, Vec<String>), String> {
    let d = h.decoded.as_deref().ok_or("the header is not valid")?;
    let st = RpcState::read(seg, d).map_err(|e| e.to_string())?;
    let cap = st.meta.capacity;
    let servers: Vec<String> = st
        .servers()
        .iter()
        .map(|s| format!("pid {} ({})", s.pid, s.liveness().as_str()))
        .collect();
    let clients: Vec<String> = st.clients.iter().map(client_text).collect();
    let lines = vec![
        format!(
            "rpc       {} of {} client slots in use, request queue capacity {cap}, {}",
            st.clients.len(),
            st.meta.max_clients,
            match st.queue.queued {
                Some(q) => format!("{q} request(s) pending"),
                None => "IMPOSSIBLE queue indices: corrupted".to_owned(),
            }
        ),
        format!(
            "  skipped {} stale request(s) (their client had moved on), dropped {} reply(ies) to departed clients, recovered {} queue slot(s) of clients that died while queueing",
            st.counters.stale_requests, st.counters.dropped_replies, st.queue.recovered
        ),
        format!("  servers   {}", list(servers)),
        format!("  clients   {}", list(clients)),
    ];
    let j = json!({
        "capacity": cap,
        "queued": st.queue.queued,
        "indices_valid": st.queue.queued.is_some(),
        "max_clients": st.meta.max_clients,
        "request_size": st.meta.request_size,
        "response_size": st.meta.response_size,
        "stale_requests": st.counters.stale_requests,
        "dropped_replies": st.counters.dropped_replies,
        "recovered": st.queue.recovered,
        "lost": st.queue.lost,
        "servers": st.servers().iter().map(server_json).collect::<Vec<_>>(),
        "clients": st.clients.iter().map(client_json).collect::<Vec<_>>(),
    });
    Ok((j, lines))
}
