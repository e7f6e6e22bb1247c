//! A broadcast segment whose bytes another process rewrote: opening reports typed errors;
//! live publishers and subscribers, and the format decoder, return errors or wrong-but-valid
//! values, never panic or hang; and nothing is left behind.

mod broadcast_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use broadcast_support::{Pattern, key, leftover_shm};
use shmchan::broadcast::{Overflow, Publisher, Subscriber};
use shmchan::format::broadcast::BroadcastState;
use shmchan::{Error, Segment};

/// Payload word indices (8-byte words) of the header fields the tests rewrite.
const MAGIC: usize = 0;
const CAPACITY: usize = 1;
const SLOT_SIZE: usize = 2;
const SLOTS_OFFSET: usize = 3;
const MAX_SUBSCRIBERS: usize = 5;
const TABLE_OFFSET: usize = 6;
const OVERFLOW: usize = 7;

#[test]
fn opening_a_rewritten_header_is_a_typed_error() {
    let (name, key) = key("hostile-open");
    let tx = Publisher::<u64>::create(key, 8).unwrap();
    let seg = Segment::open_any(key, false).unwrap();
    for (word, bad) in [
        (MAGIC, 0),
        (CAPACITY, 0),
        (CAPACITY, 3),
        (CAPACITY, u64::MAX),
        (SLOT_SIZE, 1),
        (SLOTS_OFFSET, u64::MAX),
        (MAX_SUBSCRIBERS, 0),
        (MAX_SUBSCRIBERS, u64::MAX),
        (TABLE_OFFSET, 8),
        (OVERFLOW, 7),
    ] {
        let w = seg.atomic_u64(word).unwrap();
        let good = w.swap(bad, Ordering::Relaxed);
        assert!(
            matches!(Subscriber::<u64>::open(key), Err(Error::Corrupted { .. })),
            "word {word} = {bad}"
        );
        assert!(
            BroadcastState::read(&seg, seg.header()).is_err(),
            "word {word} = {bad}"
        );
        w.store(good, Ordering::Relaxed);
    }
    assert!(Subscriber::<u64>::open(key).is_ok());
    assert!(matches!(
        Subscriber::<u32>::open(key),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        shmchan::mpmc::Receiver::<u64>::open(key),
        Err(Error::KindMismatch { .. })
    ));
    drop((tx, seg));
    assert!(leftover_shm(&name[1..]).is_empty());
}

#[test]
fn random_writes_into_a_live_channel_give_errors_or_wrong_values_never_a_panic_or_hang() {
    for (tag, overflow) in [
        ("hostile-b", Overflow::Block),
        ("hostile-d", Overflow::DropOldest),
    ] {
        let (name, key) = key(tag);
        let tx = Publisher::<Pattern>::options()
            .capacity(8)
            .max_subscribers(4)
            .overflow(overflow)
            .create(key)
            .unwrap();
        let rx = Subscriber::<Pattern>::open(key).unwrap();
        let seg = Segment::open_any(key, false).unwrap();
        let words = seg.payload_len() / 8;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let meta: Vec<u64> = (0..8)
            .map(|i| seg.atomic_u64(i).unwrap().load(Ordering::Relaxed))
            .collect();
        let t0 = Instant::now();
        for round in 0..400u64 {
            if round % 16 == 0 {
                // Repair the constants now and then, so that deeper paths are reached too.
                for (i, w) in meta.iter().enumerate() {
                    seg.atomic_u64(i).unwrap().store(*w, Ordering::Relaxed);
                }
            }
            for _ in 0..1 + next() % 4 {
                let at = (next() % words as u64) as usize;
                let value = match next() % 4 {
                    0 => 0,
                    1 => next() % 64,
                    2 => u64::from(std::process::id()),
                    _ => next(),
                };
                seg.atomic_u64(at).unwrap().store(value, Ordering::Relaxed);
            }
            let _ = tx.try_send(Pattern::new(round));
            let _ = tx.send_timeout(Pattern::new(round), Duration::from_millis(1));
            if let Ok(Some(m)) = rx.try_recv() {
                let _ = m.is_valid(); // wrong but valid
            }
            let _ = rx.recv_timeout(Duration::from_millis(1));
            let _ = (rx.lag(), rx.peer_count(), tx.peer_count(), tx.published());
            if let Ok(st) = BroadcastState::read(&seg, seg.header()) {
                assert!(st.subscribers.len() as u64 <= st.meta.max_subscribers);
            }
            let _ = Subscriber::<Pattern>::open(key).map(|s| s.try_recv().is_ok());
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
        drop((tx, rx, seg));
        assert!(leftover_shm(&name[1..]).is_empty(), "{tag}");
    }
}
