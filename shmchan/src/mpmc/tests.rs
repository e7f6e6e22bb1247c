//! In-process tests of the mpmc handles (threads; the cross-process ones are in
//! `shmchan/tests/mpmc_*.rs`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::Error;

#[test]
fn several_threads_each_message_exactly_once_in_per_producer_order() {
    const PRODUCERS: u64 = 3;
    const PER: u64 = 20_000;
    let (tx, rx) = channel::<[u64; 2]>(8).unwrap();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..PER {
                    tx.send([p, i]).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match rx.recv() {
                        Ok(m) => got.push(m),
                        Err(Error::Disconnected) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    drop(rx);
    for p in producers {
        p.join().unwrap();
    }
    let mut seen = vec![vec![false; PER as usize]; PRODUCERS as usize];
    for c in consumers {
        let got = c.join().unwrap();
        let mut last = [None::<u64>; PRODUCERS as usize];
        for [p, i] in got {
            assert!(last[p as usize].is_none_or(|l| l < i), "reordered");
            last[p as usize] = Some(i);
            assert!(!seen[p as usize][i as usize], "duplicate {p}/{i}");
            seen[p as usize][i as usize] = true;
        }
    }
    assert!(seen.iter().flatten().all(|&s| s), "a message was lost");
}

#[test]
fn every_wait_strategy_delivers_across_threads() {
    for (ts, rs) in [
        (WaitStrategy::Block, WaitStrategy::Block),
        (WaitStrategy::Spin, WaitStrategy::Block),
        (WaitStrategy::Block, WaitStrategy::Spin),
    ] {
        let (tx, rx) = channel::<u32>(2).unwrap();
        tx.set_wait_strategy(ts);
        rx.set_wait_strategy(rs);
        let producer = std::thread::spawn(move || {
            for i in 0..5_000u32 {
                tx.send(i).unwrap();
            }
        });
        for i in 0..5_000u32 {
            assert_eq!(rx.recv().unwrap(), i, "{ts:?}/{rs:?}");
        }
        producer.join().unwrap();
    }
}

#[test]
fn disconnection_follows_the_last_handle_of_a_side() {
    let (tx, rx) = channel::<u8>(4).unwrap();
    let tx2 = tx.clone();
    drop(tx);
    assert!(!rx.is_disconnected());
    tx2.send(9).unwrap();
    drop(tx2);
    assert_eq!(rx.recv().unwrap(), 9);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    let (tx, rx) = channel::<u8>(4).unwrap();
    drop(rx);
    assert!(matches!(tx.send(1), Err(Error::Disconnected)));
}

#[test]
fn dropping_the_last_sender_wakes_a_blocked_receiver() {
    let (tx, rx) = channel::<u8>(4).unwrap();
    rx.set_wait_strategy(WaitStrategy::Block);
    let t0 = Instant::now();
    let receiver = std::thread::spawn(move || rx.recv());
    drop(tx);
    assert!(matches!(receiver.join().unwrap(), Err(Error::Disconnected)));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_full_holder_table_is_a_typed_error_for_clones() {
    let (tx, rx) = channel_with_holders::<u8>(4, 2).unwrap();
    let tx2 = tx.clone();
    let tx3 = tx.clone();
    assert!(matches!(
        tx3.try_send(1),
        Err(TrySendError::Failed(Error::TooManyHolders { max: 2, .. }))
    ));
    drop(tx2);
    // An entry is free again: the clone registers on its next operation.
    tx3.try_send(1).unwrap();
    assert_eq!(rx.recv().unwrap(), 1);
}

#[test]
fn hostile_indices_and_geometry_give_errors_not_panics() {
    let (tx, rx) = channel::<u64>(4).unwrap();
    let h = tx.endpoint().queue.header();
    for (tail, head) in [(u64::MAX, 0), (0, u64::MAX), (1 << 40, 3), (3, 1 << 63)] {
        h.tail.0.store(tail, Ordering::Relaxed);
        h.head.0.store(head, Ordering::Relaxed);
        for _ in 0..3 {
            let _ = tx.try_send(1);
            let _ = rx.try_recv();
            let _ = rx.recv_timeout(Duration::from_millis(1));
            let _ = tx.send_timeout(1, Duration::from_millis(1));
        }
    }
    h.tail.0.store(0, Ordering::Relaxed);
    h.head.0.store(5, Ordering::Relaxed);
    assert!(matches!(rx.try_recv(), Err(Error::Corrupted { .. })));
    h.meta.0.capacity.store(0, Ordering::Relaxed);
    h.head.0.store(0, Ordering::Relaxed);
    // Fill the ring so that the slow path (which re-checks the constants) runs.
    let r = (0..10).find_map(|_| tx.try_send(2).err());
    assert!(
        matches!(r, Some(TrySendError::Failed(Error::Corrupted { .. }))),
        "{r:?}"
    );
    // Garbage tables: owners and intents of random words.
    let (tx, rx) = channel::<u64>(4).unwrap();
    for e in tx.endpoint().queue.consumers().entries() {
        e.intent.store(0xdead_beef, Ordering::Relaxed);
    }
    for e in rx.endpoint().queue.producers().entries().iter().skip(1) {
        e.owner.store(u64::MAX, Ordering::Relaxed);
        e.intent.store(1, Ordering::Relaxed);
    }
    for i in 0..20 {
        let _ = tx.try_send(i);
        let _ = rx.try_recv();
    }
}

#[test]
fn counters_start_at_zero_and_capacity_rounds_up() {
    let (tx, rx) = channel::<u16>(5).unwrap();
    assert_eq!((tx.capacity(), rx.capacity()), (8, 8));
    assert_eq!(
        (tx.recovered(), tx.lost(), rx.recovered(), rx.lost()),
        (0, 0, 0, 0)
    );
    assert_eq!(tx.peer_count(), 1);
    assert!(channel::<u16>(usize::MAX).is_err());
}

#[test]
fn a_requested_capacity_of_one_holds_two_and_never_overwrites() {
    // With a single slot, Vyukov's "published" and "free for the next lap" sequence numbers
    // coincide: a second send would overwrite the first message.
    let (tx, rx) = channel::<u8>(1).unwrap();
    assert_eq!(tx.capacity(), 2);
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    assert_eq!(rx.recv().unwrap(), 1);
    assert_eq!(rx.recv().unwrap(), 2);
    assert_eq!(rx.try_recv().unwrap(), None);
}
