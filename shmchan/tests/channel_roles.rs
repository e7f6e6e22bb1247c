//! Who may use a channel end: copies of one handle carried across `fork` (only one process
//! produces, and one consumes, at a time), keyed ends opened concurrently, and children that
//! `exec` (they hold nothing afterwards). Real `fork`/`exec`/`SIGKILL`, handshakes through pipes.

use std::os::unix::process::CommandExt;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use shmchan::channel::TrySendError;
use shmchan::{Error, Key, Receiver, Sender};

mod fork_support;
use fork_support::{Pipe, child_main, fork, kill, serial, wait};

fn test_name(what: &str) -> String {
    format!("/shmchan-test-roles-{what}-{}", std::process::id())
}

#[test]
fn a_forked_copy_of_a_sender_in_use_gets_in_use_and_writes_nothing() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<u64>(8).unwrap();
    tx.send(1).unwrap(); // this process now produces
    let parent = std::process::id();
    let Some(child) = fork() else {
        child_main(|| {
            drop(rx);
            let a = matches!(
                tx.try_send(99),
                Err(TrySendError::Failed(Error::InUse { pid, .. })) if pid == parent
            );
            let b = matches!(tx.send(98), Err(Error::InUse { .. }));
            let c = matches!(tx.send_batch(&[97, 96]), Err(Error::InUse { .. }));
            if a && b && c { 0 } else { 1 }
        })
    };
    assert_eq!(wait(child), 0, "the child's copy was not refused");
    assert_eq!(rx.try_recv().unwrap(), Some(1));
    assert_eq!(rx.try_recv().unwrap(), None, "the child wrote a message");
    tx.send(2).unwrap();
    assert_eq!(rx.recv().unwrap(), 2);
}

#[test]
fn a_forked_copy_of_a_receiver_in_use_gets_in_use_and_takes_nothing() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<u64>(8).unwrap();
    assert_eq!(rx.try_recv().unwrap(), None); // this process now consumes
    tx.send_batch(&[1, 2, 3]).unwrap();
    let Some(child) = fork() else {
        child_main(|| {
            drop(tx);
            let mut out = Vec::new();
            let a = matches!(rx.try_recv(), Err(Error::InUse { .. }));
            let b = matches!(rx.try_recv_batch(&mut out, 8), Err(Error::InUse { .. }));
            if a && b && out.is_empty() { 0 } else { 1 }
        })
    };
    assert_eq!(wait(child), 0, "the child's copy was not refused");
    let mut out = Vec::new();
    assert_eq!(rx.try_recv_batch(&mut out, 8).unwrap(), 3);
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn the_sending_role_passes_to_the_child_once_the_parent_drops_its_copy() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<u64>(8).unwrap();
    tx.send(1).unwrap();
    let go = Pipe::new();
    let Some(child) = fork() else {
        child_main(|| {
            drop(rx);
            go.recv(); // the parent has dropped its copy
            (tx.send(2).is_err() || tx.send(3).is_err()) as i32
        })
    };
    drop(tx);
    go.send(1);
    assert_eq!(rx.recv().unwrap(), 1);
    assert_eq!(rx.recv().unwrap(), 2);
    assert_eq!(rx.recv().unwrap(), 3);
    assert_eq!(wait(child), 0);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
}

#[test]
fn a_killed_producer_s_role_is_taken_over_where_it_stopped() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<u64>(16).unwrap();
    let sent = Pipe::new();
    let Some(child) = fork() else {
        child_main(|| {
            drop(rx);
            for i in 0..5 {
                if tx.send(i).is_err() {
                    return 1;
                }
            }
            sent.send(1);
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        })
    };
    sent.recv();
    // The child holds the role and is alive: our copy is refused.
    assert!(matches!(
        tx.try_send(100),
        Err(TrySendError::Failed(Error::InUse { pid, .. })) if pid == child as u32
    ));
    kill(child);
    assert_eq!(wait(child), 128 + libc::SIGKILL);
    // Dead: our copy takes the role over and continues after the child's last message.
    tx.send(5).unwrap();
    for i in 0..6 {
        assert_eq!(rx.recv().unwrap(), i);
    }
}

/// One round of two processes opening the sending end of `key` at once: returns how many
/// succeeded and how many got `InUse`.
fn race_two_openers(key: Key) -> (usize, usize) {
    let go = Pipe::new();
    let results = Pipe::new();
    let release = Pipe::new();
    let mut pids = Vec::new();
    for _ in 0..2 {
        let Some(pid) = fork() else {
            child_main(|| {
                go.recv();
                match Sender::<u64>::open(key) {
                    Ok(tx) => {
                        results.send(b'o');
                        release.recv();
                        drop(tx);
                        0
                    }
                    Err(Error::InUse { .. }) => {
                        results.send(b'u');
                        0
                    }
                    Err(_) => {
                        results.send(b'e');
                        1
                    }
                }
            })
        };
        pids.push(pid);
    }
    go.send(1);
    go.send(1);
    let got = [results.recv(), results.recv()];
    let ok = got.iter().filter(|&&b| b == b'o').count();
    let in_use = got.iter().filter(|&&b| b == b'u').count();
    for _ in 0..ok {
        release.send(1);
    }
    for pid in pids {
        wait(pid);
    }
    (ok, in_use)
}

#[test]
fn concurrent_opens_by_two_processes_let_exactly_one_in_and_leave_the_end_usable() {
    let _g = serial();
    let key = Key::name(&test_name("race")).unwrap();
    let rx = Receiver::<u64>::create(key, 8).unwrap();
    for round in 0..40 {
        let (ok, in_use) = race_two_openers(key);
        assert_eq!(
            ok, 1,
            "round {round}: {ok} of two concurrent opens succeeded"
        );
        assert_eq!(in_use, 1, "round {round}: the loser did not get InUse");
    }
    // The end is still open for the next sender.
    let tx = Sender::<u64>::open(key).unwrap();
    tx.send(7).unwrap();
    assert_eq!(rx.recv().unwrap(), 7);
}

#[test]
fn concurrent_opens_by_two_threads_let_exactly_one_in() {
    let _g = serial();
    let key = Key::name(&test_name("race-threads")).unwrap();
    let tx = Sender::<u64>::create(key, 8).unwrap();
    for round in 0..40 {
        let barrier = Barrier::new(2);
        let results = std::thread::scope(|s| {
            let open = || {
                barrier.wait();
                Receiver::<u64>::open(key)
            };
            let a = s.spawn(open);
            let b = s.spawn(open);
            [a.join().unwrap(), b.join().unwrap()]
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let in_use = results
            .iter()
            .filter(|r| matches!(r, Err(Error::InUse { .. })))
            .count();
        assert_eq!(
            ok, 1,
            "round {round}: {ok} of two concurrent opens succeeded"
        );
        assert_eq!(in_use, 1, "round {round}: the loser did not get InUse");
        drop(results);
        // The winner dropped its receiver: the end is free again, not closed for good.
        assert!(tx.is_disconnected());
    }
    let rx = Receiver::<u64>::open(key).unwrap();
    tx.send(3).unwrap();
    assert_eq!(rx.recv().unwrap(), 3);
}

/// Spawns `/bin/sleep 60` through `fork` + `exec` (a `pre_exec` hook forces `fork`, so the
/// library's fork handlers run in the child before it `exec`s).
fn spawn_exec_child() -> std::process::Child {
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("60");
    // SAFETY: the hook does nothing (async-signal-safe).
    unsafe { cmd.pre_exec(|| Ok(())) };
    cmd.spawn().expect("spawn sleep")
}

#[test]
fn an_exec_ed_child_is_not_a_holder_so_the_survivor_is_disconnected() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<u64>(8).unwrap();
    let mut child = spawn_exec_child(); // inherits both ends across fork, then execs
    tx.send(1).unwrap();
    drop(tx);
    assert_eq!(rx.recv().unwrap(), 1);
    // The only process left "holding" the sender is the exec'd child, which lost it in exec.
    let r = rx.recv_timeout(Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}

#[test]
fn a_dead_sender_whose_child_exec_ed_is_detected_by_the_receiver() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<u64>(8).unwrap();
    let pids = Pipe::new();
    let Some(sender) = fork() else {
        child_main(|| {
            drop(rx);
            let Ok(child) = std::panic::catch_unwind(spawn_exec_child) else {
                return 2;
            };
            if tx.send(1).is_err() {
                return 1;
            }
            // Hand the grandchild's pid to the test (to kill it at the end), then wait to be
            // killed.
            for b in child.id().to_le_bytes() {
                pids.send(b);
            }
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        })
    };
    drop(tx);
    let grandchild = u32::from_le_bytes([pids.recv(), pids.recv(), pids.recv(), pids.recv()]);
    kill(sender);
    wait(sender);
    assert_eq!(rx.recv().unwrap(), 1);
    let r = rx.recv_timeout(Duration::from_secs(2));
    kill(grandchild as libc::pid_t);
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}

#[test]
fn a_keyed_end_held_only_by_an_exec_ed_child_can_be_reopened() {
    let _g = serial();
    let key = Key::name(&test_name("exec-reopen")).unwrap();
    let rx = Receiver::<u64>::create(key, 8).unwrap();
    let tx = Sender::<u64>::open(key).unwrap();
    let mut child = spawn_exec_child();
    drop(tx);
    let reopened = Sender::<u64>::open(key);
    child.kill().unwrap();
    child.wait().unwrap();
    let tx = reopened.unwrap();
    tx.send(4).unwrap();
    assert_eq!(rx.recv().unwrap(), 4);
}

#[test]
fn two_processes_racing_to_use_one_unused_sender_never_both_write() {
    let _g = serial();
    for round in 0..20 {
        let (tx, rx) = shmchan::channel::<[u64; 4]>(64).unwrap();
        let go = Pipe::new();
        // Both start sending at the same instant (the monotonic clock is system-wide): only
        // to make the race likely; the claims below do not depend on it.
        let start = Instant::now() + Duration::from_millis(5);
        let spin_until_start = || {
            while Instant::now() < start {
                std::hint::spin_loop();
            }
        };
        // Neither process has used `tx`: whichever sends first takes the role.
        let Some(child) = fork() else {
            child_main(|| {
                go.recv();
                spin_until_start();
                let mut sent = 0u64;
                for i in 0..200u64 {
                    match tx.try_send([1, i, !i, 1]) {
                        Ok(()) => sent += 1,
                        Err(TrySendError::Failed(Error::InUse { .. })) => break,
                        Err(_) => {}
                    }
                }
                drop(rx);
                // Exit code: whether this process wrote (the parent checks it against what
                // arrived).
                (sent > 0) as i32
            })
        };
        go.send(1);
        spin_until_start();
        let mut sent = 0u64;
        for i in 0..200u64 {
            match tx.try_send([2, i, !i, 2]) {
                Ok(()) => sent += 1,
                Err(TrySendError::Failed(Error::InUse { .. })) => break,
                Err(_) => {}
            }
        }
        let child_wrote = wait(child) == 1;
        assert!(
            (sent > 0) != child_wrote,
            "round {round}: parent wrote {sent}, child wrote: {child_wrote}"
        );
        let writer = if child_wrote { 1 } else { 2 };
        let mut got = Vec::new();
        while let Ok(n) = rx.try_recv_batch(&mut got, 64) {
            if n == 0 {
                break;
            }
        }
        assert!(!got.is_empty(), "round {round}: nothing arrived");
        for (k, m) in got.iter().enumerate() {
            assert_eq!(
                m[0], writer,
                "round {round}: a message from the other process"
            );
            assert_eq!(m[3], writer, "round {round}: torn message {m:?}");
            assert_eq!(m[2], !m[1], "round {round}: torn message {m:?}");
            assert_eq!(m[1], k as u64, "round {round}: lost or duplicated message");
        }
    }
}
