//! Reconnecting and knowing the peer is there: keyed ends re-opened after their holder left
//! or died (a restarted worker reattaches to the same name), `peer_count` / `wait_for_peer`,
//! and a sender that notices a dead receiver while its ring still has room. Real `fork` and
//! `SIGKILL`, handshakes through pipes.

use std::time::{Duration, Instant};

use shmchan::channel::LIVENESS_INTERVAL;
use shmchan::{Error, Key, Receiver, Sender};

mod fork_support;
use fork_support::{Pipe, child_main, fork, kill, serial, wait};

fn test_name(what: &str) -> String {
    format!("/shmchan-test-reconnect-{what}-{}", std::process::id())
}

fn drain(rx: &Receiver<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(m) => got.push(m),
            Err(Error::Disconnected) => return got,
            Err(e) => panic!("after {got:?}: {e}"),
        }
    }
}

#[test]
fn a_restarted_sender_reattaches_to_the_same_name_and_continues() {
    let _g = serial();
    let key = Key::name(&test_name("restart-tx")).unwrap();
    let rx = Receiver::<u64>::create(key, 64).unwrap();
    for (generation, exit_cleanly) in [(0u64, false), (1, true), (2, false)] {
        let Some(worker) = fork() else {
            child_main(|| {
                let Ok(tx) = Sender::<u64>::open(key) else {
                    return 2;
                };
                for i in 0..10 {
                    if tx.send(generation * 100 + i).is_err() {
                        return 1;
                    }
                }
                if exit_cleanly {
                    drop(tx);
                }
                // Otherwise: exits without dropping, as a crash would.
                0
            })
        };
        assert_eq!(wait(worker), 0, "worker {generation} could not (re)open");
        let expected: Vec<u64> = (0..10).map(|i| generation * 100 + i).collect();
        assert_eq!(drain(&rx), expected);
    }
}

#[test]
fn a_sigkilled_sender_is_replaced_by_a_new_one() {
    let _g = serial();
    let key = Key::name(&test_name("kill-tx")).unwrap();
    let rx = Receiver::<u64>::create(key, 64).unwrap();
    let sent = Pipe::new();
    let Some(worker) = fork() else {
        child_main(|| {
            let Ok(tx) = Sender::<u64>::open(key) else {
                return 2;
            };
            for i in 0..5 {
                let _ = tx.send(i);
            }
            sent.send(1);
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        })
    };
    sent.recv();
    // Alive: the end is taken.
    assert!(
        matches!(Sender::<u64>::open(key), Err(Error::InUse { pid, .. }) if pid == worker as u32)
    );
    kill(worker);
    wait(worker);
    // Dead: re-opened at once, even before the receiver noticed.
    let tx = Sender::<u64>::open(key).unwrap();
    tx.send(5).unwrap();
    drop(tx);
    assert_eq!(drain(&rx), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_restarted_receiver_gets_what_its_predecessor_left() {
    let _g = serial();
    let key = Key::name(&test_name("restart-rx")).unwrap();
    let tx = Sender::<u64>::create(key, 64).unwrap();
    tx.send_batch(&[0, 1, 2, 3, 4]).unwrap();
    let Some(worker) = fork() else {
        child_main(|| {
            let Ok(rx) = Receiver::<u64>::open(key) else {
                return 2;
            };
            let ok = (0..3).all(|i| rx.recv().ok() == Some(i));
            // Exits without dropping.
            if ok { 0 } else { 1 }
        })
    };
    assert_eq!(wait(worker), 0);
    // The dead receiver is noticed (a send into a ring with room, after the interval).
    let t0 = Instant::now();
    while tx.send(100).is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "dead receiver not noticed"
        );
        std::thread::sleep(Duration::from_millis(1)); // a slow producer
    }
    assert!(tx.is_disconnected());
    assert_eq!(tx.peer_count(), 0);
    let Some(worker) = fork() else {
        child_main(|| {
            let Ok(rx) = Receiver::<u64>::open(key) else {
                return 2;
            };
            // What the dead receiver left (3, 4, then the 100s sent meanwhile), then 7.
            let ok = rx.recv().ok() == Some(3) && rx.recv().ok() == Some(4);
            loop {
                match rx.recv() {
                    Ok(100) => {}
                    Ok(7) => break,
                    _ => return 1,
                }
            }
            if ok { 0 } else { 1 }
        })
    };
    assert_eq!(tx.wait_for_peer(Duration::from_secs(10)).unwrap(), 1);
    tx.send(7).unwrap();
    assert_eq!(wait(worker), 0);
}

#[test]
fn a_sender_with_room_notices_a_killed_receiver_within_the_liveness_interval() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<u64>(1024).unwrap();
    let ready = Pipe::new();
    let Some(child) = fork() else {
        child_main(|| {
            drop(tx);
            if rx.recv().ok() != Some(1) {
                return 1;
            }
            ready.send(1);
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        })
    };
    drop(rx);
    tx.send(1).unwrap();
    ready.recv();
    kill(child);
    wait(child);
    // A producer sending one message per millisecond into a ring with room for a thousand.
    let t0 = Instant::now();
    let mut sent = 0;
    let err = loop {
        match tx.send(2) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let took = t0.elapsed();
    assert!(matches!(err, Error::Disconnected), "{err}");
    assert!(
        took < 10 * LIVENESS_INTERVAL,
        "noticed after {took:?} and {sent} messages into the void"
    );
}

#[test]
fn wait_for_peer_returns_when_a_worker_opens_and_times_out_when_it_crashed_first() {
    let _g = serial();
    let key = Key::name(&test_name("wait-peer")).unwrap();
    let tx = Sender::<u64>::create(key, 8).unwrap();
    assert_eq!(tx.peer_count(), 0);
    // A worker that crashes before opening: the dispatcher does not hang.
    let Some(crashed) = fork() else {
        child_main(|| 3)
    };
    wait(crashed);
    assert!(matches!(
        tx.wait_for_peer(Duration::from_millis(50)),
        Err(Error::Timeout { .. })
    ));
    let go = Pipe::new();
    let Some(worker) = fork() else {
        child_main(|| {
            go.recv();
            let Ok(rx) = Receiver::<u64>::open(key) else {
                return 2;
            };
            // The worker holds a copy of `tx` too (inherited by fork): at least the parent.
            if rx.peer_count() == 0 || rx.recv().ok() != Some(9) {
                return 1;
            }
            0
        })
    };
    go.send(1);
    assert_eq!(tx.wait_for_peer(Duration::from_secs(10)).unwrap(), 1);
    assert_eq!(tx.peer_count(), 1);
    tx.send(9).unwrap();
    assert_eq!(wait(worker), 0);
    // The worker exited without dropping: it no longer counts.
    assert_eq!(tx.peer_count(), 0);
}
