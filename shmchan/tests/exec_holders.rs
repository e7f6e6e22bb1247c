//! A child spawned by `fork` and `exec` (here `Command::pre_exec`, which makes the standard
//! library fork instead of using `posix_spawn`) inherits a copy of every handle at the fork,
//! registered by the fork handlers, then loses them all at `exec`: it keeps its pid and start
//! time, but no longer maps the channel. Its entries must not count as live holders: peers
//! are disconnected, and a `Block` publisher is not held back, as if it had exited.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmchan::Error;

static SERIAL: Mutex<()> = Mutex::new(());

/// `sleep 60`, forked (not `posix_spawn`ed) so that the fork handlers run, then exec'd.
fn spawn_forked_sleeper() -> Child {
    let mut cmd = Command::new("sleep");
    cmd.arg("60");
    // SAFETY: the hook does nothing; it only makes `spawn` fork and exec.
    unsafe { cmd.pre_exec(|| Ok(())) };
    // `spawn` returns once the child has exec'd (or failed to).
    cmd.spawn().expect("spawn sleep")
}

fn reap(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `recv` (the last sender is gone, but `child` inherited a copy of it and exec'd), reaps
/// the child, and checks that `recv` said `Disconnected` within 2 s.
fn disconnected_soon(child: Child, recv: impl FnOnce() -> shmchan::Result<u64>) {
    let t0 = Instant::now();
    let r = recv();
    reap(child);
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn subscribers_are_disconnected_although_an_execed_child_inherited_the_publisher() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = shmchan::broadcast::channel::<u64>(8).unwrap();
    let child = spawn_forked_sleeper();
    assert_eq!(rx.peer_count(), 1, "the exec'd child holds no publisher");
    assert_eq!(tx.peer_count(), 1, "the exec'd child holds no subscriber");
    drop(tx);
    disconnected_soon(child, || rx.recv_timeout(Duration::from_secs(5)));
}

#[test]
fn an_execed_childs_copy_of_a_subscriber_does_not_hold_a_blocking_publisher_back() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = shmchan::broadcast::channel::<u64>(2).unwrap();
    let child = spawn_forked_sleeper();
    drop(rx); // only the exec'd child's copy of the subscriber remains in the table
    let t0 = Instant::now();
    let sent: Result<Vec<()>, _> = (0..4)
        .map(|i| tx.send_timeout(i, Duration::from_secs(5)))
        .collect();
    reap(child);
    assert!(sent.is_ok(), "held back by a process that exec'd");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn mpmc_receivers_are_disconnected_although_an_execed_child_inherited_the_sender() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = shmchan::mpmc::channel::<u64>(8).unwrap();
    let child = spawn_forked_sleeper();
    assert_eq!(rx.peer_count(), 1, "the exec'd child holds no sender");
    drop(tx);
    disconnected_soon(child, || rx.recv_timeout(Duration::from_secs(5)));
}

#[test]
fn spsc_receivers_are_disconnected_although_an_execed_child_inherited_the_sender() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = shmchan::channel::<u64>(8).unwrap();
    let child = spawn_forked_sleeper();
    drop(tx);
    disconnected_soon(child, || rx.recv_timeout(Duration::from_secs(5)));
}
