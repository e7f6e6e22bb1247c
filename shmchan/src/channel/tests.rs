//! In-process tests of the channel handles (threads; the cross-process ones are in
//! `shmchan/tests/channel_*.rs`).

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
    tx.ring_header()
        .tail
        .0
        .store(1_000, std::sync::atomic::Ordering::Relaxed);
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
