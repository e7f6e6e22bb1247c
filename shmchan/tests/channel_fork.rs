//! Cross-process channel tests: a forked peer, real `SIGKILL`s, handshakes through pipes (never
//! sleeps). Fork-heavy, so in their own test binary; the tests also take `SERIAL` so that no
//! other test thread of this binary runs while one forks.

use std::os::fd::RawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmchan::channel::WaitStrategy;
use shmchan::{Error, ShmSafe};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A message whose second word is derived from the first: a torn, stale or duplicated slot
/// shows up as a wrong `check` or a wrong `seq`.
#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Seq {
    seq: u64,
    check: u64,
}

impl Seq {
    fn new(seq: u64) -> Seq {
        Seq {
            seq,
            check: seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5,
        }
    }

    fn is_valid(&self) -> bool {
        *self == Seq::new(self.seq)
    }
}

/// A forked child running `body`; it exits with the code `body` returns, without unwinding or
/// running the parent's destructors.
struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

/// Forks: `None` in the child (which must end in [`child_main`]), the child's handle in the
/// parent.
fn fork() -> Option<Child> {
    // SAFETY: the child only runs channel operations, atomics and pipe I/O, then `_exit`s
    // (`child_main`); `SERIAL` keeps the other test threads of this binary idle meanwhile.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    (pid != 0).then(|| Child { pid, reaped: false })
}

/// Runs the child's `body` and exits with its code (101 if it panicked), never returning into
/// the test harness.
fn child_main(body: impl FnOnce() -> i32) -> ! {
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
    // SAFETY: ends the child at once, without running the parent's destructors.
    unsafe { libc::_exit(code) }
}

impl Child {
    /// Waits for the child and returns its exit code (or 128 + signal).
    fn wait(&mut self) -> i32 {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        assert_eq!(r, self.pid, "waitpid");
        self.reaped = true;
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        }
    }

    fn kill(&mut self) {
        // SAFETY: sending SIGKILL to our own, not yet reaped, child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            self.wait();
        }
    }
}

/// A pipe used as a one-byte handshake between parent and child.
struct Signal {
    read: RawFd,
    write: RawFd,
}

impl Signal {
    fn new() -> Signal {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid out-array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        Signal {
            read: fds[0],
            write: fds[1],
        }
    }

    fn notify(&self) {
        // SAFETY: writing one byte from a live local.
        let n = unsafe { libc::write(self.write, [1u8].as_ptr().cast(), 1) };
        assert_eq!(n, 1);
    }

    fn wait(&self) {
        let mut b = [0u8];
        // SAFETY: reading one byte into a live local.
        let n = unsafe { libc::read(self.read, b.as_mut_ptr().cast(), 1) };
        assert_eq!(n, 1);
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptors once.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}

/// Streams `n` messages through a `cap`-slot ring from a forked sender and checks each.
fn stream_through_small_ring(n: u64, cap: usize, tx_wait: WaitStrategy, rx_wait: WaitStrategy) {
    let (tx, rx) = shmchan::channel::<Seq>(cap).unwrap();
    tx.set_wait_strategy(tx_wait);
    rx.set_wait_strategy(rx_wait);
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            for i in 0..n {
                if tx.send(Seq::new(i)).is_err() {
                    return 1;
                }
            }
            0
        })
    };
    drop(tx);
    for i in 0..n {
        let m = rx.recv().unwrap();
        assert!(m.is_valid(), "torn message {m:?}");
        assert_eq!(m.seq, i, "lost, duplicated or reordered message");
    }
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    assert_eq!(child.wait(), 0);
}

#[test]
fn forked_sender_delivers_every_message_once_in_order_through_empty_and_full() {
    let _g = serial();
    // A 4-slot ring forces the empty and full transitions (and so the futex sleeps and wakes)
    // on nearly every message. Sized for an unoptimised build; see the #[ignore]d version.
    stream_through_small_ring(1_000_000, 4, WaitStrategy::Adaptive, WaitStrategy::Adaptive);
}

#[test]
fn blocking_mode_never_loses_a_wake_up() {
    let _g = serial();
    // Both sides sleep at once: every transition goes through announce / recheck / FUTEX_WAIT.
    // A lost wake-up would stall a side for LIVENESS_INTERVAL, hence the time bound.
    let t0 = Instant::now();
    stream_through_small_ring(100_000, 2, WaitStrategy::Block, WaitStrategy::Block);
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "took {:?}: wake-ups were lost",
        t0.elapsed()
    );
}

#[test]
#[ignore = "long: 20 million messages; run with --ignored --release"]
fn forked_sender_hammer_long() {
    let _g = serial();
    stream_through_small_ring(
        20_000_000,
        4,
        WaitStrategy::Adaptive,
        WaitStrategy::Adaptive,
    );
}

#[test]
fn sigkilled_sender_is_detected_after_its_messages_are_drained() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<Seq>(64).unwrap();
    let sent = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            for i in 0..50 {
                tx.send(Seq::new(i)).unwrap();
            }
            sent.notify();
            // Stay alive, holding the sender, until killed.
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        })
    };
    drop(tx);
    sent.wait();
    child.kill();
    for i in 0..50 {
        assert_eq!(rx.recv().unwrap(), Seq::new(i));
    }
    let t0 = Instant::now();
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    let waited = t0.elapsed();
    assert!(
        waited < Duration::from_millis(100),
        "dead sender noticed after {waited:?}"
    );
    child.wait();
}

#[test]
fn sender_killed_mid_stream_leaves_an_exact_prefix() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<Seq>(16).unwrap();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            let mut i = 0;
            while tx.send(Seq::new(i)).is_ok() {
                i += 1;
            }
            1
        })
    };
    drop(tx);
    // Kill it at an arbitrary point of the stream, while it is sending.
    for i in 0..10_000 {
        assert_eq!(rx.recv().unwrap(), Seq::new(i));
    }
    child.kill();
    let mut next = 10_000;
    loop {
        match rx.recv() {
            Ok(m) => {
                assert_eq!(
                    m,
                    Seq::new(next),
                    "gap, duplicate or torn message after the kill"
                );
                next += 1;
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(next >= 10_000);
    assert_eq!(child.wait(), 128 + libc::SIGKILL);
}

#[test]
fn sigkilled_receiver_makes_send_fail() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<u64>(8).unwrap();
    let ready = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(tx);
            // Receive one message so the receiving end is really in use, then wait to be killed.
            if !matches!(rx.recv(), Ok(1)) {
                return 1;
            }
            ready.notify();
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        })
    };
    drop(rx);
    tx.send(1).unwrap();
    ready.wait();
    child.kill();
    child.wait();
    // The ring has 8 free slots: sends succeed until it is full, then the blocked sender finds
    // the receiver dead.
    let t0 = Instant::now();
    let mut sent = 0;
    let err = loop {
        match tx.send(2) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Disconnected), "{err}");
    assert!(sent <= 8);
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn child_dropping_its_sender_disconnects_while_it_lives() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<u32>(8).unwrap();
    let release = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            tx.send_batch(&[1, 2, 3]).unwrap();
            drop(tx);
            release.wait(); // alive until the parent has seen the disconnect
            0
        })
    };
    drop(tx);
    let mut got = Vec::new();
    while got.len() < 3 {
        rx.recv_batch(&mut got, 8).unwrap();
    }
    assert_eq!(got, [1, 2, 3]);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    release.notify();
    assert_eq!(child.wait(), 0);
}

#[test]
fn parent_dropping_its_copy_after_fork_does_not_disconnect() {
    let _g = serial();
    let (tx, rx) = shmchan::channel::<u32>(8).unwrap();
    let go = Signal::new();
    let Some(mut child) = fork() else {
        child_main(|| {
            drop(rx);
            go.wait(); // the parent drops its copy of `tx` first
            tx.send(42).map(|_| 0).unwrap_or(1)
        })
    };
    drop(tx);
    assert!(!rx.is_disconnected(), "the child still holds the sender");
    go.notify();
    assert_eq!(rx.recv().unwrap(), 42);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    assert_eq!(child.wait(), 0);
}
