//! `broadcast::Publisher::send_async` across processes, under tokio: a forked slow subscriber
//! gets 10^4 messages exactly once from an async publisher in `Block` mode that never blocks
//! its executor; a SIGKILLed subscriber unblocks a pending send within `LIVENESS_INTERVAL`;
//! dropping a pending send publishes nothing and leaves no waiter registered; in `DropOldest`
//! mode the future completes at once. And `recv_ref_async`: every message of a forked loaning
//! publisher read in place exactly once; a cancelled one takes nothing.

#![cfg(feature = "async")]

mod broadcast_support;

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use broadcast_support::{Pattern, SharedCounters, Signal, child_main, fork, park, serial};
use shmchan::Error;
use shmchan::broadcast::{LIVENESS_INTERVAL, Overflow, Publisher, TrySendError, channel};

/// How late a killed subscriber may surface beyond [`LIVENESS_INTERVAL`] on a loaded machine.
const SLACK: Duration = Duration::from_millis(500);

/// Registrations of this process's notifier.
fn registrations() -> usize {
    shmchan::__async_notifier_state().0
}

/// Waits (bounded) until the notifier holds at least `n` registrations.
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

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Fills the ring of `tx` (no subscriber reads it); returns how many were sent.
fn fill(tx: &Publisher<Pattern>) -> u64 {
    let mut sent = 0;
    loop {
        match tx.try_send(Pattern::new(sent)) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(_)) => return sent,
            Err(e) => panic!("{e:?}"),
        }
        assert!(sent < 1000, "never full");
    }
}

#[test]
fn a_forked_slow_subscriber_gets_every_message_of_an_async_publisher_exactly_once() {
    let _g = serial();
    const N: u64 = 10_000;
    let (mut tx, rx) = channel::<Pattern>(8).unwrap();
    // The parent's executor sets word 0 once it has run other tasks while the publisher
    // waited: only then does the child start reading (bounded, so a blocked executor fails
    // the test instead of hanging it).
    let go = SharedCounters::new(1);
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(tx); // else its copy keeps the channel connected
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut waited_for_go = true;
            while go.get()[0].load(Ordering::Acquire) == 0 {
                if Instant::now() > deadline {
                    waited_for_go = false;
                    break;
                }
                std::thread::yield_now();
            }
            for seq in 0..N {
                match rx.recv() {
                    Ok(m) if m == Pattern::new(seq) => {}
                    _ => return 2, // lost, torn, duplicated or reordered
                }
                if seq % 1000 == 999 {
                    // Slow now and then: the publisher finds the ring full again.
                    for _ in 0..10_000 {
                        std::thread::yield_now();
                    }
                }
            }
            match rx.recv() {
                Err(Error::Disconnected) if waited_for_go => 0,
                Err(Error::Disconnected) => 3, // the executor never ran while the send waited
                _ => 4,
            }
        })
    };
    drop(rx);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let go_word = &go.get()[0];
    rt.block_on(async {
        // Polled only while the publishing future is pending (one task, one thread): the
        // first time is when the ring is full and the child has not started reading.
        let ticker = async {
            let mut ticks = 0u64;
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                ticks += 1;
                if ticks >= 3 {
                    go_word.store(1, Ordering::Release);
                }
            }
        };
        let publish = async {
            for seq in 0..N {
                tx.send_async(Pattern::new(seq)).await.unwrap();
            }
        };
        tokio::select! {
            () = publish => {}
            () = ticker => unreachable!(),
        }
    });
    drop(tx);
    assert_eq!(child.wait(), 0);
    assert_eq!(registrations(), 0);
}

#[test]
fn a_sigkilled_subscriber_unblocks_a_pending_send_async_within_the_liveness_interval() {
    let _g = serial();
    let (mut tx, slow) = channel::<Pattern>(4).unwrap();
    let ready = Signal::new();
    let Some(mut child) = fork() else {
        child_main(move || {
            std::hint::black_box(&slow);
            ready.notify();
            park()
        })
    };
    drop(slow);
    ready.wait();
    let sent = fill(&tx);
    assert_eq!(sent, 4);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let mut pending = rt.spawn(async move {
        let r = tx.send_async(Pattern::new(sent)).await;
        (r, Instant::now(), tx)
    });
    until_registered(1);
    // Alive: the future stays pending, however many liveness ticks pass.
    let waited =
        rt.block_on(async { tokio::time::timeout(LIVENESS_INTERVAL * 4, &mut pending).await });
    assert!(waited.is_err(), "sent past a live subscriber");
    assert_eq!(child.kill(), 128 + libc::SIGKILL);
    let killed = Instant::now();
    let (r, done, tx) = rt.block_on(pending).unwrap();
    r.unwrap();
    let took = done.duration_since(killed);
    assert!(took < LIVENESS_INTERVAL + SLACK, "{took:?}");
    assert_eq!(tx.published(), sent + 1);
    assert_eq!(registrations(), 0);
}

#[test]
fn dropping_a_pending_send_async_publishes_nothing_and_leaves_no_waiter() {
    let _g = serial();
    let (mut tx, rx) = channel::<Pattern>(2).unwrap();
    // `Block`: registered at the first unready poll (no yield window first).
    tx.set_wait_strategy(shmchan::broadcast::WaitStrategy::Block);
    let sent = fill(&tx);
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    {
        let mut send = pin!(tx.send_async(Pattern::new(100)));
        assert!(send.as_mut().poll(&mut cx).is_pending());
        assert!(send.as_mut().poll(&mut cx).is_pending());
        assert_eq!(registrations(), 1);
    }
    assert_eq!(registrations(), 0);
    assert_eq!(tx.published(), sent);
    // Also when cancelled by a timeout under tokio.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(30), tx.send_async(Pattern::new(101))).await
    });
    assert!(r.is_err(), "completed past a full ring");
    assert_eq!(registrations(), 0);
    assert_eq!(tx.published(), sent);
    for seq in 0..sent {
        assert_eq!(rx.recv().unwrap(), Pattern::new(seq));
    }
    assert!(rx.try_recv().unwrap().is_none());
    // The next send is the next message; the cancelled ones are gone.
    rt.block_on(tx.send_async(Pattern::new(7))).unwrap();
    assert_eq!(rx.recv().unwrap(), Pattern::new(7));
}

#[test]
fn a_drop_oldest_send_async_completes_at_its_first_poll() {
    let _g = serial();
    let (mut tx, rx) = Publisher::<u64>::options()
        .capacity(2)
        .overflow(Overflow::DropOldest)
        .anonymous()
        .unwrap();
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    for i in 0..5 {
        let mut send = pin!(tx.send_async(i));
        assert!(matches!(send.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
    }
    assert_eq!(registrations(), 0);
    assert!(matches!(rx.recv(), Err(Error::Lagged { missed: 3 })));
    assert_eq!(rx.recv().unwrap(), 3);
}

#[test]
fn an_async_subscriber_reads_every_message_of_a_forked_loaning_publisher_in_place_once() {
    let _g = serial();
    const N: u64 = 10_000;
    let (mut tx, mut rx) = channel::<Pattern>(16).unwrap();
    let (parent_left, attached) = (Signal::new(), Signal::new());
    let Some(mut child) = fork() else {
        child_main(move || {
            drop(rx);
            // The parent's publisher must leave before this copy can publish.
            parent_left.wait();
            for seq in 0..N {
                let Ok(mut slot) = tx.loan() else { return 2 };
                let mut v = slot.view_mut();
                v.set_seq(seq);
                v.words().store(Pattern::new(seq).words);
                if slot.send().is_err() {
                    return 3;
                }
                if seq == 0 {
                    attached.notify();
                }
            }
            0
        })
    };
    drop(tx);
    parent_left.notify();
    attached.wait();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let got = rt.block_on(rt.spawn(async move {
        let mut next = 0;
        loop {
            match rx.recv_ref_async().await {
                Ok(msg) => {
                    assert_eq!(msg.view().seq(), next, "lost, duplicated or reordered");
                    assert!(msg.to_owned().is_valid(), "torn");
                    next += 1;
                }
                Err(Error::Disconnected) => return next,
                Err(e) => panic!("{e:?}"),
            }
        }
    }));
    assert_eq!(got.unwrap(), N);
    assert_eq!(child.wait(), 0);
    assert_eq!(registrations(), 0);
}

#[test]
fn a_cancelled_recv_ref_async_takes_nothing_and_drop_oldest_refuses_it() {
    let _g = serial();
    let (tx, mut rx) = channel::<u64>(4).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(30), rx.recv_ref_async())
            .await
            .is_err()
    });
    assert!(r, "completed on an empty channel");
    assert_eq!(registrations(), 0);
    tx.send(5).unwrap();
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    {
        // A ready future's guard moves past message 5 when it drops.
        let mut fut = pin!(rx.recv_ref_async());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(m)) => assert_eq!(m.to_owned(), 5),
            other => panic!("{:?}", other.map(|r| r.map(|m| m.to_owned()))),
        }
    }
    assert!(rx.try_recv().unwrap().is_none());

    let (_tx, mut rx) = Publisher::<u64>::options()
        .overflow(Overflow::DropOldest)
        .anonymous()
        .unwrap();
    let r = rt.block_on(rx.recv_ref_async());
    assert!(matches!(r, Err(Error::InvalidArgument { .. })));
}
