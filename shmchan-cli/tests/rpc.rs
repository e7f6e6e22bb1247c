//! rpc channels created through the library: `ls` and `inspect` show the kind, the pending
//! requests, the servers and every client's slot, pid, liveness and call.

mod common;

use std::time::Duration;

use common::*;
use shmchan::{Key, rpc};

#[test]
fn ls_and_inspect_show_an_rpc_channels_servers_clients_and_pending_requests() {
    let _s = serial();
    let name = format!("/shmchan-test-cli-rpc-{}", std::process::id());
    let key = Key::name(&name).expect("name");
    let server = rpc::Server::<[u64; 2], u64>::options()
        .capacity(8)
        .max_clients(4)
        .create(key)
        .expect("create the channel");
    let client = rpc::Client::<[u64; 2], u64>::connect(key).expect("connect");
    // Gives up at once: the request stays queued, the client's call is marked timed out.
    assert!(client.call([1, 2], Duration::ZERO).is_err());
    let v = json(&["inspect", &name]);
    assert_eq!(v["shmchan"]["kind"], "rpc", "{v}");
    let c = &v["channel"];
    assert_eq!(
        (
            c["capacity"].as_u64(),
            c["queued"].as_u64(),
            c["max_clients"].as_u64()
        ),
        (Some(8), Some(1), Some(4)),
        "{v}"
    );
    let me = u64::from(std::process::id());
    assert_eq!(c["servers"][0]["pid"].as_u64(), Some(me), "{c}");
    assert_eq!(c["servers"][0]["liveness"], "alive", "{c}");
    let clients = c["clients"].as_array().expect("clients");
    assert_eq!(clients.len(), 1, "{c}");
    assert_eq!(clients[0]["pid"].as_u64(), Some(me));
    assert_eq!(clients[0]["abandoned"], true, "{c}");
    assert!(clients[0]["pending_call"].is_null(), "{c}");
    let text = ok(&["inspect", &name]);
    assert!(
        text.contains(
            "rpc       1 of 4 client slots in use, request queue capacity 8, 1 request(s) pending"
        ),
        "{text}"
    );
    assert!(text.contains("last call timed out"), "{text}");
    let row = ls_row_posix(&name).expect("listed");
    assert_eq!(row["shmchan"]["kind"], "rpc", "{row}");
    drop((client, server));
    assert!(ls_row_posix(&name).is_none(), "removed with its server");
}

#[test]
fn inspect_reports_a_scribbled_rpc_channel_without_crashing() {
    let _s = serial();
    let name = format!("/shmchan-test-cli-rpc-hostile-{}", std::process::id());
    let key = Key::name(&name).expect("name");
    let server = rpc::Server::<u64, u64>::create(key, 4).expect("create the channel");
    let seg = shmchan::Segment::open_any(key, false).expect("open raw");
    let words = seg.payload_len() / 8;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..40 {
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = if round % 2 == 0 {
                x as usize % 16
            } else {
                x as usize % words
            };
            seg.atomic_u64(i)
                .expect("in the payload")
                .store(x.rotate_left(round), std::sync::atomic::Ordering::Relaxed);
        }
        let out = shmchan(&["inspect", "--json", &name]);
        assert!(
            out.status.success(),
            "round {round}: inspect failed: {out:?}"
        );
        let out = shmchan(&["ls", "--json"]);
        assert!(out.status.success(), "round {round}: ls failed: {out:?}");
    }
    drop((seg, server));
}
