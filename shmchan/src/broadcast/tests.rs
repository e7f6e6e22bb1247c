//! In-process unit tests of the broadcast channel (cross-process ones are in
//! `tests/broadcast_*.rs`).

use std::time::Duration;

use super::*;
use crate::Error;

#[test]
fn every_subscriber_gets_every_message_in_order() {
    let (tx, a) = channel::<u64>(8).unwrap();
    let b = tx.subscribe().unwrap();
    for round in 0..10u64 {
        for i in 0..6 {
            tx.send(round * 6 + i).unwrap();
        }
        for i in 0..6 {
            assert_eq!(a.recv().unwrap(), round * 6 + i);
            assert_eq!(b.try_recv().unwrap(), Some(round * 6 + i));
        }
    }
    assert_eq!(a.try_recv().unwrap(), None);
}

#[test]
fn block_mode_waits_for_the_slowest_and_a_dropped_one_stops_counting() {
    let (tx, fast) = channel::<u32>(4).unwrap();
    let slow = tx.subscribe().unwrap();
    for i in 0..4 {
        tx.send(i).unwrap();
    }
    for i in 0..4 {
        assert_eq!(fast.recv().unwrap(), i);
    }
    assert!(matches!(tx.try_send(9), Err(TrySendError::Full(9))));
    assert_eq!(slow.recv().unwrap(), 0);
    // `slow` stores its cursor lazily; an empty ring or the stride makes it visible.
    let mut n = 1;
    while tx.try_send(4).is_err() {
        assert_eq!(slow.recv().unwrap(), n);
        n += 1;
    }
    drop(slow);
    for i in 5..12 {
        tx.send_timeout(i, Duration::from_secs(5)).unwrap();
        assert_eq!(fast.recv().unwrap(), i - 1);
    }
}

#[test]
fn drop_oldest_reports_the_exact_lag_once_then_continues_with_the_oldest() {
    let (tx, rx) = Publisher::<u64>::options()
        .capacity(8)
        .overflow(Overflow::DropOldest)
        .anonymous()
        .unwrap();
    for i in 0..20 {
        tx.send(i).unwrap();
    }
    assert!(matches!(rx.try_recv(), Err(Error::Lagged { missed: 12 })));
    for i in 12..20 {
        assert_eq!(rx.recv().unwrap(), i);
    }
    assert_eq!(rx.try_recv().unwrap(), None);
}

#[test]
fn a_subscriber_joins_at_the_newest_message_and_sees_disconnection_after_draining() {
    let (tx, rx) = channel::<u8>(4).unwrap();
    tx.send(1).unwrap();
    let late = tx.subscribe().unwrap();
    tx.send(2).unwrap();
    drop(tx);
    assert_eq!(late.recv().unwrap(), 2);
    assert!(matches!(late.recv(), Err(Error::Disconnected)));
    assert_eq!(rx.recv().unwrap(), 1);
    assert_eq!(rx.recv().unwrap(), 2);
    assert!(matches!(rx.try_recv(), Err(Error::Disconnected)));
}

#[test]
fn a_full_subscriber_table_is_a_typed_error_and_frees_on_drop() {
    let (tx, rx) = Publisher::<u8>::options()
        .max_subscribers(2)
        .anonymous()
        .unwrap();
    let b = tx.subscribe().unwrap();
    assert!(matches!(
        tx.subscribe(),
        Err(Error::TooManyHolders {
            side: "subscriber",
            max: 2
        })
    ));
    drop(b);
    let c = tx.subscribe().unwrap();
    tx.send(3).unwrap();
    assert_eq!((rx.recv().unwrap(), c.recv().unwrap()), (3, 3));
}

#[test]
fn bad_options_are_invalid_arguments() {
    assert!(matches!(
        channel::<u8>(0),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Publisher::<u8>::options().max_subscribers(0).anonymous(),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Publisher::<u8>::options().max_subscribers(5000).anonymous(),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn a_batch_reports_a_lag_and_the_next_batch_continues_after_it() {
    let (tx, rx) = Publisher::<u64>::options()
        .capacity(4)
        .overflow(Overflow::DropOldest)
        .anonymous()
        .unwrap();
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    assert_eq!(rx.try_recv().unwrap(), Some(0));
    // Positions 1 and 2 were known published; the slots are overwritten meanwhile, which the
    // stamps tell (a lap a drain meets after its first message is reported by the next call).
    for i in 3..9 {
        tx.send(i).unwrap();
    }
    let mut got = Vec::new();
    assert!(matches!(
        rx.try_recv_batch(&mut got, 10),
        Err(Error::Lagged { missed: 4 })
    ));
    assert_eq!(rx.try_recv_batch(&mut got, 10).unwrap(), 4);
    assert_eq!(got, [5, 6, 7, 8]);
}

#[test]
fn a_slot_rewritten_to_an_older_stamp_is_reported_once_and_skipped() {
    let (tx, rx) = channel::<u64>(4).unwrap();
    tx.send(10).unwrap();
    tx.send(11).unwrap();
    let ring = &rx.ring_for_tests();
    let (stamp, _) = ring.slot_for_tests(0);
    stamp.store(0, std::sync::atomic::Ordering::Relaxed); // "never written"
    assert!(matches!(rx.try_recv(), Err(Error::Corrupted { .. })));
    assert_eq!(rx.try_recv().unwrap(), Some(11));
    assert_eq!(rx.try_recv().unwrap(), None);
}

#[test]
fn a_wait_set_wakes_on_a_broadcast_message_and_on_the_publishers_departure() {
    let (tx, rx) = channel::<u64>(4).unwrap();
    let (other_tx, other_rx) = crate::mpmc::channel::<u64>(4).unwrap();
    let mut set = crate::WaitSet::new();
    let quiet = set.add(&other_rx);
    let sub = set.add(&rx);
    let publisher = set.add(&tx);
    assert_ne!(quiet, sub);
    // The publisher has room: it is ready.
    assert_eq!(set.wait(Some(Duration::from_secs(5))).unwrap(), publisher);
    drop(set);
    let mut set = crate::WaitSet::new();
    set.add(&other_rx);
    let sub = set.add(&rx);
    assert!(set.wait(Some(Duration::from_millis(30))).is_err());
    tx.send(7).unwrap();
    assert_eq!(set.wait(Some(Duration::from_secs(5))).unwrap(), sub);
    assert_eq!(rx.try_recv().unwrap(), Some(7));
    drop(tx);
    assert_eq!(set.wait(Some(Duration::from_secs(5))).unwrap(), sub);
    assert!(matches!(rx.try_recv(), Err(Error::Disconnected)));
    drop(other_tx);
}

#[test]
fn a_loaned_slot_reads_as_being_written_and_a_moved_cursor_makes_its_send_publish_nothing() {
    use std::sync::atomic::Ordering;

    let (mut tx, rx) = channel::<u64>(2).unwrap();
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(rx.recv().unwrap(), 1);
    assert_eq!(rx.recv().unwrap(), 2);
    // Position 2 reuses message 0's slot: while it is loaned, a copy of position 0 (a late
    // subscriber's) is rejected instead of mixing the two.
    let slot = tx.loan().unwrap();
    assert!(matches!(rx.ring_for_tests().read(0), ring::Read::Lapped));
    // Another process moves the publisher's cursor meanwhile: the loan publishes nothing.
    let tail = &rx.ring_for_tests().header().tail.0;
    tail.store(3, Ordering::Release);
    assert!(matches!(slot.send(), Err(Error::Corrupted { .. })));
    assert_eq!(tail.load(Ordering::Acquire), 3);
}
