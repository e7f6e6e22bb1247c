//! The consuming end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::claim::Outstanding;
use super::endpoint::{Endpoint, Role};
use super::layout::Geometry;
use super::memory::QueueMemory;
use super::queue::{Pop, Recovery, wake_all};
use crate::channel::wait::{self, WaitStrategy};
use crate::{Error, Result, ShmSafe};

/// A consuming end of an mpmc queue. Any number of receivers, in any processes, may receive at
/// once; each message goes to exactly one of them.
///
/// Create one with [`channel`](super::channel()) (anonymous, before `fork`),
/// [`Receiver::create`] or [`Receiver::open`] (keyed); [`Clone`] makes another in the same
/// process. It may move between threads (`Send`) but not be shared by them (not `Sync`).
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmchan::mpmc::channel::<u64>(16)?;
/// tx.send(7)?;
/// drop(tx);
/// assert_eq!(rx.recv()?, 7);
/// assert!(matches!(rx.recv(), Err(shmchan::Error::Disconnected)));
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Receiver<T: ShmSafe> {
    end: Endpoint<T>,
    /// The position of this handle's `recv_ref` guard not yet released (see `recv_ref.rs`).
    pub(super) held: Outstanding,
}

// SAFETY: a `Receiver` is one consumer handle; moving it to another thread moves that role with
// it. Its `Cell`s make it `!Sync`, so two threads never use one handle at once.
unsafe impl<T: ShmSafe> Send for Receiver<T> {}

fn unreachable_timeout() -> Error {
    Error::Timeout {
        what: "a message (no deadline was set; this is a bug)".into(),
        holder_pid: None,
    }
}

impl<T: ShmSafe> Receiver<T> {
    /// The futex word this receiver sleeps on: whoever makes it ready (a message is published or the last sender closes)
    /// clears the word and wakes it if it holds 1. A waiter stores 1, issues a SeqCst fence, re-checks with a
    /// `try_` operation and sleeps while the word holds 1 (the protocol of `channel::wait`);
    /// `WaitSet` and the async notifier wait on it the same way.
    pub(crate) fn wait_word(&self) -> &std::sync::atomic::AtomicU32 {
        &self.end.queue.header().rx_wait.0
    }

    /// For `WaitSet`: whether `try_recv` would now return a message or an error (the queue is
    /// empty and every sender is gone, or this handle has no holder entry). With `liveness`,
    /// also rescans the senders' liveness when due, and skips the next position if it has been
    /// claimed and unpublished for `LIVENESS_INTERVAL` by a dead sender (as `try_recv` does).
    pub(crate) fn wait_set_ready(&self, liveness: bool) -> bool {
        let end = &self.end;
        if end.entry().is_err() || end.queue.probe_message() {
            return true;
        }
        let header = end.queue.header();
        let head = header.head.0.load(std::sync::atomic::Ordering::Acquire);
        let tail = header.tail.0.load(std::sync::atomic::Ordering::Acquire);
        if liveness
            && (tail.wrapping_sub(head) > end.queue.capacity()
                || end.geometry.check_unchanged(header).is_err())
        {
            // Impossible indices or constants: `try_recv` reports them.
            return true;
        }
        if head != tail {
            // Claimed, not yet published: only a dead sender's slot needs us (a live one
            // wakes us when it publishes).
            return liveness
                && end.stuck_long_enough(head)
                && end.queue.recover_unpublished(head) == Recovery::Recovered;
        }
        end.peer_disconnected(liveness.then(Instant::now))
    }

    pub(crate) fn attach(memory: Arc<QueueMemory>, geometry: Geometry) -> Receiver<T> {
        Receiver {
            end: Endpoint::attach(memory, geometry, Role::Consumer),
            held: Outstanding::default(),
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint<T> {
        &self.end
    }

    /// Receives the next message, blocking while the queue is empty.
    ///
    /// Each message is received exactly once, by one receiver; the messages of one sender
    /// arrive in the order it sent them (to each receiver, and overall in claim order).
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] once the queue is empty and every sender dropped its handle or
    /// died; [`Error::TooManyHolders`] if this handle could not be registered;
    /// [`Error::Corrupted`] if another process wrote impossible values.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<u32>(4)?;
    /// std::thread::spawn(move || tx.send(5));
    /// assert_eq!(rx.recv()?, 5);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv(&self) -> Result<T> {
        self.recv_until(None)?.ok_or_else(unreachable_timeout)
    }

    /// Receives the next message, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if nothing arrived in time (naming the sender that holds the next
    /// position, if one does: it may be stopped); otherwise as for [`recv`](Receiver::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (_tx, rx) = shmchan::mpmc::channel::<u32>(4)?;
    /// let e = rx.recv_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(e, shmchan::Error::Timeout { .. }));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        self.recv_until(Instant::now().checked_add(timeout))?
            .ok_or_else(|| Error::Timeout {
                what: "a message on the mpmc queue".into(),
                holder_pid: self.end.stuck_holder.get(),
            })
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Option<T>> {
        self.end.stuck_holder.set(None);
        if let Some(v) = self.try_recv()? {
            return Ok(Some(v));
        }
        wait::block_on_shared(
            &self.end.queue.header().rx_wait.0,
            self.end.strategy.get(),
            deadline,
            || self.try_recv(),
            || self.end.queue.probe_message(),
            || Ok(()),
        )
    }

    /// Receives a message if one is ready, without blocking: `Ok(None)` when the queue is
    /// empty (or the next message is still being written).
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the queue is empty and every sender is gone; otherwise as
    /// for [`recv`](Receiver::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<u32>(4)?;
    /// assert_eq!(rx.try_recv()?, None);
    /// tx.send(3)?;
    /// assert_eq!(rx.try_recv()?, Some(3));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn try_recv(&self) -> Result<Option<T>> {
        self.try_recv_with(|| {})
    }

    #[inline]
    fn try_recv_with(&self, claimed: impl FnOnce()) -> Result<Option<T>> {
        let end = &self.end;
        let me = end.entry()?;
        if self.held.is_set() {
            self.settle_held(); // a forgotten guard: release its slot first
        }
        let mut claimed = Some(claimed);
        for _ in 0..2 {
            let hook = || {
                if let Some(h) = claimed.take() {
                    h()
                }
            };
            match end.queue.try_pop(me, hook)? {
                Pop::Got(v) => {
                    wake_all(&end.queue.header().tx_wait.0);
                    return Ok(Some(v));
                }
                Pop::Pending { pos } => {
                    if !self.pending_slow_path(pos)? {
                        return Ok(None);
                    }
                }
                Pop::Busy => {
                    end.geometry.check_unchanged(end.queue.header())?;
                    return Ok(None);
                }
                Pop::Empty => return self.empty_slow_path(me),
            }
        }
        Ok(None)
    }

    /// Position `pos` is claimed but not published: if that has lasted, skip it when its
    /// sender is dead. Returns true if it was skipped.
    #[cold]
    pub(super) fn pending_slow_path(&self, pos: u64) -> Result<bool> {
        let end = &self.end;
        end.geometry.check_unchanged(end.queue.header())?;
        if !end.stuck_long_enough(pos) {
            return Ok(false);
        }
        match end.queue.recover_unpublished(pos) {
            Recovery::Recovered => Ok(true),
            Recovery::Held { pid } => {
                end.stuck_holder.set(pid);
                Ok(false)
            }
            Recovery::NotStuck => Ok(false),
        }
    }

    /// The queue is empty: `Disconnected` if every sender is gone and it is still empty.
    #[cold]
    fn empty_slow_path(&self, me: &super::layout::Entry) -> Result<Option<T>> {
        let end = &self.end;
        if !end.peer_disconnected(Some(Instant::now())) {
            return Ok(None);
        }
        // A sender may have published just before leaving: drain first.
        match end.queue.try_pop(me, || {})? {
            Pop::Got(v) => {
                wake_all(&end.queue.header().tx_wait.0);
                Ok(Some(v))
            }
            Pop::Empty => Err(Error::Disconnected),
            Pop::Pending { pos } => {
                self.pending_slow_path(pos)?;
                Ok(None)
            }
            Pop::Busy => Ok(None),
        }
    }

    /// Receives up to `max` messages into `out` (appended), blocking until at least one is
    /// ready; returns how many.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Receiver::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<u8>(8)?;
    /// tx.send_batch(&[1, 2, 3, 4])?;
    /// let mut out = Vec::new();
    /// assert_eq!(rx.recv_batch(&mut out, 3)?, 3);
    /// assert_eq!(out, [1, 2, 3]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize> {
        let n = self.try_recv_batch(out, max)?;
        if n > 0 || max == 0 {
            return Ok(n);
        }
        out.push(self.recv()?);
        Ok(1 + self.try_recv_batch(out, max - 1).unwrap_or(0))
    }

    /// Receives up to `max` ready messages into `out` (appended) without blocking; returns how
    /// many (0 if the queue is empty).
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the queue is empty and every sender is gone; otherwise as
    /// for [`recv`](Receiver::recv) (an error after some messages were received is reported by
    /// the next call).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<u8>(8)?;
    /// let mut out = Vec::new();
    /// assert_eq!(rx.try_recv_batch(&mut out, 8)?, 0);
    /// tx.send(9)?;
    /// assert_eq!(rx.try_recv_batch(&mut out, 8)?, 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize> {
        let mut n = 0;
        while n < max {
            match self.try_recv() {
                Ok(Some(v)) => out.push(v),
                Ok(None) => break,
                Err(_) if n > 0 => break,
                Err(e) => return Err(e),
            }
            n += 1;
        }
        Ok(n)
    }

    /// Test hook: receives like [`try_recv`](Receiver::try_recv), calling `claimed` after a
    /// message is claimed and before it is copied and its slot released. Not public API.
    #[doc(hidden)]
    pub fn __try_recv_with_hook(&self, claimed: impl FnOnce()) -> Result<Option<T>> {
        self.try_recv_with(claimed)
    }

    /// Chooses how a blocked `recv` waits (spin, sleep, or both).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::mpmc::WaitStrategy;
    ///
    /// let (_tx, rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// rx.set_wait_strategy(WaitStrategy::Spin);
    /// assert_eq!(rx.wait_strategy(), WaitStrategy::Spin);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn set_wait_strategy(&self, strategy: WaitStrategy) {
        self.end.strategy.set(strategy);
    }

    /// How a blocked `recv` waits.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// assert_eq!(rx.wait_strategy(), shmchan::mpmc::WaitStrategy::Adaptive);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.end.strategy.get()
    }

    /// The capacity in messages.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = shmchan::mpmc::channel::<u8>(3)?;
    /// assert_eq!(rx.capacity(), 4);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.end.queue.capacity() as usize
    }

    /// Messages claimed by senders and not yet by receivers (a snapshot).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// tx.send(1)?;
    /// assert_eq!(rx.len_hint(), 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn len_hint(&self) -> usize {
        self.end.queue.len_hint() as usize
    }

    /// Slots skipped so far because their sender died between claiming and publishing them.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// assert_eq!(rx.recovered(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recovered(&self) -> u64 {
        self.end.queue.counters().0
    }

    /// Messages lost so far because the receiver that had taken them died before finishing
    /// the copy.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// assert_eq!(rx.lost(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn lost(&self) -> u64 {
        self.end.queue.counters().1
    }

    /// How many sender handles are alive now, in all processes (reads `/proc`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// assert_eq!(rx.peer_count(), 1);
    /// drop(tx);
    /// assert_eq!(rx.peer_count(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn peer_count(&self) -> usize {
        self.end.peer_pids().len()
    }

    /// Whether every sender is known to be gone (messages may still be queued); false while no
    /// sender has ever attached.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// tx.send(1)?;
    /// drop(tx);
    /// assert!(rx.is_disconnected());
    /// assert_eq!(rx.recv()?, 1); // still delivered
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.end.peer_disconnected(Some(Instant::now()))
    }
}

impl<T: ShmSafe> Clone for Receiver<T> {
    /// Another receiver on the same queue, registered in the consumer table. If the table is
    /// full, the clone's operations fail with [`Error::TooManyHolders`] until an entry frees.
    fn clone(&self) -> Self {
        Receiver {
            end: self.end.duplicate(),
            held: Outstanding::default(),
        }
    }
}

impl<T: ShmSafe> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Receiver")
            .field("type", &T::LAYOUT.type_name)
            .field("capacity", &self.capacity())
            .field("sender_pids", &self.end.peer_pids())
            .finish()
    }
}

impl<T: ShmSafe> Drop for Receiver<T> {
    fn drop(&mut self) {
        // A forgotten guard's slot is released, or senders would wait on it for good.
        self.settle_held();
        // Senders blocked on a full queue must look again: this may have been the last
        // receiver.
        if self.end.leave() {
            wake_all(&self.end.queue.header().tx_wait.0);
        }
    }
}
