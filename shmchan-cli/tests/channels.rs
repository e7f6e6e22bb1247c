//! Channels created through the library: the tool shows capacity, head, tail, fill level and
//! whether each end is alive.

mod common;

use common::*;
use shmchan::{Key, Receiver, Sender, ShmSafe};

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Msg {
    id: u64,
    value: f64,
}

fn holder_pids(side: &serde_json::Value) -> Vec<(u64, String)> {
    side["holders"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h["pid"].as_u64().unwrap_or(0),
                        h["liveness"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn inspect_and_ls_show_fill_level_and_peers() {
    let _s = serial();
    let key = test_key(50);
    let arg = format!("0x{:08x}", key as u32);
    let tx = Sender::<Msg>::create(Key::raw(key), 8).expect("create the sending end");
    let rx = Receiver::<Msg>::open(Key::raw(key)).expect("open the receiving end");
    for id in 0..3 {
        tx.send(Msg { id, value: 0.5 }).expect("send");
    }

    let v = json(&["inspect", &arg]);
    assert_eq!(v["shmchan"]["kind"], "channel", "{v}");
    assert_eq!(v["shmchan"]["type_name"], "Msg");
    assert_eq!(v["shmchan"]["capacity"], 8);
    let c = &v["channel"];
    assert_eq!(
        (
            c["capacity"].as_u64(),
            c["head"].as_u64(),
            c["tail"].as_u64()
        ),
        (Some(8), Some(0), Some(3)),
        "{c}"
    );
    assert_eq!(c["queued"], 3);
    assert_eq!(c["sender"]["state"], "connected", "{c}");
    assert_eq!(c["receiver"]["state"], "connected", "{c}");
    let me = u64::from(std::process::id());
    assert!(
        holder_pids(&c["sender"]).contains(&(me, "alive".into())),
        "{c}"
    );
    assert!(
        holder_pids(&c["receiver"]).contains(&(me, "alive".into())),
        "{c}"
    );
    let ids: Vec<u64> = c["next_messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["value"]["id"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids, [0, 1, 2], "{c}");
    assert_eq!(c["next_messages"][2]["value"]["value"], 0.5);
    let text = ok(&["inspect", &arg]);
    assert!(text.contains("3 queued"), "{text}");
    assert!(text.contains("#2  id=2, value=0.5"), "{text}");
    // Looking took nothing from the channel.
    assert_eq!(rx.try_recv().expect("try_recv").map(|m| m.id), Some(0));
    tx.send(Msg { id: 3, value: 0.5 }).expect("send");

    assert_eq!(rx.recv().expect("recv").id, 1);
    let shmid = v["shmid"].as_i64().expect("System V id") as i32;
    let row = ls_row_sysv(shmid).expect("listed");
    assert_eq!(row["channel"]["queued"], 2, "{row}");
    let line = ok(&["ls"])
        .lines()
        .find(|l| l.starts_with(&format!("{shmid} ")))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        line.contains("channel") && line.trim_end().ends_with("2/8"),
        "{line}"
    );

    drop(rx);
    let v = json(&["inspect", &arg]);
    assert_eq!(v["channel"]["receiver"]["state"], "closed", "{v}");
    assert_eq!(v["channel"]["sender"]["state"], "connected", "{v}");
}

#[test]
fn ls_and_inspect_decode_an_mpmc_queue() {
    let _s = serial();
    let key = test_key(53);
    let arg = format!("0x{:08x}", key as u32);
    let rx = shmchan::mpmc::Receiver::<Msg>::create(Key::raw(key), 8).expect("create the queue");
    let tx = shmchan::mpmc::Sender::<Msg>::open(Key::raw(key)).expect("open a producer");
    for id in 0..2 {
        tx.send(Msg { id, value: 1.5 }).expect("send");
    }
    let v = json(&["inspect", &arg]);
    assert_eq!(v["shmchan"]["kind"], "mpmc queue", "{v}");
    let q = &v["channel"];
    assert_eq!(
        (q["capacity"].as_u64(), q["queued"].as_u64()),
        (Some(8), Some(2)),
        "{v}"
    );
    assert_eq!(
        (q["recovered"].as_u64(), q["lost"].as_u64()),
        (Some(0), Some(0))
    );
    let me = std::process::id() as u64;
    assert!(
        holder_pids(&serde_json::json!({"holders": q["producers"]}))
            .contains(&(me, "alive".into())),
        "{q}"
    );
    assert!(
        holder_pids(&serde_json::json!({"holders": q["consumers"]}))
            .contains(&(me, "alive".into())),
        "{q}"
    );
    let text = ok(&["inspect", &arg]);
    assert!(text.contains("mpmc      capacity 8"), "{text}");
    assert!(text.contains("recovered 0 slot(s)"), "{text}");
    let row = ls_row_sysv(
        shmchan::Segment::open_any(Key::raw(key), true)
            .expect("open")
            .info()
            .expect("info")
            .shmid
            .expect("shmid"),
    )
    .expect("listed");
    assert_eq!(row["shmchan"]["kind"], "mpmc queue");
    drop((tx, rx));
}
