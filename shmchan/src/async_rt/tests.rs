//! The notifier and the futures, within one process: wake-ups, cancellation, the fallback
//! without `futex_waitv`, more words than one call takes, and leaked futures.

use super::*;
use crate::channel::WaitStrategy;
use crate::{SeqLock, Shared};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::AtomicUsize;
use std::task::Wake;
use std::time::Instant;

/// The tests that count this process's registrations run one at a time (and compare with the
/// count they started with: a leaked future's registration stays, by design).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A waker that unparks a thread and counts its wake-ups.
struct Unpark {
    thread: std::thread::Thread,
    wakes: AtomicUsize,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn unpark_waker() -> (Arc<Unpark>, Waker) {
    let u = Arc::new(Unpark {
        thread: std::thread::current(),
        wakes: AtomicUsize::new(0),
    });
    (Arc::clone(&u), Waker::from(u))
}

/// A minimal executor: the futures need nothing but a `Waker` (runtime-agnostic).
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let (_, waker) = unpark_waker();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_secs(1));
    }
}

/// Polls once.
fn poll_once<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

use std::pin::Pin;

#[test]
fn recv_async_is_woken_by_a_send_from_another_thread() {
    let _s = serial();
    let base = registrations();
    let (tx, mut rx) = crate::channel::<u64>(4).unwrap();
    // Register on the first unready poll (no yield window).
    rx.set_wait_strategy(WaitStrategy::Block);
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        // Sends once the receiver is announced (its word holds 1): the wake-up must come
        // through the notifier.
        seen_rx.recv().unwrap();
        tx.send(7).unwrap();
        tx
    });
    let mut fut = pin!(rx.recv_async());
    let (unpark, waker) = unpark_waker();
    assert!(
        fut.as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    seen_tx.send(()).unwrap();
    let v = loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            break v;
        }
        std::thread::park_timeout(Duration::from_secs(1));
    };
    assert_eq!(v.unwrap(), 7);
    assert!(unpark.wakes.load(Ordering::SeqCst) >= 1);
    assert!(notifier_started());
    assert_eq!(registrations(), base);
    drop(t.join().unwrap());
}

#[test]
fn an_adaptive_future_yields_through_the_executor_before_it_announces_and_registers() {
    let _s = serial();
    let base = registrations();
    let (tx, mut rx) = crate::channel::<u64>(4).unwrap();
    assert_eq!(rx.wait_strategy(), WaitStrategy::Adaptive);
    let (unpark, waker) = unpark_waker();
    let mut fut = Box::pin(rx.recv_async());
    // Inside the window: woken at once by itself, not announced, not registered.
    assert!(poll_once(&mut fut, &waker).is_pending());
    assert_eq!(unpark.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(registrations(), base);
    let start = std::time::Instant::now();
    // Re-polled as the executor would, until the window is over: then announced and
    // registered, and no longer self-woken.
    while registrations() == base {
        assert!(poll_once(&mut fut, &waker).is_pending());
        assert!(start.elapsed() < Duration::from_secs(5), "never registered");
    }
    let wakes = unpark.wakes.load(Ordering::SeqCst);
    assert!(poll_once(&mut fut, &waker).is_pending());
    assert_eq!(unpark.wakes.load(Ordering::SeqCst), wakes, "still yielding");
    tx.send(3).unwrap();
    let v = loop {
        if let Poll::Ready(v) = poll_once(&mut fut, &waker) {
            break v;
        }
        std::thread::park_timeout(Duration::from_secs(1));
    };
    assert_eq!(v.unwrap(), 3);
    drop(fut);
    assert_eq!(registrations(), base);
    // A message arriving within the window is taken without any registration.
    let mut fut = Box::pin(rx.recv_async());
    assert!(poll_once(&mut fut, &waker).is_pending());
    tx.send(4).unwrap();
    assert!(matches!(poll_once(&mut fut, &waker), Poll::Ready(Ok(4))));
    assert_eq!(registrations(), base);
}

#[test]
fn dropping_a_pending_recv_withdraws_it_and_takes_no_message() {
    let _s = serial();
    let base = registrations();
    let (tx, mut rx) = crate::channel::<u64>(4).unwrap();
    rx.set_wait_strategy(WaitStrategy::Block);
    let (_, waker) = unpark_waker();
    {
        let mut fut = Box::pin(rx.recv_async());
        assert!(poll_once(&mut fut, &waker).is_pending());
        assert_eq!(registrations(), base + 1);
    }
    // Dropped while pending: unregistered, and the word no longer announces a waiter (a send
    // makes no system call).
    assert_eq!(registrations(), base);
    assert_eq!(rx.wait_word().load(Ordering::SeqCst), 0);
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    // A future dropped after being woken, before its next poll, takes nothing either.
    {
        let mut fut = Box::pin(rx.recv_async());
        assert!(matches!(poll_once(&mut fut, &waker), Poll::Ready(Ok(1))));
    }
    assert_eq!(block_on(rx.recv_async()).unwrap(), 2);
    drop(tx);
    assert!(matches!(
        block_on(rx.recv_async()),
        Err(Error::Disconnected)
    ));
    assert_eq!(registrations(), base);
}

#[test]
fn dropping_a_pending_send_sends_nothing_and_withdraws_it() {
    let _s = serial();
    let base = registrations();
    let (mut tx, rx) = crate::channel::<u64>(1).unwrap();
    tx.set_wait_strategy(WaitStrategy::Block);
    block_on(tx.send_async(1)).unwrap();
    let (_, waker) = unpark_waker();
    {
        let mut fut = Box::pin(tx.send_async(2));
        assert!(poll_once(&mut fut, &waker).is_pending());
        assert_eq!(registrations(), base + 1);
    }
    assert_eq!(registrations(), base);
    assert_eq!(tx.wait_word().load(Ordering::SeqCst), 0);
    assert_eq!(rx.try_recv().unwrap(), Some(1));
    assert_eq!(rx.try_recv().unwrap(), None);
    // mpmc: the same, on a word other waiters may share.
    let (mut tx, rx) = crate::mpmc::channel::<u64>(1).unwrap();
    tx.set_wait_strategy(WaitStrategy::Block);
    let mut n = 0;
    while tx.try_send(n).is_ok() {
        n += 1;
    }
    {
        let mut fut = Box::pin(tx.send_async(n));
        assert!(poll_once(&mut fut, &waker).is_pending());
    }
    assert_eq!(registrations(), base);
    for i in 0..n {
        assert_eq!(rx.try_recv().unwrap(), Some(i));
    }
    assert_eq!(rx.try_recv().unwrap(), None);
}

#[test]
fn changed_async_wakes_on_a_write_and_withdraws_when_dropped() {
    let _s = serial();
    let base = registrations();
    let s = Shared::<u64, SeqLock>::anonymous(0).unwrap();
    let words = s.change_words_for_tests();
    let seen = s.version();
    let (_, waker) = unpark_waker();
    {
        let mut fut = Box::pin(s.changed_async(seen));
        assert!(poll_once(&mut fut, &waker).is_pending());
        assert_eq!(words.watchers(), 1);
    }
    assert_eq!(words.watchers(), 0);
    assert_eq!(registrations(), base);
    let now = std::thread::scope(|t| {
        let w = t.spawn(|| {
            while words.watchers() == 0 {
                std::thread::yield_now();
            }
            s.store(9);
        });
        let now = block_on(s.changed_async(seen)).unwrap();
        w.join().unwrap();
        now
    });
    assert!(now > seen);
    assert_eq!(s.read(), 9);
    assert_eq!(words.watchers(), 0);
    // A change before the call returns at once.
    assert_eq!(block_on(s.changed_async(seen)).unwrap(), now);
    // And through the fcntl lock.
    let f = Shared::<u64, crate::FcntlLock>::anonymous(0).unwrap();
    let seen = f.version();
    std::thread::scope(|t| {
        t.spawn(|| f.store(3));
        assert!(block_on(f.changed_async(seen)).unwrap() > seen);
    });
}

/// Polls `fut` through a `ChannelWait` bound to `notifier` until ready.
fn recv_via(notifier: &'static Notifier, rx: &crate::Receiver<u64>) -> Result<u64> {
    let mut wait = ChannelWait::new(true);
    wait.waiter.notifier = Some(notifier);
    block_on(std::future::poll_fn(|cx| {
        wait.poll(
            cx,
            rx.wait_word(),
            || {
                let (memory, _) = rx.async_parts();
                let keep: Keep = memory.clone();
                (keep, Periodic::Always)
            },
            || rx.try_recv().transpose(),
        )
    }))
}

#[test]
fn without_futex_waitv_the_notifier_polls() {
    let notifier = Notifier::leaked(true);
    let (tx, rx) = crate::channel::<u64>(4).unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        tx.send(5).unwrap();
        tx
    });
    let started = Instant::now();
    assert_eq!(recv_via(notifier, &rx).unwrap(), 5);
    assert!(started.elapsed() < Duration::from_secs(5));
    let tx = t.join().unwrap();
    drop(tx);
    assert!(matches!(recv_via(notifier, &rx), Err(Error::Disconnected)));
    assert_eq!(notifier.lock().live, 0);
}

#[test]
fn more_pending_futures_than_one_futex_waitv_call_takes() {
    let _s = serial();
    let base = registrations();
    const N: usize = 2 * WAITV_MAX + 3;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..N {
        let (tx, mut rx) = crate::channel::<u64>(2).unwrap();
        senders.push(tx);
        tasks.push(rt.spawn(async move { (i, rx.recv_async().await) }));
    }
    // Wait until every task is pending (registered), then send.
    let deadline = Instant::now() + Duration::from_secs(30);
    while registrations() < base + N {
        assert!(
            Instant::now() < deadline,
            "only {} registered",
            registrations()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    for (i, tx) in senders.iter().enumerate() {
        tx.send(i as u64 * 10).unwrap();
    }
    for t in tasks {
        let (i, v) = rt.block_on(t).unwrap();
        assert_eq!(v.unwrap(), i as u64 * 10);
    }
    assert_eq!(registrations(), base);
}

#[test]
fn a_leaked_future_neither_faults_nor_stalls_the_notifier() {
    let _s = serial();
    let (_, waker) = unpark_waker();
    // A channel future forgotten while pending keeps its mapping alive.
    let (tx, mut rx) = crate::channel::<u64>(4).unwrap();
    let mut fut = Box::pin(rx.recv_async());
    assert!(poll_once(&mut fut, &waker).is_pending());
    std::mem::forget(fut);
    drop(rx);
    drop(tx);
    // A value future forgotten while pending, its value then unmapped: the notifier only ever
    // gave its word's address to the kernel.
    let s = Shared::<u64, SeqLock>::anonymous(0).unwrap();
    let mut fut = Box::pin(s.changed_async(0));
    assert!(poll_once(&mut fut, &waker).is_pending());
    std::mem::forget(fut);
    drop(s);
    // The notifier still serves everyone else.
    for _ in 0..3 {
        let (tx, mut rx) = crate::channel::<u64>(4).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            tx.send(1).unwrap();
        });
        assert_eq!(block_on(rx.recv_async()).unwrap(), 1);
        t.join().unwrap();
    }
    let s = Shared::<u64, SeqLock>::anonymous(0).unwrap();
    std::thread::scope(|t| {
        t.spawn(|| {
            std::thread::sleep(Duration::from_millis(5));
            s.store(1);
        });
        assert!(block_on(s.changed_async(0)).unwrap() > 0);
    });
}

#[test]
fn mpmc_futures_wake_and_complete() {
    let _s = serial();
    let base = registrations();
    let (mut tx, mut rx) = crate::mpmc::channel::<u64>(1).unwrap();
    let mut rx2 = rx.clone();
    std::thread::scope(|t| {
        t.spawn(|| {
            std::thread::sleep(Duration::from_millis(5));
            for i in 0..100 {
                block_on(tx.send_async(i)).unwrap();
            }
        });
        let mut got = Vec::new();
        while got.len() < 100 {
            got.push(block_on(rx.recv_async()).unwrap());
        }
        let want: Vec<u64> = (0..100).collect();
        assert_eq!(got, want);
    });
    drop(tx);
    assert!(matches!(
        block_on(rx2.recv_async()),
        Err(Error::Disconnected)
    ));
    assert_eq!(registrations(), base);
}

#[test]
fn the_futures_are_send() {
    fn send<F: Future + Send>(_: &F) {}
    let (mut tx, mut rx) = crate::channel::<u64>(1).unwrap();
    send(&rx.recv_async());
    send(&tx.send_async(1));
    let (mut tx, mut rx) = crate::mpmc::channel::<u64>(1).unwrap();
    send(&rx.recv_async());
    send(&tx.send_async(1));
    let s = Shared::<u64>::anonymous(0).unwrap();
    send(&s.changed_async(0));
}
