//! `Shared<T, SeqLock>` across real processes: forked readers and writers, a writer SIGKILLed in
//! the middle of a write, a writer SIGSTOPped while holding the lock.
//!
//! Fork-heavy, so in a test binary of its own, and every test holds `serial()` so that no other
//! test thread of this binary is running (and holding a lock) when one forks. Children do only
//! shmchan work and leave with `_exit`. Handshakes go through a raw shared segment (atomic words
//! and futex waits) or pipes, never sleeps.

use shmchan::{Error, SeqLock, Shared};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod shared_support;
use shared_support::{Child, Handshake, exit_child, fork_here, serial, wait_pid};

fn uniform(v: &[u64]) -> bool {
    v.iter().all(|&x| x == v[0])
}

/// Readers in two processes, a writer in a third: every snapshot is one written value.
fn torn_read_stress(writes: u64, min_reads: u64) {
    const N: usize = 8; // 64 bytes
    let s = Shared::<[u64; N], SeqLock>::anonymous([0; N]).unwrap();
    let hs = Handshake::new();
    let mut readers: Vec<Child> = (0..2)
        .map(|_| {
            Child::spawn(|| {
                let mut last = 0;
                let mut reads = 0u64;
                loop {
                    let v = s.read();
                    reads += 1;
                    if !uniform(&v) || v[0] < last {
                        return 1;
                    }
                    last = v[0];
                    if last == writes && reads >= min_reads {
                        hs.counter().fetch_add(reads, Ordering::Relaxed);
                        return 0;
                    }
                }
            })
        })
        .collect();
    let mut writer = Child::spawn(|| {
        for i in 1..=writes {
            s.write(|v| *v = [i; N]);
        }
        0
    });
    assert_eq!(writer.wait(), 0, "writer failed");
    for r in &mut readers {
        assert_eq!(r.wait(), 0, "a reader saw a torn or backwards value");
    }
    let reads = hs.counter().load(Ordering::Relaxed);
    assert!(reads >= 2 * min_reads, "only {reads} reads");
    eprintln!("torn-read stress: {reads} reads, 0 torn, {writes} writes");
}

#[test]
fn readers_in_other_processes_never_see_a_torn_value() {
    let _s = serial();
    torn_read_stress(100_000, 10_000);
}

/// The long version: at least 10^7 reads (`cargo test --release -- --ignored`).
#[test]
#[ignore = "long: 10^7 reads"]
fn readers_never_see_a_torn_value_in_ten_million_reads() {
    let _s = serial();
    torn_read_stress(5_000_000, 5_000_000);
}

#[test]
fn writer_killed_inside_write_is_reported_and_taken_over_within_100ms() {
    let _s = serial();
    let s = Shared::<[u64; 4], SeqLock>::anonymous([1; 4]).unwrap();
    let hs = Handshake::new();
    let mut child = Child::spawn(|| {
        s.write(|v| {
            *v = [2; 4];
            hs.set(1); // "inside write": the lock is held now
            loop {
                // SAFETY: pause(2) has no preconditions; we wait here to be killed.
                unsafe { libc::pause() };
            }
        })
    });
    hs.wait_for(1);
    child.signal(libc::SIGKILL);
    let killed = Instant::now();
    assert_eq!(child.wait(), 128 + libc::SIGKILL);
    // Readers still get the last complete value, without waiting.
    assert_eq!(s.read(), [1; 4]);
    match s.write_timeout(Duration::from_secs(5), |v| *v = [3; 4]) {
        Err(Error::WriterDied { pid }) => assert_eq!(pid, child.pid()),
        other => panic!("expected WriterDied, got {other:?}"),
    }
    s.write_timeout(Duration::from_secs(5), |v| *v = [3; 4])
        .expect("the lock was recovered");
    let took = killed.elapsed();
    assert!(took < Duration::from_millis(100), "takeover took {took:?}");
    assert_eq!(s.read(), [3; 4]);
}

#[test]
fn writer_killed_at_random_points_of_large_writes_never_leaves_a_torn_value() {
    let _s = serial();
    const N: usize = 4096; // 32 KiB: the copy takes long enough to be hit by the kill
    let s = Shared::<[u64; N], SeqLock>::anonymous([0; N]).unwrap();
    let hs = Handshake::new();
    let mut died_holding = 0;
    let mut killed_in_copy0 = 0;
    for round in 0..8u64 {
        let base = (round + 1) * 1_000_000;
        let mut child = Child::spawn(|| {
            for i in base.. {
                s.write(|v| *v = [i; N]);
                // Acknowledge each complete write (no system call: the child stays in its loop,
                // almost all of its time inside `write`).
                hs.counter().store(i, Ordering::Release);
            }
            0
        });
        // Kill it a few writes into its loop (not right after a wake-up, when it may be
        // descheduled between two writes).
        let target = base + 2 + round % 3;
        let deadline = Instant::now() + Duration::from_secs(30);
        while hs.counter().load(Ordering::Acquire) < target {
            assert!(
                Instant::now() < deadline,
                "the writer child never got going"
            );
            std::thread::yield_now();
        }
        child.signal(libc::SIGKILL);
        child.wait();
        let acked = hs.counter().load(Ordering::Acquire);
        // Sequence word (payload byte 128): odd = killed while writing copy 0.
        let seq = s.segment().load_u64(16).expect("sequence word");
        killed_in_copy0 += seq & 1;
        let v = s.read();
        assert!(uniform(&v), "torn value after a crash in round {round}");
        assert!(
            v[0] == acked || v[0] == acked + 1,
            "read {} but the last acknowledged write was {acked}",
            v[0]
        );
        let t = Instant::now();
        match s.write_timeout(Duration::from_secs(5), |x| *x = [u64::MAX; N]) {
            Ok(()) => {}
            Err(Error::WriterDied { pid }) => {
                assert_eq!(pid, child.pid());
                died_holding += 1;
                s.write_timeout(Duration::from_secs(5), |x| *x = [u64::MAX; N])
                    .expect("recovered");
            }
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(t.elapsed() < Duration::from_millis(100));
        assert_eq!(s.read(), [u64::MAX; N]);
    }
    eprintln!(
        "the kill landed inside a write in {died_holding} of 8 rounds, {killed_in_copy0} of them while copy 0 was being written"
    );
    assert!(died_holding > 0, "the kill never landed inside a write");
}

#[test]
fn stopped_writer_is_reported_by_pid_and_never_stolen_from() {
    let _s = serial();
    let s = Shared::<u64, SeqLock>::anonymous(10).unwrap();
    let hs = Handshake::new();
    let mut child = Child::spawn(|| {
        s.write(|v| {
            hs.set(1);
            hs.wait_for(2); // released by the parent after SIGCONT
            *v = 11;
        });
        0
    });
    hs.wait_for(1);
    child.signal(libc::SIGSTOP);
    child.wait_stopped();
    match s.write_timeout(Duration::from_millis(50), |v| *v = 99) {
        Err(Error::Timeout {
            holder_pid: Some(pid),
            what,
        }) => {
            assert_eq!(pid, child.pid());
            assert!(what.contains("stopped"), "{what}");
        }
        other => panic!("expected a Timeout naming the stopped child, got {other:?}"),
    }
    assert!(matches!(
        s.try_write(|v| *v = 99),
        Err(Error::WouldBlock { .. })
    ));
    assert_eq!(
        s.read(),
        10,
        "a reader is not blocked by the stopped writer"
    );
    child.signal(libc::SIGCONT);
    hs.set(2);
    s.write_timeout(Duration::from_secs(5), |v| *v += 100)
        .expect("the lock is free once the child finishes");
    assert_eq!(child.wait(), 0);
    assert_eq!(s.read(), 111);
}

#[test]
fn forked_writers_and_threads_exclude_each_other() {
    let _s = serial();
    let s = Shared::<[u64; 2], SeqLock>::anonymous([0; 2]).unwrap();
    let bump = |s: &Shared<[u64; 2], SeqLock>| {
        for _ in 0..2000 {
            // A read-modify-write that loses updates unless writers exclude each other.
            s.write(|v| {
                let n = v[0] + 1;
                std::hint::black_box(&n);
                *v = [n, n];
            });
        }
    };
    let mut children: Vec<Child> = (0..3)
        .map(|_| {
            Child::spawn(|| {
                bump(&s);
                0
            })
        })
        .collect();
    std::thread::scope(|sc| {
        sc.spawn(|| bump(&s));
        sc.spawn(|| bump(&s));
    });
    for c in &mut children {
        assert_eq!(c.wait(), 0);
    }
    assert_eq!(s.read(), [5 * 2000; 2]);
}

/// A `fork` inside a write's closure: the child's copy of the write must neither publish its
/// value nor release the parent's writer lock (else a second writer gets in while the parent
/// still writes).
#[test]
fn child_forked_inside_write_neither_publishes_nor_releases_the_parents_lock() {
    let _s = serial();
    let s = Shared::<u64, SeqLock>::anonymous(1).unwrap();
    let hs = Handshake::new();
    let mut pid = -1;
    let mut child_code = -1;
    let r = s.write_timeout(Duration::from_secs(5), |v| {
        *v = 2;
        pid = fork_here();
        if pid == 0 {
            *v = 99; // the child's private copy: must never be published
            return;
        }
        // The parent keeps the lock until the child has finished its checks.
        hs.wait_for(1);
        child_code = wait_pid(pid);
        *v = 3;
    });
    if pid == 0 {
        // The child, after its copy of `write_timeout` returned.
        let ok = matches!(r, Err(Error::InvalidArgument { .. }))
            && s.read() == 1
            && matches!(s.try_write(|v| *v = 7), Err(Error::WouldBlock { .. }));
        hs.set(1);
        exit_child(i32::from(!ok));
    }
    r.expect("the parent's write");
    assert_eq!(
        child_code, 0,
        "the child published or released the parent's lock"
    );
    assert_eq!(s.read(), 3);
    s.try_write(|v| *v += 1)
        .expect("the parent released its lock");
    assert_eq!(s.read(), 4);
}

/// `remove()` wipes the lock words and the copies: never while another process's writer is in
/// the middle of a write. It takes the writer lock first.
#[test]
fn remove_waits_for_a_writer_in_another_process() {
    let _s = serial();
    let s = Shared::<[u64; 4], SeqLock>::anonymous([7; 4]).unwrap();
    let hs = Handshake::new();
    let mut child = Child::spawn(|| {
        s.write(|v| {
            hs.set(1);
            hs.wait_for(2);
            *v = [8; 4];
        });
        0
    });
    hs.wait_for(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        let remover = sc.spawn(move || {
            let r = s.remove();
            let _ = done_tx.send(());
            r
        });
        // Give a remove that does not wait the time to wipe; one that waits is still blocked.
        let finished_early = done_rx.recv_timeout(Duration::from_millis(200)).is_ok();
        hs.set(2);
        assert_eq!(child.wait(), 0);
        assert!(!finished_early, "remove() did not wait for the writer");
        remover.join().unwrap().expect("remove");
    });
}
