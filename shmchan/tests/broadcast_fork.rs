//! Broadcast across processes: every subscriber process gets every message exactly once, in
//! order; subscribers join and leave by key in other processes (also after one died); a dead
//! publisher leaves its subscribers `Disconnected` once they drained.

mod broadcast_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use broadcast_support::{
    Pattern, SharedCounters, Signal, child_main, fork, key, leftover_shm, park, serial,
};
use shmchan::broadcast::{LIVENESS_INTERVAL, Publisher, Subscriber, channel};
use shmchan::{Error, Segment};

const MESSAGES: u64 = 20_000;

#[test]
fn each_of_three_subscriber_processes_gets_every_message_once_in_order() {
    let _g = serial();
    let (tx, rx0) = channel::<Pattern>(64).unwrap();
    let subs = [rx0, tx.subscribe().unwrap(), tx.subscribe().unwrap()];
    let got = SharedCounters::new(3);
    let mut children = Vec::new();
    for me in 0..3 {
        let Some(child) = fork() else {
            child_main(move || {
                // Keep this child's subscriber; the other inherited copies leave (else they
                // would hold the publisher back: they are live subscribers too), and so does
                // the copy of the publisher (else it would keep the channel connected: it
                // takes the publisher's place once the parent's leaves).
                drop(tx);
                let Some(mine) = subs.into_iter().nth(me) else {
                    return 1;
                };
                let mut next = 0;
                loop {
                    match mine.recv() {
                        Ok(m) if m.is_valid() && m.seq == next => next += 1,
                        Ok(_) => return 2,
                        Err(Error::Disconnected) => break,
                        Err(_) => return 3,
                    }
                }
                got.get()[me].store(next, Ordering::SeqCst);
                0
            })
        };
        children.push(child);
    }
    // The children hold their own copies (registered at fork); the parent's leave.
    drop(subs);
    for i in 0..MESSAGES {
        tx.send_timeout(Pattern::new(i), Duration::from_secs(10))
            .unwrap();
    }
    drop(tx);
    for c in &mut children {
        assert_eq!(c.wait(), 0);
    }
    for n in got.get() {
        assert_eq!(n.load(Ordering::SeqCst), MESSAGES);
    }
}

#[test]
fn subscribers_join_and_leave_by_key_and_reopen_after_one_died() {
    let _g = serial();
    let (name, key) = key("join");
    // One entry only: each open below needs the previous subscriber to have left or died.
    let tx = Publisher::<Pattern>::options()
        .capacity(16)
        .max_subscribers(1)
        .create(key)
        .unwrap();
    tx.send(Pattern::new(0)).unwrap(); // before anyone joined: received by no one
    let mut next = 1;
    for round in 0..3 {
        let joined = Signal::new();
        let done = Signal::new();
        let Some(mut child) = fork() else {
            child_main(|| {
                drop(tx);
                let Ok(rx) = Subscriber::<Pattern>::open(key) else {
                    return 4;
                };
                joined.notify();
                let first = match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(m) if m.is_valid() => m.seq,
                    _ => return 5,
                };
                for k in 1..5 {
                    match rx.recv_timeout(Duration::from_secs(10)) {
                        Ok(m) if m == Pattern::new(first + k) => {}
                        _ => return 6,
                    }
                }
                done.notify();
                if round == 1 {
                    park() // killed while subscribed
                }
                drop(rx);
                // Exit code: where it joined (checked by the parent).
                (first % 200) as i32 + 10
            })
        };
        joined.wait();
        assert_eq!(tx.peer_count(), 1);
        for _ in 0..5 {
            tx.send(Pattern::new(next)).unwrap();
            next += 1;
        }
        done.wait();
        let code = if round == 1 {
            child.kill()
        } else {
            child.wait()
        };
        if round == 1 {
            assert_eq!(code, 128 + libc::SIGKILL);
        } else {
            assert_eq!(code, ((next - 5) % 200) as i32 + 10, "round {round}");
        }
    }
    drop(tx);
    assert!(leftover_shm(&name[1..]).is_empty());
}

#[test]
fn a_killed_publisher_leaves_subscribers_disconnected_after_they_drained() {
    let _g = serial();
    let (name, key) = key("pubdeath");
    let created = Signal::new();
    let subscribed = Signal::new();
    let sent = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            let Ok(tx) = Publisher::<Pattern>::create(key, 8) else {
                return 4;
            };
            created.notify();
            subscribed.wait();
            for i in 0..5 {
                if tx.send(Pattern::new(i)).is_err() {
                    return 5;
                }
            }
            sent.notify();
            park()
        })
    };
    created.wait();
    let rx = Subscriber::<Pattern>::open(key).unwrap();
    assert_eq!(rx.peer_count(), 1);
    subscribed.notify();
    sent.wait();
    assert_eq!(child.kill(), 128 + libc::SIGKILL);
    let t0 = Instant::now();
    for i in 0..5 {
        assert_eq!(rx.recv().unwrap(), Pattern::new(i));
    }
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(5)),
        Err(Error::Disconnected)
    ));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // A subscriber opening now is disconnected at once; a restarted publisher reconnects it.
    let late = Subscriber::<Pattern>::open(key).unwrap();
    assert!(matches!(late.try_recv(), Err(Error::Disconnected)));
    let again = Publisher::<Pattern>::open(key).unwrap();
    again.send(Pattern::new(5)).unwrap();
    assert_eq!(late.recv().unwrap(), Pattern::new(5));
    assert_eq!(rx.recv().unwrap(), Pattern::new(5));
    drop((rx, late, again));
    // The dead creator could not unlink its name: remove it.
    Segment::open_any(key, false).unwrap().remove().unwrap();
    assert!(leftover_shm(&name[1..]).is_empty());
}

#[test]
fn a_forked_copy_of_the_publisher_publishes_only_after_the_parents_left() {
    let _g = serial();
    let (tx, rx) = channel::<u64>(8).unwrap();
    let (asked, refused, dropped) = (Signal::new(), Signal::new(), Signal::new());
    let Some(mut child) = fork() else {
        child_main(move || {
            drop(rx);
            asked.wait();
            match tx.try_send(1) {
                Err(shmchan::broadcast::TrySendError::Failed(Error::TooManyHolders {
                    side: "publisher",
                    max: 1,
                })) => {}
                _ => return 2,
            }
            refused.notify();
            dropped.wait();
            // The parent's publisher left: this copy takes its place.
            match tx.send(2) {
                Ok(()) => 0,
                Err(_) => 3,
            }
        })
    };
    asked.notify();
    refused.wait();
    drop(tx);
    dropped.notify();
    assert_eq!(child.wait(), 0);
    assert_eq!(rx.recv().unwrap(), 2);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
}

#[test]
fn a_forked_copy_of_the_publisher_keeps_subscribers_connected_after_the_parents_left() {
    let _g = serial();
    let (tx, rx) = channel::<u64>(8).unwrap();
    let checked = Signal::new();
    let Some(mut child) = fork() else {
        child_main(move || {
            drop(rx);
            checked.wait();
            // The parent's publisher left long ago: this copy takes its place.
            match tx.send(2) {
                Ok(()) => 0,
                Err(_) => 3,
            }
        })
    };
    // The child's copy is a live publisher (reserved at the fork) that has not published yet:
    // the channel is empty, not disconnected, also past a liveness scan.
    drop(tx);
    assert!(matches!(rx.try_recv(), Ok(None)));
    assert!(matches!(
        rx.recv_timeout(LIVENESS_INTERVAL * 3),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(rx.peer_count(), 1);
    checked.notify();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 2);
    assert_eq!(child.wait(), 0);
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(Error::Disconnected)
    ));
}

#[test]
fn a_copy_forked_by_a_publisher_that_was_killed_takes_its_place() {
    let _g = serial();
    let (tx, rx) = channel::<u64>(8).unwrap();
    let (forked, go) = (Signal::new(), Signal::new());
    let Some(mut middle) = fork() else {
        child_main(move || {
            drop(rx);
            // Wait for the parent's publisher to leave, then become the publisher.
            let mut n = 0;
            while tx.try_send(0).is_err() {
                n += 1;
                if n > 10_000_000 {
                    return 2;
                }
                std::hint::spin_loop();
            }
            let Some(grandchild) = fork() else {
                child_main(move || {
                    if !go.wait_timeout(20_000) {
                        return 4;
                    }
                    // Its parent was SIGKILLed holding the publisher's entry.
                    match tx.send(1) {
                        Ok(()) => 0,
                        Err(_) => 3,
                    }
                })
            };
            // It outlives this process (which is killed, not waiting for it).
            std::mem::forget(grandchild);
            forked.notify();
            park()
        })
    };
    drop(tx);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    forked.wait();
    assert_eq!(middle.kill(), 128 + libc::SIGKILL);
    // The grandchild's copy lives on: empty, not disconnected.
    assert!(matches!(
        rx.recv_timeout(LIVENESS_INTERVAL * 3),
        Err(Error::Timeout { .. })
    ));
    go.notify();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
    // The grandchild exits (reaped by init, or a zombie: both count as dead).
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(Error::Disconnected)
    ));
}

#[test]
fn a_copy_forked_while_the_table_was_full_joins_on_first_use_and_reports_what_it_missed() {
    let _g = serial();
    let (tx, rx0) = Publisher::<u64>::options()
        .capacity(4)
        .max_subscribers(2)
        .anonymous()
        .unwrap();
    let rx1 = tx.subscribe().unwrap(); // the table is full: the fork reserves nothing
    let go = Signal::new();
    let Some(mut child) = fork() else {
        child_main(move || {
            drop((tx, rx0));
            go.wait();
            // Registers now, at its old cursor 0: 20 messages were published meanwhile.
            match rx1.recv() {
                Err(Error::Lagged { missed: 16 }) => {}
                _ => return 2,
            }
            for i in 16..20 {
                if rx1.recv().ok() != Some(i) {
                    return 3;
                }
            }
            0
        })
    };
    drop(rx1); // frees the entry the child's copy takes on first use
    for i in 0..20 {
        tx.send(i).unwrap();
        assert_eq!(rx0.recv().unwrap(), i);
    }
    go.notify();
    assert_eq!(child.wait(), 0);
}
