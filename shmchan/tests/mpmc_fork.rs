//! Cross-process mpmc tests without crashes: several producer and consumer processes, keyed
//! opens, fork registration, disconnection. Real `fork`, handshakes through pipes, never sleeps
//! as synchronisation.

mod mpmc_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mpmc_support::{Msg, SharedCounters, Signal, child_main, fork, leftover_shm, serial};
use shmchan::mpmc::{self, WaitStrategy};
use shmchan::{Error, Key};

/// Receives until `Disconnected`, checking each message and the per-producer order; records
/// each in `hits[producer * per + seq]`. Returns the child's exit code.
fn consume(rx: &mpmc::Receiver<Msg>, hits: &SharedCounters, per: u64, producers: u64) -> i32 {
    let mut last = vec![None::<u64>; producers as usize];
    loop {
        match rx.recv() {
            Ok(m) => {
                if !m.is_valid() || m.producer >= producers || m.seq >= per {
                    return 2;
                }
                if last[m.producer as usize].is_some_and(|l| l >= m.seq) {
                    return 3; // reordered or duplicated within this consumer
                }
                last[m.producer as usize] = Some(m.seq);
                hits.get()[(m.producer * per + m.seq) as usize].fetch_add(1, Ordering::Relaxed);
            }
            Err(Error::Disconnected) => return 0,
            Err(e) => {
                eprintln!("consumer error: {e:?}");
                return 4;
            }
        }
    }
}

fn exactly_once(producers: u64, consumers: u64, per: u64, cap: usize, strategy: WaitStrategy) {
    let _g = serial();
    let (tx, rx) = mpmc::channel::<Msg>(cap).unwrap();
    tx.set_wait_strategy(strategy);
    rx.set_wait_strategy(strategy);
    let hits = SharedCounters::new((producers * per) as usize);
    let mut children = Vec::new();
    for p in 0..producers {
        let Some(child) = fork() else {
            child_main(|| {
                drop(rx);
                for i in 0..per {
                    if tx.send(Msg::new(p, i)).is_err() {
                        return 1;
                    }
                }
                0
            })
        };
        children.push(child);
    }
    for _ in 0..consumers {
        let Some(child) = fork() else {
            child_main(|| {
                drop(tx);
                consume(&rx, &hits, per, producers)
            })
        };
        children.push(child);
    }
    // The children hold their copies (registered before `fork` returned): dropping ours right
    // away must not disconnect anyone.
    drop((tx, rx));
    for mut c in children {
        assert_eq!(c.wait(), 0, "child {} failed", c.pid);
    }
    let counts: Vec<u64> = hits
        .get()
        .iter()
        .map(|h| h.load(Ordering::Relaxed))
        .collect();
    let missing = counts.iter().filter(|&&c| c == 0).count();
    let duplicated = counts.iter().filter(|&&c| c > 1).count();
    assert_eq!(
        (missing, duplicated),
        (0, 0),
        "missing / duplicated messages"
    );
}

#[test]
fn three_producer_and_three_consumer_processes_deliver_each_message_exactly_once() {
    exactly_once(3, 3, 20_000, 16, WaitStrategy::Adaptive);
}

#[test]
fn blocking_waits_lose_no_wake_up_with_several_sleepers() {
    let t0 = Instant::now();
    // A 2-slot ring and Block: every transition sleeps; several sleepers share a futex word.
    exactly_once(2, 3, 5_000, 2, WaitStrategy::Block);
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
}

#[test]
fn keyed_queue_serves_senders_that_open_it_in_other_processes() {
    let _g = serial();
    let name = format!("/shmchan-test-mpmc-keyed-{}", std::process::id());
    let key = Key::name(&name).unwrap();
    let rx = mpmc::Receiver::<Msg>::create(key, 8).unwrap();
    // No sender yet: empty, not disconnected.
    assert_eq!(rx.try_recv().unwrap(), None);
    let mut children = Vec::new();
    for p in 0..2 {
        let Some(child) = fork() else {
            child_main(|| {
                drop(rx);
                let Ok(tx) = mpmc::Sender::<Msg>::open(key) else {
                    return 1;
                };
                for i in 0..1_000 {
                    if tx.send(Msg::new(p, i)).is_err() {
                        return 2;
                    }
                }
                0
            })
        };
        children.push(child);
    }
    let mut next = [0u64; 2];
    let mut got = 0;
    while got < 2_000 {
        let m = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(m.is_valid());
        assert_eq!(
            m.seq, next[m.producer as usize],
            "order of producer {}",
            m.producer
        );
        next[m.producer as usize] += 1;
        got += 1;
    }
    for mut c in children {
        assert_eq!(c.wait(), 0);
    }
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    drop(rx);
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}

#[test]
fn sender_learns_of_sigkilled_receivers_while_the_ring_has_room() {
    let _g = serial();
    let (tx, rx) = mpmc::channel::<u64>(1024).unwrap();
    let ready = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(tx);
            ready.notify();
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        })
    };
    drop(rx);
    ready.wait();
    child.kill();
    let t0 = Instant::now();
    let mut sent = 0u64;
    let err = loop {
        match tx.try_send(sent) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        if sent == 1024 {
            // Keep the ring from filling: the point is that room does not hide the death.
            break shmchan::mpmc::TrySendError::Full(0);
        }
    };
    let waited = t0.elapsed();
    assert!(
        matches!(err, shmchan::mpmc::TrySendError::Disconnected(_)),
        "{err:?} after {sent} sends"
    );
    assert!(waited < Duration::from_millis(500), "{waited:?}");
}

#[test]
fn a_child_that_never_used_its_copy_keeps_the_side_alive_after_the_parent_drops() {
    let _g = serial();
    let (tx, rx) = mpmc::channel::<u32>(8).unwrap();
    let go = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            go.wait(); // the parent drops its copy of `tx` first
            let r = tx.send(42).map(|_| 0).unwrap_or(1);
            drop(tx);
            r
        })
    };
    drop(tx);
    assert!(!rx.is_disconnected(), "the child still holds a sender");
    assert_eq!(rx.peer_count(), 1);
    go.notify();
    assert_eq!(rx.recv().unwrap(), 42);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    assert_eq!(child.wait(), 0);
}

#[test]
fn a_restarted_receiver_reopens_the_key_after_its_predecessor_was_killed() {
    let _g = serial();
    let name = format!("/shmchan-test-mpmc-restart-{}", std::process::id());
    let key = Key::name(&name).unwrap();
    // One entry per side: the successor can only get in by reusing the dead one's entry.
    let tx = mpmc::Sender::<u64>::create_with_holders(key, 1024, 1).unwrap();
    let worker = |expect: u64, opened: &Signal, done: &Signal| -> i32 {
        let Ok(rx) = mpmc::Receiver::<u64>::open(key) else {
            return 1;
        };
        opened.notify();
        if rx.recv_timeout(Duration::from_secs(30)).ok() != Some(expect) {
            return 2;
        }
        done.notify();
        loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        }
    };
    let (opened, done) = (Signal::new(), Signal::new());
    let Some(mut first) = fork() else {
        child_main(|| {
            drop(tx);
            worker(1, &opened, &done)
        })
    };
    opened.wait();
    tx.send(1).unwrap();
    done.wait();
    assert_eq!(first.kill(), 128 + libc::SIGKILL);
    // Its holder entry is dead and idle: the restarted worker takes it over.
    let Some(mut second) = fork() else {
        child_main(|| {
            drop(tx);
            worker(2, &opened, &done)
        })
    };
    // Between the death and the reopening the queue had no receiver (a send would have been
    // `Disconnected`); now it has one again.
    opened.wait();
    tx.send_timeout(2, Duration::from_secs(30)).unwrap();
    done.wait();
    assert_eq!(tx.peer_count(), 1);
    assert_eq!(second.kill(), 128 + libc::SIGKILL);
    // A slow sender (one message a millisecond, far from filling the ring) learns of it too.
    let t0 = Instant::now();
    let e = (3..).try_for_each(|i| {
        std::thread::sleep(Duration::from_millis(1)); // pacing, not synchronisation
        tx.send(i)
    });
    assert!(matches!(e, Err(Error::Disconnected)), "{e:?}");
    assert!(
        // Within a few liveness intervals (looking every 256 sends would take > 256 ms).
        t0.elapsed() < Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    drop(tx);
    assert_eq!(
        leftover_shm(&name[1..]),
        Vec::<String>::new(),
        "segment leaked"
    );
}
