//! Wake-up latency of a reader blocked in `wait_changed` (futex, announced waiters only) against
//! a pipe wake-up, in the same run: two processes ping-pong N times; half a round trip is one
//! wake-up. Prints a table; `cargo bench -p shmchan --bench wake`.

use std::time::{Duration, Instant};

use shmchan::{Key, SeqLock, Shared};

const ROUNDS: u64 = 20_000;

fn fork() -> libc::pid_t {
    // SAFETY: the child only uses the shared values / pipes it inherited, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    pid
}

fn wait_child(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: our child; valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// Ping-pong through two `Shared<u64, SeqLock>`: each side stores, the other wakes from
/// `wait_changed`.
fn shared_round_trip() -> Duration {
    let tag = std::process::id();
    let ping =
        Shared::<u64, SeqLock>::create(Key::name(&format!("/shmchan-bench-ping-{tag}")).unwrap())
            .unwrap();
    let pong =
        Shared::<u64, SeqLock>::create(Key::name(&format!("/shmchan-bench-pong-{tag}")).unwrap())
            .unwrap();
    // Both versions are taken before the fork: a child reading `ping` after the parent's first
    // store would wait for a second one that never comes.
    let (seen_ping, mut seen) = (ping.version(), pong.version());
    let pid = fork();
    if pid == 0 {
        let mut seen = seen_ping;
        for i in 1..=ROUNDS {
            seen = ping.wait_changed(seen, None).unwrap();
            pong.store(i);
        }
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let start = Instant::now();
    for i in 1..=ROUNDS {
        ping.store(i);
        seen = pong.wait_changed(seen, None).unwrap();
    }
    let d = start.elapsed();
    wait_child(pid);
    d
}

/// Ping-pong of one byte through two pipes.
fn pipe_round_trip() -> Duration {
    let mut a = [0; 2];
    let mut b = [0; 2];
    // SAFETY: valid out-arrays.
    unsafe {
        assert_eq!(libc::pipe(a.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(b.as_mut_ptr()), 0);
    }
    let byte = |fd: i32, write: bool| {
        let mut x = [7u8];
        // SAFETY: one byte from/to a live local on our own pipe descriptors.
        let n = unsafe {
            if write {
                libc::write(fd, x.as_ptr().cast(), 1)
            } else {
                libc::read(fd, x.as_mut_ptr().cast(), 1)
            }
        };
        assert_eq!(n, 1);
    };
    let pid = fork();
    if pid == 0 {
        for _ in 0..ROUNDS {
            byte(a[0], false);
            byte(b[1], true);
        }
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    let start = Instant::now();
    for _ in 0..ROUNDS {
        byte(a[1], true);
        byte(b[0], false);
    }
    let d = start.elapsed();
    wait_child(pid);
    d
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let per_wake = |d: Duration| d.as_nanos() as f64 / (2 * ROUNDS) as f64;
    let mut rows = Vec::new();
    for _ in 0..3 {
        let s = per_wake(shared_round_trip());
        let p = per_wake(pipe_round_trip());
        rows.push((s, p));
    }
    println!("wake-up latency, {ROUNDS} round trips between two processes, 3 interleaved runs:");
    println!("| run | wait_changed wake | pipe wake | ratio |");
    println!("|---|---|---|---|");
    for (i, (s, p)) in rows.iter().enumerate() {
        println!(
            "| {} | {:.2} µs | {:.2} µs | {:.2}x |",
            i + 1,
            s / 1e3,
            p / 1e3,
            s / p
        );
    }
}
