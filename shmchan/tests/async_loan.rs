//! `recv_ref_async` across processes, under tokio's multi-thread runtime: every message of a
//! forked blocking sender read in place exactly once, in order; cancelled (timed-out) futures
//! take nothing; a killed sender surfaces as `Disconnected`; two mpmc receivers awaiting in place
//! share a forked sender's messages exactly once.

#![cfg(feature = "async")]

mod fork_support;

use std::time::{Duration, Instant};

use fork_support::{Pipe, child_main, fork, kill, serial, wait};
use shmchan::Error;
use shmchan::channel::LIVENESS_INTERVAL;

/// A message big enough to span several cache lines, with a check word.
type Msg = [u64; 16];

fn msg(i: u64) -> Msg {
    let mut m = [i; 16];
    m[15] = !i;
    m
}

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

#[test]
fn recv_ref_async_reads_every_message_of_a_forked_sender_in_place_once() {
    let _g = serial();
    const M: u64 = 20_000;
    let (tx, mut rx) = shmchan::channel::<Msg>(16).unwrap();
    let go = Pipe::new();
    let Some(pid) = fork() else {
        drop(rx);
        child_main(|| {
            go.recv();
            for i in 0..M {
                if tx.send(msg(i)).is_err() {
                    return 1;
                }
            }
            0
        })
    };
    drop(tx);
    let rt = runtime();
    let base = registrations();
    let got = rt
        .block_on(rt.spawn(async move {
            // Nothing is sent yet: each timeout drops a pending, registered future.
            for _ in 0..3 {
                let r = tokio::time::timeout(Duration::from_millis(5), rx.recv_ref_async()).await;
                assert!(r.is_err(), "nothing was sent yet");
            }
            go.send(1);
            let mut next = 0;
            loop {
                // Short timeouts: some futures are dropped while pending, mid-stream.
                match tokio::time::timeout(Duration::from_micros(50), rx.recv_ref_async()).await {
                    Ok(Ok(m)) => {
                        let view = m.view();
                        assert_eq!(view.get(0), Some(next), "lost, duplicated or reordered");
                        assert_eq!(view.get(15), Some(!next), "torn message");
                        next += 1;
                    }
                    Ok(Err(Error::Disconnected)) => return next,
                    Ok(Err(e)) => panic!("recv_ref_async: {e}"),
                    Err(_) => {}
                }
            }
        }))
        .unwrap();
    assert_eq!(got, M);
    assert_eq!(registrations(), base, "a dropped future stayed registered");
    assert_eq!(wait(pid), 0);
}

#[test]
fn a_killed_sender_surfaces_as_disconnected_through_recv_ref_async() {
    let _g = serial();
    let (tx, mut rx) = shmchan::channel::<Msg>(4).unwrap();
    let ready = Pipe::new();
    let Some(pid) = fork() else {
        drop(rx);
        child_main(|| {
            if tx.send(msg(7)).is_err() {
                return 1;
            }
            ready.send(1);
            loop {
                std::thread::park();
            }
        })
    };
    drop(tx);
    ready.recv();
    let rt = runtime();
    rt.block_on(async {
        let first = rx
            .recv_ref_async()
            .await
            .expect("the message sent before the kill");
        assert_eq!(first.to_owned(), msg(7));
        drop(first);
        kill(pid);
        let t = Instant::now();
        match rx.recv_ref_async().await {
            Err(Error::Disconnected) => {}
            other => panic!("expected Disconnected, got {other:?}"),
        }
        let limit = LIVENESS_INTERVAL + Duration::from_millis(500);
        assert!(t.elapsed() < limit, "noticed after {:?}", t.elapsed());
    });
    wait(pid);
}

#[test]
fn mpmc_recv_ref_async_receivers_share_a_forked_senders_messages_exactly_once() {
    let _g = serial();
    const M: u64 = 20_000;
    let (tx, rx) = shmchan::mpmc::channel::<Msg>(16).unwrap();
    let Some(pid) = fork() else {
        drop(rx);
        child_main(|| {
            for i in 0..M {
                if tx.send(msg(i)).is_err() {
                    return 1;
                }
            }
            0
        })
    };
    drop(tx);
    let rt = runtime();
    let base = registrations();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let mut rx = rx.clone();
            rt.spawn(async move {
                let mut got = Vec::new();
                loop {
                    let r =
                        tokio::time::timeout(Duration::from_micros(50), rx.recv_ref_async()).await;
                    match r {
                        Ok(Ok(m)) => {
                            let (first, last) = (m.view().get(0), m.view().get(15));
                            let first = first.expect("in bounds");
                            assert_eq!(last, Some(!first), "torn message");
                            got.push(first);
                        }
                        Ok(Err(Error::Disconnected)) => return got,
                        Ok(Err(e)) => panic!("recv_ref_async: {e}"),
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    drop(rx);
    let mut all = Vec::new();
    for t in tasks {
        let got = rt.block_on(t).unwrap();
        // Per-producer order within each receiver.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "reordered");
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, (0..M).collect::<Vec<_>>(), "lost or duplicated");
    assert_eq!(registrations(), base, "a dropped future stayed registered");
    assert_eq!(wait(pid), 0);
}
