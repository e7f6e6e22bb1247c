//! The async API across processes, under tokio's multi-thread runtime: 10^5 messages exactly
//! once each way between an async end and a blocking end in a forked child; a killed peer
//! surfacing as `Disconnected` through the future; cancellation (timeouts, `select!`) losing
//! nothing; `changed_async` woken by another process; and a forked child that has no notifier
//! thread until it awaits.

#![cfg(feature = "async")]

mod fork_support;

use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use fork_support::{Pipe, child_main, fork, kill, serial, wait};
use shmchan::channel::LIVENESS_INTERVAL;
use shmchan::{Error, Shared, mpmc};

const N: u64 = 100_000;

/// How late a killed peer may surface beyond [`LIVENESS_INTERVAL`] on a loaded machine.
const SLACK: Duration = Duration::from_millis(500);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Registrations of this process's notifier.
fn registrations() -> usize {
    shmchan::__async_notifier_state().0
}

/// Waits (bounded) until the notifier holds at least `n` registrations: the futures are
/// pending, announced, and registered.
fn until_registered(n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while registrations() < n {
        assert!(
            Instant::now() < deadline,
            "only {} registered",
            registrations()
        );
        std::thread::yield_now();
    }
}

#[test]
fn spsc_async_receiver_gets_every_message_of_a_forked_blocking_sender_once() {
    let _g = serial();
    let (tx, mut rx) = shmchan::channel::<u64>(64).unwrap();
    let Some(pid) = fork() else {
        // Each child drops the end it does not use: a copy it kept would count it as a holder
        // of that end, keeping the end open if the parent died.
        drop(rx);
        child_main(|| {
            for i in 0..N {
                if tx.send(i).is_err() {
                    return 1;
                }
            }
            0
        })
    };
    drop(tx);
    let rt = runtime();
    let got = rt
        .block_on(rt.spawn(async move {
            let mut next = 0;
            loop {
                match rx.recv_async().await {
                    Ok(v) => {
                        assert_eq!(v, next, "out of order or duplicated");
                        next += 1;
                    }
                    Err(Error::Disconnected) => return next,
                    Err(e) => panic!("recv_async: {e}"),
                }
            }
        }))
        .unwrap();
    assert_eq!(got, N);
    assert_eq!(wait(pid), 0);
}

#[test]
fn spsc_async_sender_feeds_a_forked_blocking_receiver_exactly_once() {
    let _g = serial();
    let (mut tx, rx) = shmchan::channel::<u64>(64).unwrap();
    let Some(pid) = fork() else {
        drop(tx);
        child_main(|| {
            for i in 0..N {
                match rx.recv() {
                    Ok(v) if v == i => {}
                    _ => return 1,
                }
            }
            match rx.recv() {
                Err(Error::Disconnected) => 0,
                _ => 2,
            }
        })
    };
    drop(rx);
    let rt = runtime();
    rt.block_on(rt.spawn(async move {
        for i in 0..N {
            tx.send_async(i).await.expect("send_async");
        }
    }))
    .unwrap();
    assert_eq!(wait(pid), 0);
}

#[test]
fn mpmc_async_receivers_share_a_forked_senders_messages_exactly_once() {
    let _g = serial();
    let (tx, rx) = mpmc::channel::<u64>(64).unwrap();
    let Some(pid) = fork() else {
        drop(rx);
        child_main(|| {
            for i in 0..N {
                if tx.send(i).is_err() {
                    return 1;
                }
            }
            0
        })
    };
    drop(tx);
    let rt = runtime();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let mut rx = rx.clone();
            rt.spawn(async move {
                let mut got = Vec::new();
                loop {
                    match rx.recv_async().await {
                        Ok(v) => got.push(v),
                        Err(Error::Disconnected) => return got,
                        Err(e) => panic!("recv_async: {e}"),
                    }
                }
            })
        })
        .collect();
    drop(rx);
    let mut all = Vec::new();
    for t in tasks {
        let got = rt.block_on(t).unwrap();
        // One sender: each receiver sees its messages in order.
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all.len() as u64, N);
    assert!(all.iter().copied().eq(0..N), "lost or duplicated messages");
    assert_eq!(wait(pid), 0);
}

#[test]
fn mpmc_async_sender_feeds_forked_blocking_receivers_exactly_once() {
    let _g = serial();
    let (mut tx, rx) = mpmc::channel::<u64>(64).unwrap();
    let results = Shared::<[u64; 2]>::anonymous([0; 2]).unwrap();
    let Some(pid) = fork() else {
        drop(tx);
        child_main(|| {
            let (mut count, mut sum) = (0u64, 0u64);
            loop {
                match rx.recv() {
                    Ok(v) => {
                        count += 1;
                        sum += v;
                    }
                    Err(Error::Disconnected) => break,
                    Err(_) => return 1,
                }
            }
            results.store([count, sum]);
            0
        })
    };
    drop(rx);
    let rt = runtime();
    rt.block_on(rt.spawn(async move {
        for i in 0..N {
            tx.send_async(i).await.expect("send_async");
        }
    }))
    .unwrap();
    assert_eq!(wait(pid), 0);
    assert_eq!(results.read(), [N, N * (N - 1) / 2]);
}

/// A child that drops what `unused` drops, says so on `ready`, and waits to be killed
/// holding the rest.
fn park_child(ready: &Pipe, unused: impl FnOnce()) -> libc::pid_t {
    let release = Pipe::new();
    match fork() {
        Some(pid) => pid,
        None => {
            unused();
            child_main(|| {
                ready.send(1);
                // Never comes: the parent kills us.
                release.recv();
                0
            })
        }
    }
}

#[test]
fn a_killed_sender_surfaces_as_disconnected_through_recv_async() {
    let _g = serial();
    let rt = runtime();
    // spsc
    let (tx, rx) = shmchan::channel::<u64>(8).unwrap();
    let ready = Pipe::new();
    let rx = std::cell::Cell::new(Some(rx));
    let pid = park_child(&ready, || drop(rx.take()));
    let mut rx = rx.take().unwrap();
    drop(tx);
    assert_eq!(ready.recv(), 1);
    let base = registrations();
    let task = rt.spawn(async move { rx.recv_async().await });
    until_registered(base + 1);
    kill(pid);
    let killed = Instant::now();
    let r = rt.block_on(task).unwrap();
    let took = killed.elapsed();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    eprintln!("spsc recv_async: killed sender noticed after {took:?}");
    assert!(took < LIVENESS_INTERVAL + SLACK, "spsc: took {took:?}");
    assert_eq!(wait(pid), 128 + libc::SIGKILL);
    // mpmc
    let (tx, rx) = mpmc::channel::<u64>(8).unwrap();
    let rx = std::cell::Cell::new(Some(rx));
    let pid = park_child(&ready, || drop(rx.take()));
    let mut rx = rx.take().unwrap();
    drop(tx);
    assert_eq!(ready.recv(), 1);
    let base = registrations();
    let task = rt.spawn(async move { rx.recv_async().await });
    until_registered(base + 1);
    kill(pid);
    let killed = Instant::now();
    let r = rt.block_on(task).unwrap();
    let took = killed.elapsed();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    eprintln!("mpmc recv_async: killed sender noticed after {took:?}");
    assert!(took < 2 * LIVENESS_INTERVAL + SLACK, "mpmc: took {took:?}");
    assert_eq!(wait(pid), 128 + libc::SIGKILL);
    assert_eq!(registrations(), base);
}

#[test]
fn a_killed_receiver_surfaces_as_disconnected_through_send_async() {
    let _g = serial();
    let rt = runtime();
    let (tx, rx) = shmchan::channel::<u64>(2).unwrap();
    let ready = Pipe::new();
    let tx = std::cell::Cell::new(Some(tx));
    let pid = park_child(&ready, || drop(tx.take()));
    let mut tx = tx.take().unwrap();
    drop(rx);
    assert_eq!(ready.recv(), 1);
    while tx.try_send(0).is_ok() {}
    let base = registrations();
    let task = rt.spawn(async move { tx.send_async(1).await });
    until_registered(base + 1);
    kill(pid);
    let killed = Instant::now();
    let r = rt.block_on(task).unwrap();
    let took = killed.elapsed();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    eprintln!("spsc send_async: killed receiver noticed after {took:?}");
    assert!(took < LIVENESS_INTERVAL + SLACK, "spsc: took {took:?}");
    assert_eq!(wait(pid), 128 + libc::SIGKILL);
}

#[test]
fn timed_out_and_cancelled_receives_lose_nothing() {
    let _g = serial();
    const M: u64 = 20_000;
    let (tx, mut rx) = shmchan::channel::<u64>(16).unwrap();
    let go = Pipe::new();
    let Some(pid) = fork() else {
        drop(rx);
        child_main(|| {
            go.recv();
            for i in 0..M {
                if tx.send(i).is_err() {
                    return 1;
                }
            }
            0
        })
    };
    drop(tx);
    let rt = runtime();
    let base = registrations();
    let next = rt.block_on(async {
        // Nothing is sent yet: each timeout drops a pending, registered future.
        for _ in 0..3 {
            let r = tokio::time::timeout(Duration::from_millis(5), rx.recv_async()).await;
            assert!(r.is_err(), "nothing was sent yet");
            assert_eq!(registrations(), base, "a dropped future stayed registered");
        }
        go.send(1);
        // Receive under very short timeouts: many futures are dropped mid-stream.
        let mut next = 0;
        loop {
            match tokio::time::timeout(Duration::from_micros(50), rx.recv_async()).await {
                Ok(Ok(v)) => {
                    assert_eq!(v, next, "lost or duplicated by a cancelled future");
                    next += 1;
                }
                Ok(Err(Error::Disconnected)) => return next,
                Ok(Err(e)) => panic!("recv_async: {e}"),
                Err(_) => {}
            }
        }
    });
    assert_eq!(next, M);
    assert_eq!(registrations(), base);
    assert_eq!(wait(pid), 0);
}

#[test]
fn select_over_two_receivers_loses_nothing() {
    let _g = serial();
    const M: u64 = 20_000;
    let (tx1, mut rx1) = shmchan::channel::<u64>(16).unwrap();
    let (tx2, mut rx2) = shmchan::channel::<u64>(16).unwrap();
    let Some(p1) = fork() else {
        drop((rx1, rx2, tx2));
        child_main(|| (0..M).map(|i| tx1.send(i).is_err() as i32).sum())
    };
    drop(tx1);
    let Some(p2) = fork() else {
        drop((rx1, rx2));
        child_main(|| (0..M).map(|i| tx2.send(i).is_err() as i32).sum())
    };
    drop(tx2);
    let rt = runtime();
    let (n1, n2) = rt.block_on(async {
        let (mut n1, mut n2) = (0, 0);
        let (mut done1, mut done2) = (false, false);
        while !(done1 && done2) {
            // The branch that loses is dropped, pending or not: it must take nothing.
            tokio::select! {
                r = rx1.recv_async(), if !done1 => match r {
                    Ok(v) => { assert_eq!(v, n1); n1 += 1; }
                    Err(Error::Disconnected) => done1 = true,
                    Err(e) => panic!("{e}"),
                },
                r = rx2.recv_async(), if !done2 => match r {
                    Ok(v) => { assert_eq!(v, n2); n2 += 1; }
                    Err(Error::Disconnected) => done2 = true,
                    Err(e) => panic!("{e}"),
                },
            }
        }
        (n1, n2)
    });
    assert_eq!((n1, n2), (M, M));
    assert_eq!(wait(p1), 0);
    assert_eq!(wait(p2), 0);
}

#[test]
fn changed_async_is_woken_by_a_write_in_another_process() {
    let _g = serial();
    let s = Shared::<u64>::anonymous(0).unwrap();
    let go = Pipe::new();
    let seen = s.version();
    let Some(pid) = fork() else {
        child_main(|| {
            go.recv();
            s.store(42);
            0
        })
    };
    let rt = runtime();
    let base = registrations();
    let now = rt.block_on(async {
        let fut = s.changed_async(seen);
        let waiting = async {
            until_registered(base + 1);
            go.send(1);
        };
        let (now, ()) = tokio::join!(fut, waiting);
        now
    });
    assert!(now.unwrap() > seen);
    assert_eq!(s.read(), 42);
    assert_eq!(registrations(), base);
    assert_eq!(wait(pid), 0);
}

/// A minimal executor for the forked child (a fresh process image has no tokio runtime).
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Threads of this process (`/proc/self/status`).
fn threads() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_forked_child_has_no_notifier_until_it_awaits() {
    let _g = serial();
    let rt = runtime();
    // Start this process's notifier.
    let (tx, mut rx) = shmchan::channel::<u64>(4).unwrap();
    let base = registrations();
    let task = rt.spawn(async move { rx.recv_async().await });
    until_registered(base + 1);
    tx.send(1).unwrap();
    assert_eq!(rt.block_on(task).unwrap().unwrap(), 1);
    assert!(shmchan::__async_notifier_state().1);
    drop(rt);

    let (tx, mut rx) = shmchan::channel::<u64>(4).unwrap();
    let (pending, done) = (Pipe::new(), Pipe::new());
    let Some(pid) = fork() else {
        drop(tx);
        child_main(|| {
            if shmchan::__async_notifier_state() != (0, false) {
                return 2;
            }
            if threads() != Some(1) {
                return 3;
            }
            let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
            let mut cx = Context::from_waker(&waker);
            // `Block`: register on the first unready poll (no yield window first).
            rx.set_wait_strategy(shmchan::channel::WaitStrategy::Block);
            let mut fut = pin!(rx.recv_async());
            if fut.as_mut().poll(&mut cx).is_ready() {
                return 4;
            }
            // Pending and registered: the child's own notifier runs now.
            if shmchan::__async_notifier_state() != (1, true) {
                return 5;
            }
            pending.send(1);
            let v = loop {
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    break v;
                }
                std::thread::park_timeout(Duration::from_secs(1));
            };
            done.send(1);
            match v {
                Ok(7) => 0,
                _ => 6,
            }
        })
    };
    drop(rx);
    assert_eq!(pending.recv(), 1);
    tx.send(7).unwrap();
    assert_eq!(done.recv(), 1);
    assert_eq!(wait(pid), 0);
}

#[test]
fn broadcast_async_subscribers_each_get_every_message_of_a_forked_publisher() {
    let _g = serial();
    let (tx, rx1) = shmchan::broadcast::channel::<u64>(64).unwrap();
    let rx2 = tx.subscribe().unwrap();
    let ready = Pipe::new();
    let go = Pipe::new();
    let Some(pid) = fork() else {
        drop(rx1);
        drop(rx2);
        child_main(|| {
            // The parent's publisher leaves first; this copy then registers by publishing
            // (until then the subscribers would see no publisher: Disconnected).
            go.recv();
            for i in 0..N / 4 {
                if tx.send(i).is_err() {
                    return 1;
                }
                if i == 0 {
                    ready.send(1);
                }
            }
            0
        })
    };
    drop(tx);
    go.send(1);
    assert_eq!(ready.recv(), 1);
    let rt = runtime();
    let consume = |mut rx: shmchan::broadcast::Subscriber<u64>| async move {
        let mut next = 0;
        loop {
            match rx.recv_async().await {
                Ok(v) => {
                    assert_eq!(v, next, "out of order or duplicated");
                    next += 1;
                }
                Err(Error::Disconnected) => return next,
                Err(e) => panic!("recv_async: {e}"),
            }
        }
    };
    let a = rt.spawn(consume(rx1));
    let b = rt.spawn(consume(rx2));
    assert_eq!(rt.block_on(a).unwrap(), N / 4);
    assert_eq!(rt.block_on(b).unwrap(), N / 4);
    assert_eq!(wait(pid), 0);
}

#[test]
fn a_killed_publisher_surfaces_as_disconnected_through_recv_async() {
    let _g = serial();
    let rt = runtime();
    let (tx, rx) = shmchan::broadcast::channel::<u64>(8).unwrap();
    let ready = Pipe::new();
    let go = Pipe::new();
    let release = Pipe::new();
    let Some(pid) = fork() else {
        drop(rx);
        child_main(|| {
            // The parent's publisher leaves first; then this copy registers by publishing.
            go.recv();
            if tx.send(7).is_err() {
                return 1;
            }
            ready.send(1);
            // Never comes: the parent kills us.
            release.recv();
            0
        })
    };
    drop(tx);
    go.send(1);
    assert_eq!(ready.recv(), 1);
    let mut rx = rx;
    assert_eq!(rx.recv().unwrap(), 7);
    let base = registrations();
    let task = rt.spawn(async move { rx.recv_async().await });
    until_registered(base + 1);
    kill(pid);
    let killed = Instant::now();
    let r = rt.block_on(task).unwrap();
    let took = killed.elapsed();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    eprintln!("broadcast recv_async: killed publisher noticed after {took:?}");
    assert!(
        took < 2 * LIVENESS_INTERVAL + SLACK,
        "broadcast: took {took:?}"
    );
    assert_eq!(wait(pid), 128 + libc::SIGKILL);
    assert_eq!(registrations(), base);
}

#[test]
fn rpc_call_async_gets_its_own_answers_from_a_forked_server_and_disconnected_when_it_dies() {
    let _g = serial();
    let (server, mut client) = shmchan::rpc::channel::<u64, u64>(8).unwrap();
    let ready = Pipe::new();
    let Some(pid) = fork() else {
        drop(client);
        child_main(|| {
            ready.send(1);
            // Serves until killed.
            loop {
                match server.recv() {
                    Ok((req, replier)) => {
                        if replier.reply(req * 3).is_err() {
                            return 1;
                        }
                    }
                    Err(_) => return 2,
                }
            }
        })
    };
    drop(server);
    assert_eq!(ready.recv(), 1);
    let rt = runtime();
    let client = rt
        .block_on(rt.spawn(async move {
            for i in 0..2_000u64 {
                assert_eq!(client.call_async(i).await.expect("call_async"), i * 3);
            }
            // A call dropped while pending (a timeout far shorter than a round trip, then a
            // normal call): the next call gets its own answer, never the abandoned one's.
            for i in 0..200u64 {
                let _ = tokio::time::timeout(Duration::from_nanos(1), client.call_async(i)).await;
                assert_eq!(client.call_async(i + 1_000).await.unwrap(), (i + 1_000) * 3);
            }
            client
        }))
        .unwrap();
    let mut client = client;
    kill(pid);
    let killed = Instant::now();
    let r = rt
        .block_on(rt.spawn(async move { client.call_async(5).await }))
        .unwrap();
    let took = killed.elapsed();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    eprintln!("rpc call_async: killed server noticed after {took:?}");
    assert!(took < 2 * LIVENESS_INTERVAL + SLACK, "rpc: took {took:?}");
    assert_eq!(wait(pid), 128 + libc::SIGKILL);
}
