//! Broadcast channels created through the library: `ls` and `inspect` show the publisher, the
//! mode, and each subscriber's liveness, cursor and lag.

mod common;

use common::*;
use shmchan::Key;
use shmchan::broadcast::{Overflow, Publisher, Subscriber};

#[test]
fn ls_and_inspect_show_cursors_and_lag_per_subscriber() {
    let _s = serial();
    let key = test_key(60);
    let arg = format!("0x{:08x}", key as u32);
    let tx = Publisher::<u64>::options()
        .capacity(8)
        .max_subscribers(4)
        .overflow(Overflow::DropOldest)
        .create(Key::raw(key))
        .expect("create the channel");
    let reader = Subscriber::<u64>::open(Key::raw(key)).expect("subscribe");
    let idle = Subscriber::<u64>::open(Key::raw(key)).expect("subscribe");
    for i in 0..3 {
        tx.send(i).expect("send");
    }
    // The reader catches up; its cursor is stored when it finds the ring empty.
    while reader.try_recv().expect("recv").is_some() {}
    let v = json(&["inspect", &arg]);
    assert_eq!(v["shmchan"]["kind"], "broadcast", "{v}");
    let c = &v["channel"];
    assert_eq!(
        (
            c["capacity"].as_u64(),
            c["tail"].as_u64(),
            c["overflow"].as_str()
        ),
        (Some(8), Some(3), Some("drop-oldest")),
        "{c}"
    );
    let me = u64::from(std::process::id());
    assert_eq!(c["publisher"]["pid"].as_u64(), Some(me), "{c}");
    assert_eq!(c["publisher"]["liveness"], "alive", "{c}");
    let mut lags: Vec<(u64, u64)> = c["subscribers"]
        .as_array()
        .expect("subscribers")
        .iter()
        .map(|s| {
            (
                s["pid"].as_u64().unwrap_or(0),
                s["lag"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    lags.sort();
    assert_eq!(lags, vec![(me, 0), (me, 3)], "{c}");
    assert_eq!(c["queued"].as_u64(), Some(3), "{c}");
    let text = ok(&["inspect", &arg]);
    assert!(text.contains("broadcast capacity 8"), "{text}");
    assert!(text.contains("3 behind"), "{text}");
    let row = ls_row_sysv(
        shmchan::Segment::open_any(Key::raw(key), true)
            .expect("open")
            .info()
            .expect("info")
            .shmid
            .expect("shmid"),
    )
    .expect("listed");
    assert_eq!(row["shmchan"]["kind"], "broadcast");
    drop((reader, idle, tx));
}
