//! In-process tests of the channel handles (threads; the cross-process ones are in
//! `shmchan/tests/channel_*.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::Error;

#[test]
fn messages_arrive_in_order_across_threads() {
    let (tx, rx) = channel::<u64>(8).unwrap();
    let producer = std::thread::spawn(move || {
        for i in 0..20_000u64 {
            tx.send(i).unwrap();
        }
    });
    for i in 0..20_000u64 {
        assert_eq!(rx.recv().unwrap(), i);
    }
    producer.join().unwrap();
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
}

#[test]
fn every_wait_strategy_delivers_across_threads() {
    for (ts, rs) in [
        (WaitStrategy::Block, WaitStrategy::Block),
        (WaitStrategy::Spin, WaitStrategy::Block),
        (WaitStrategy::Block, WaitStrategy::Spin),
        (WaitStrategy::Adaptive, WaitStrategy::Adaptive),
    ] {
        let (tx, rx) = channel::<[u32; 3]>(2).unwrap();
        tx.set_wait_strategy(ts);
        rx.set_wait_strategy(rs);
        let producer = std::thread::spawn(move || {
            for i in 0..5_000u32 {
                tx.send([i, i + 1, i + 2]).unwrap();
            }
        });
        for i in 0..5_000u32 {
            assert_eq!(rx.recv().unwrap(), [i, i + 1, i + 2], "{ts:?}/{rs:?}");
        }
        producer.join().unwrap();
    }
}

#[test]
fn batches_keep_order_and_wrap_around() {
    let (tx, rx) = channel::<u32>(16).unwrap();
    let producer = std::thread::spawn(move || {
        let data: Vec<u32> = (0..10_000).collect();
        for chunk in data.chunks(7) {
            tx.send_batch(chunk).unwrap();
        }
    });
    let mut got = Vec::new();
    while got.len() < 10_000 {
        rx.recv_batch(&mut got, 5).unwrap();
    }
    producer.join().unwrap();
    assert!(got.iter().copied().eq(0..10_000));
}

#[test]
fn dropping_the_sender_wakes_a_blocked_receiver() {
    let (tx, rx) = channel::<u8>(4).unwrap();
    rx.set_wait_strategy(WaitStrategy::Block);
    let receiver = std::thread::spawn(move || rx.recv());
    std::thread::sleep(Duration::from_millis(20)); // let it block (not needed for correctness)
    drop(tx);
    assert!(matches!(receiver.join().unwrap(), Err(Error::Disconnected)));
}

#[test]
fn dropping_the_receiver_wakes_a_blocked_sender() {
    let (tx, rx) = channel::<u8>(1).unwrap();
    tx.send(1).unwrap();
    let sender = std::thread::spawn(move || tx.send(2));
    std::thread::sleep(Duration::from_millis(20));
    drop(rx);
    assert!(matches!(sender.join().unwrap(), Err(Error::Disconnected)));
}

#[test]
fn receiver_drains_before_reporting_disconnected() {
    let (tx, rx) = channel::<u16>(8).unwrap();
    tx.send_batch(&[1, 2, 3]).unwrap();
    drop(tx);
    assert_eq!(rx.try_recv().unwrap(), Some(1));
    let mut out = Vec::new();
    assert_eq!(rx.try_recv_batch(&mut out, 8).unwrap(), 2);
    assert!(matches!(rx.try_recv(), Err(Error::Disconnected)));
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
}

#[test]
fn timeouts_expire_and_hand_the_message_back() {
    let (tx, rx) = channel::<u32>(1).unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(5)),
        Err(Error::Timeout { .. })
    ));
    tx.send(1).unwrap();
    match tx.send_timeout(9, Duration::from_millis(5)) {
        Err(SendTimeoutError::Timeout(9)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(matches!(tx.try_send(9), Err(TrySendError::Full(9))));
}

#[test]
fn absurd_capacities_are_refused() {
    assert!(matches!(
        channel::<u8>(0),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        channel::<u8>(usize::MAX),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        channel::<[u8; 4096]>((1 << 32) + 1),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn scribbled_indices_are_reported_as_corruption() {
    let (tx, rx) = channel::<u64>(4).unwrap();
    // Both ends in use (roles claimed, indices taken) before the scribbling.
    assert_eq!(rx.try_recv().unwrap(), None);
    tx.send(1).unwrap();
    // Another "process" moves tail far ahead of head.
    tx.ring_header().tail.0.store(1_000, Ordering::Relaxed);
    // The committed message is delivered; the next look at the (empty) ring validates it.
    assert_eq!(rx.try_recv().unwrap(), Some(1));
    assert!(matches!(rx.try_recv(), Err(Error::Corrupted { .. })));
    assert!(matches!(
        tx.try_send(2),
        Err(TrySendError::Failed(Error::Corrupted { .. }))
    ));
}

#[test]
fn a_changed_capacity_is_reported_as_corruption() {
    let (tx, rx) = channel::<u64>(4).unwrap();
    tx.ring_header().scribble_capacity(1 << 20);
    assert!(matches!(rx.try_recv(), Err(Error::Corrupted { .. })));
}

fn unit_key(what: &str) -> crate::Key {
    crate::Key::name(&format!("/shmchan-unit-{what}-{}", std::process::id())).unwrap()
}

#[test]
fn index_u64_max_is_refused_when_an_end_attaches() {
    let key = unit_key("max");
    let tx = Sender::<u64>::create(key, 4).unwrap();
    // A scribbler sets both indices to u64::MAX before the receiver opens: slot MAX's stamp
    // would be MAX + 1 = 0, what a never-used slot holds (a phantom message).
    let header = tx.ring_header();
    header.head.0.store(u64::MAX, Ordering::Relaxed);
    header.tail.0.store(u64::MAX, Ordering::Relaxed);
    match Receiver::<u64>::open(key) {
        Err(Error::Corrupted { .. }) => {}
        Ok(rx) => panic!("opened; then try_recv gave {:?}", rx.try_recv()),
        Err(e) => panic!("unexpected {e}"),
    }
    assert!(matches!(
        tx.try_send(1),
        Err(TrySendError::Failed(Error::Corrupted { .. }))
    ));
}

#[test]
fn indices_near_u64_max_in_use_are_reported_not_overflowed() {
    let (tx, rx) = channel::<u64>(4).unwrap();
    assert_eq!(rx.try_recv().unwrap(), None);
    tx.send(1).unwrap();
    let header = tx.ring_header();
    header.head.0.store(u64::MAX, Ordering::Relaxed);
    header.tail.0.store(u64::MAX, Ordering::Relaxed);
    assert!(matches!(rx.try_recv(), Err(Error::Corrupted { .. })));
    let mut out = Vec::new();
    assert!(matches!(
        rx.try_recv_batch(&mut out, 4),
        Err(Error::Corrupted { .. })
    ));
    assert!(matches!(
        tx.try_send(2),
        Err(TrySendError::Failed(Error::Corrupted { .. }))
    ));
    assert!(matches!(
        tx.try_send_batch(&[3, 4]),
        Err(Error::Corrupted { .. })
    ));
    assert!(matches!(rx.len(), Err(Error::Corrupted { .. })));
}

/// A small xorshift generator: deterministic scribbles.
struct Scribbler(u64);

impl Scribbler {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value a hostile peer might write: extremes, near-extremes, small numbers, noise.
    fn value(&mut self) -> u64 {
        match self.next() % 8 {
            0 => 0,
            1 => u64::MAX,
            2 => u64::MAX - (self.next() % 8),
            3 => 1 << 63,
            4 => self.next() % 16,
            5 => u64::from(std::process::id()),
            _ => self.next(),
        }
    }
}

#[test]
fn arbitrary_bytes_in_the_ring_never_panic() {
    // Runs in the test profile, with overflow checks: any arithmetic on shared words that can
    // overflow, any unchecked index or any `unwrap` on them panics here. Each round scribbles
    // between operations and re-opens the receiving end (validation on attach).
    let mut rng = Scribbler(0x9E37_79B9_7F4A_7C15);
    for round in 0..200 {
        let key = unit_key(&format!("fuzz-{round}"));
        let tx = Sender::<[u64; 3]>::create(key, 4).unwrap();
        let mut rx = Receiver::<[u64; 3]>::open(key).ok();
        tx.set_wait_strategy(WaitStrategy::Spin);
        let words = tx.memory_len() / 8;
        let base = tx.ring_header() as *const layout::RingHeader as *const AtomicU64;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for step in 0..12u64 {
                if step % 3 == 0 {
                    for _ in 0..1 + rng.next() % 3 {
                        // Bias towards the header (index and liveness words).
                        let limit = if rng.next() % 4 == 0 { words } else { 240 };
                        let i = (rng.next() % limit as u64) as usize;
                        let v = rng.value();
                        // SAFETY: `i` is within the mapping; every word of the ring is only
                        // ever accessed atomically, and this test is single-threaded.
                        unsafe { &*base.add(i) }.store(v, Ordering::Relaxed);
                    }
                }
                if step % 4 == 2 {
                    drop(rx.take());
                    rx = Receiver::<[u64; 3]>::open(key).ok();
                }
                let _ = tx.try_send([step; 3]);
                let _ = tx.try_send_batch(&[[step; 3], [step + 1; 3]]);
                let _ = tx.send_timeout([step; 3], Duration::from_micros(50));
                let _ = (tx.len_hint(), tx.is_disconnected(), format!("{tx:?}"));
                if let Some(rx) = &rx {
                    rx.set_wait_strategy(WaitStrategy::Spin);
                    let _ = rx.try_recv();
                    let mut out = Vec::new();
                    let _ = rx.try_recv_batch(&mut out, 3);
                    let _ = rx.recv_timeout(Duration::from_micros(50));
                    let _ = (rx.len(), rx.is_disconnected(), format!("{rx:?}"));
                }
            }
        }));
        assert!(r.is_ok(), "round {round} panicked");
        // Dropping reads and writes the liveness and role words too.
        drop((rx, tx));
    }
}
