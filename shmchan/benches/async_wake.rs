//! Wake-up latency of an async receiver (`recv_async` under tokio, woken by shmchan's notifier
//! thread) against a blocking `recv` in `WaitStrategy::Block` and against a tokio `UnixStream`,
//! in one run: two processes ping-pong `ROUNDS` times each way; half a round trip is one
//! wake-up. Both sides of each pair use the same mechanism (each process its own current-thread
//! tokio runtime for the async pairs). The async pairs run twice: with `WaitStrategy::Block`
//! (every wait sleeps and is woken through the notifier thread: the cost of a real wake-up)
//! and with the default `Adaptive` (a future first re-polls through the executor for up to
//! 50 us, so a peer that answers within it is met without sleeping). Prints a table;
//! `cargo bench -p shmchan --features async --bench async_wake`.

use std::io::Write;
use std::time::{Duration, Instant};

use shmchan::channel::WaitStrategy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUNDS: u64 = 5_000;
const WARMUP: u64 = 500;

fn fork() -> libc::pid_t {
    // SAFETY: each bench forks before its process starts any thread of its own; the child
    // only uses what it inherited (and its own runtime), then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    pid
}

fn exit_child() -> ! {
    // SAFETY: ends the child without running the parent's destructors.
    unsafe { libc::_exit(0) }
}

fn wait_child(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: our child; valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed: {status:#x}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime")
}

/// Blocking spsc channels, `WaitStrategy::Block` on every end: futex sleep and wake only.
fn blocking_round_trip() -> Duration {
    let (ping_tx, ping_rx) = shmchan::channel::<u64>(8).unwrap();
    let (pong_tx, pong_rx) = shmchan::channel::<u64>(8).unwrap();
    ping_tx.set_wait_strategy(WaitStrategy::Block);
    pong_tx.set_wait_strategy(WaitStrategy::Block);
    ping_rx.set_wait_strategy(WaitStrategy::Block);
    pong_rx.set_wait_strategy(WaitStrategy::Block);
    let pid = fork();
    if pid == 0 {
        drop((ping_tx, pong_rx));
        for _ in 0..WARMUP + ROUNDS {
            let v = ping_rx.recv().unwrap();
            pong_tx.send(v).unwrap();
        }
        exit_child();
    }
    drop((ping_rx, pong_tx));
    let mut started = Instant::now();
    for i in 0..WARMUP + ROUNDS {
        if i == WARMUP {
            started = Instant::now();
        }
        ping_tx.send(i).unwrap();
        assert_eq!(pong_rx.recv().unwrap(), i);
    }
    let took = started.elapsed();
    wait_child(pid);
    took / ROUNDS as u32
}

/// The same channels through `send_async`/`recv_async`, each process under its own runtime,
/// every end waiting with `strategy`: `Block` registers with the notifier at once (every
/// round trip is two notifier wake-ups), `Adaptive` (the default) first re-polls through the
/// executor for up to 50 us.
fn async_round_trip(strategy: WaitStrategy) -> Duration {
    let (mut ping_tx, mut ping_rx) = shmchan::channel::<u64>(8).unwrap();
    let (mut pong_tx, mut pong_rx) = shmchan::channel::<u64>(8).unwrap();
    for end in [&ping_rx, &pong_rx] {
        end.set_wait_strategy(strategy);
    }
    for end in [&ping_tx, &pong_tx] {
        end.set_wait_strategy(strategy);
    }
    let pid = fork();
    if pid == 0 {
        drop((ping_tx, pong_rx));
        runtime().block_on(async {
            for _ in 0..WARMUP + ROUNDS {
                let v = ping_rx.recv_async().await.unwrap();
                pong_tx.send_async(v).await.unwrap();
            }
        });
        exit_child();
    }
    drop((ping_rx, pong_tx));
    let took = runtime().block_on(async {
        let mut started = Instant::now();
        for i in 0..WARMUP + ROUNDS {
            if i == WARMUP {
                started = Instant::now();
            }
            ping_tx.send_async(i).await.unwrap();
            assert_eq!(pong_rx.recv_async().await.unwrap(), i);
        }
        started.elapsed()
    });
    wait_child(pid);
    took / ROUNDS as u32
}

/// An async receiver against a blocking sender (`WaitStrategy::Block`): one async wake-up and
/// one futex wake-up per round trip.
fn mixed_round_trip() -> Duration {
    let (ping_tx, ping_rx) = shmchan::channel::<u64>(8).unwrap();
    let (pong_tx, mut pong_rx) = shmchan::channel::<u64>(8).unwrap();
    ping_rx.set_wait_strategy(WaitStrategy::Block);
    pong_tx.set_wait_strategy(WaitStrategy::Block);
    // The async receiver sleeps too (no yield window): a real notifier wake-up.
    pong_rx.set_wait_strategy(WaitStrategy::Block);
    let pid = fork();
    if pid == 0 {
        drop((ping_tx, pong_rx));
        for _ in 0..WARMUP + ROUNDS {
            let v = ping_rx.recv().unwrap();
            pong_tx.send(v).unwrap();
        }
        exit_child();
    }
    drop((ping_rx, pong_tx));
    let took = runtime().block_on(async {
        let mut started = Instant::now();
        for i in 0..WARMUP + ROUNDS {
            if i == WARMUP {
                started = Instant::now();
            }
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv_async().await.unwrap(), i);
        }
        started.elapsed()
    });
    wait_child(pid);
    took / ROUNDS as u32
}

/// A tokio `UnixStream` pair, 8-byte messages.
fn unix_round_trip() -> Duration {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let pid = fork();
    if pid == 0 {
        drop(a);
        runtime().block_on(async {
            b.set_nonblocking(true).unwrap();
            let mut b = tokio::net::UnixStream::from_std(b).unwrap();
            let mut buf = [0u8; 8];
            for _ in 0..WARMUP + ROUNDS {
                b.read_exact(&mut buf).await.unwrap();
                b.write_all(&buf).await.unwrap();
            }
        });
        exit_child();
    }
    drop(b);
    let took = runtime().block_on(async {
        a.set_nonblocking(true).unwrap();
        let mut a = tokio::net::UnixStream::from_std(a).unwrap();
        let mut buf = [0u8; 8];
        let mut started = Instant::now();
        for i in 0..WARMUP + ROUNDS {
            if i == WARMUP {
                started = Instant::now();
            }
            a.write_all(&i.to_le_bytes()).await.unwrap();
            a.read_exact(&mut buf).await.unwrap();
            assert_eq!(u64::from_le_bytes(buf), i);
        }
        started.elapsed()
    });
    wait_child(pid);
    took / ROUNDS as u32
}

fn main() {
    // The async pair forks first, before this process has any thread; the children of the
    // other pairs are forked after its notifier threads started, and do only their own I/O.
    let async_rtt = async_round_trip(WaitStrategy::Adaptive);
    let async_block_rtt = async_round_trip(WaitStrategy::Block);
    let mixed_rtt = mixed_round_trip();
    let unix_rtt = unix_round_trip();
    let block_rtt = blocking_round_trip();
    let half = |d: Duration| d / 2;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wake-up latency, {ROUNDS} round trips between two processes"
    )
    .unwrap();
    writeln!(out, "{:<52} {:>11} {:>11}", "", "round trip", "half").unwrap();
    for (name, rtt) in [
        (
            "async Block receiver (tokio), blocking Block sender",
            mixed_rtt,
        ),
        (
            "both sides async, Block (notifier wake-ups)",
            async_block_rtt,
        ),
        ("both sides async, Adaptive (the default)", async_rtt),
        ("both sides recv/send, WaitStrategy::Block", block_rtt),
        ("both sides tokio UnixStream", unix_rtt),
    ] {
        writeln!(out, "{name:<52} {rtt:>11.2?} {:>11.2?}", half(rtt)).unwrap();
    }
    // The mixed pair's round trip is one async wake-up plus one futex wake-up.
    let async_wake = mixed_rtt.saturating_sub(half(block_rtt));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    writeln!(
        out,
        "one async wake-up: {async_wake:.2?}; against one futex wake-up (Block): {:.2}x \
         (goal <= 2x); against one UnixStream wake-up: {:.2}x (goal <= 0.5x)",
        ratio(async_wake, half(block_rtt)),
        ratio(async_wake, half(unix_rtt)),
    )
    .unwrap();
    writeln!(
        out,
        "default (Adaptive) async half round trip: {:.2?}; against one UnixStream wake-up: {:.2}x",
        half(async_rtt),
        ratio(half(async_rtt), half(unix_rtt)),
    )
    .unwrap();
}
