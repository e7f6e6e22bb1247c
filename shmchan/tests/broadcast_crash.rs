//! Broadcast under crashes and slow subscribers: in `Block` mode a SIGKILLed subscriber stops
//! holding the publisher back within `LIVENESS_INTERVAL` (a stopped one does not); in
//! `DropOldest` mode a slow subscriber is told exactly how many messages it missed and never
//! receives a torn one.

mod broadcast_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use broadcast_support::{Pattern, SharedCounters, Signal, child_main, fork, park, serial};
use shmchan::Error;
use shmchan::broadcast::{LIVENESS_INTERVAL, Overflow, Publisher, TrySendError, channel};

/// Time a blocked publisher may take to notice a dead subscriber: one liveness interval to
/// decide the cursor is stuck, one futex timeout, and scheduling slack on a loaded machine.
const NOTICE: Duration = Duration::from_millis(500);

#[test]
fn a_sigkilled_subscriber_stops_holding_the_publisher_back_within_the_liveness_interval() {
    let _g = serial();
    let (tx, fast) = channel::<Pattern>(8).unwrap();
    let slow = tx.subscribe().unwrap();
    let read_one = Signal::new();
    let Some(mut child) = fork() else {
        child_main(move || {
            drop(fast);
            match slow.recv() {
                Ok(m) if m == Pattern::new(0) => {}
                _ => return 2,
            }
            read_one.notify();
            park()
        })
    };
    drop(slow);
    tx.send(Pattern::new(0)).unwrap();
    read_one.wait();
    assert_eq!(fast.recv().unwrap(), Pattern::new(0));
    // The child read one message, then stopped reading: the ring fills up behind it.
    let mut sent = 1;
    loop {
        match tx.try_send(Pattern::new(sent)) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(_)) => break,
            Err(e) => panic!("{e:?}"),
        }
        assert!(sent < 100, "the publisher was never held back");
        assert_eq!(fast.recv().unwrap(), Pattern::new(sent - 1));
    }
    assert!(sent <= 9, "{sent}");
    assert!(
        tx.send_timeout(Pattern::new(sent), LIVENESS_INTERVAL * 2)
            .is_err()
    );
    assert_eq!(child.kill(), 128 + libc::SIGKILL);
    let t0 = Instant::now();
    for i in sent..sent + 64 {
        tx.send_timeout(Pattern::new(i), Duration::from_secs(5))
            .unwrap();
        assert_eq!(fast.recv().unwrap(), Pattern::new(i));
    }
    let took = t0.elapsed();
    assert!(took < LIVENESS_INTERVAL + NOTICE, "{took:?}");
    assert_eq!(tx.peer_count(), 1);
}

#[test]
fn a_stopped_subscriber_is_alive_and_holds_the_publisher_back_until_it_continues() {
    let _g = serial();
    let (tx, rx) = channel::<u64>(4).unwrap();
    let ready = Signal::new();
    let Some(mut child) = fork() else {
        child_main(move || {
            ready.notify();
            for i in 0..8 {
                if rx.recv().ok() != Some(i) {
                    return 2;
                }
            }
            0
        })
    };
    drop(rx);
    ready.wait();
    child.signal(libc::SIGSTOP);
    child.wait_stopped();
    for i in 0..4 {
        tx.send(i).unwrap();
    }
    // Stopped, not dead: never dropped from the set, however long the publisher waits.
    assert!(matches!(
        tx.send_timeout(4, LIVENESS_INTERVAL * 4),
        Err(shmchan::broadcast::SendTimeoutError::Timeout(4))
    ));
    child.signal(libc::SIGCONT);
    for i in 4..8 {
        tx.send_timeout(i, Duration::from_secs(10)).unwrap();
    }
    assert_eq!(child.wait(), 0);
}

#[test]
fn drop_oldest_tells_a_slow_subscriber_exactly_how_many_it_missed() {
    let _g = serial();
    let (tx, rx) = Publisher::<Pattern>::options()
        .capacity(16)
        .overflow(Overflow::DropOldest)
        .anonymous()
        .unwrap();
    let go = Signal::new();
    let Some(mut child) = fork() else {
        child_main(move || {
            drop(tx); // else its copy keeps the channel connected
            go.wait();
            match rx.recv() {
                Err(Error::Lagged { missed: 984 }) => {}
                _ => return 2,
            }
            for i in 984..1000 {
                if rx.recv().ok() != Some(Pattern::new(i)) {
                    return 3;
                }
            }
            match rx.recv() {
                Err(Error::Disconnected) => 0,
                _ => 4,
            }
        })
    };
    drop(rx);
    for i in 0..1000 {
        tx.send(Pattern::new(i)).unwrap(); // never blocks
    }
    drop(tx);
    go.notify();
    assert_eq!(child.wait(), 0);
}

#[test]
fn drop_oldest_under_a_racing_publisher_never_yields_a_torn_message_and_accounts_for_every_one() {
    let _g = serial();
    const N: u64 = 300_000;
    let (tx, rx0) = Publisher::<Pattern>::options()
        .capacity(8)
        .overflow(Overflow::DropOldest)
        .anonymous()
        .unwrap();
    let subs = [rx0, tx.subscribe().unwrap()];
    // Per child: messages received, messages reported missed, lag reports.
    let stats = SharedCounters::new(6);
    let mut children = Vec::new();
    for me in 0..2 {
        let Some(child) = fork() else {
            child_main(move || {
                drop(tx); // else its copy keeps the channel connected
                let Some(rx) = subs.into_iter().nth(me) else {
                    return 1;
                };
                let (mut next, mut received, mut missed, mut lags) = (0u64, 0u64, 0u64, 0u64);
                loop {
                    match rx.recv() {
                        Ok(m) => {
                            if !m.is_valid() {
                                return 2; // torn
                            }
                            if m.seq != next {
                                return 3; // skipped without being told, or duplicated
                            }
                            next += 1;
                            received += 1;
                            if me == 1 && received % 64 == 0 {
                                // The slow one: a pause now and then, so it is lapped.
                                std::thread::sleep(Duration::from_micros(200));
                            }
                        }
                        Err(Error::Lagged { missed: n }) => {
                            next += n;
                            missed += n;
                            lags += 1;
                        }
                        Err(Error::Disconnected) => break,
                        Err(_) => return 4,
                    }
                }
                let s = stats.get();
                s[me * 3].store(received, Ordering::SeqCst);
                s[me * 3 + 1].store(missed, Ordering::SeqCst);
                s[me * 3 + 2].store(lags, Ordering::SeqCst);
                0
            })
        };
        children.push(child);
    }
    drop(subs);
    for i in 0..N {
        tx.send(Pattern::new(i)).unwrap();
    }
    drop(tx);
    for c in &mut children {
        assert_eq!(c.wait(), 0);
    }
    let s = stats.get();
    for me in 0..2 {
        let (received, missed) = (
            s[me * 3].load(Ordering::SeqCst),
            s[me * 3 + 1].load(Ordering::SeqCst),
        );
        assert_eq!(received + missed, N, "child {me}");
    }
    assert!(
        s[5].load(Ordering::SeqCst) > 0,
        "the slow subscriber was never lapped"
    );
}
