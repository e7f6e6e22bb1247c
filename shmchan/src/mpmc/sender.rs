//! The producing end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::claim::Outstanding;
use super::endpoint::{Endpoint, Role};
use super::layout::Geometry;
use super::memory::QueueMemory;
use super::queue::{Push, Recovery, wake_all};
use crate::channel::wait::{self, WaitStrategy};
use crate::channel::{SendTimeoutError, TrySendError};
use crate::{Error, Result, ShmSafe};

/// A producing end of an mpmc queue. Any number of senders, in any processes, may send at once.
///
/// Create one with [`channel`](super::channel()) (anonymous, before `fork`),
/// [`Sender::create`] or [`Sender::open`] (keyed); [`Clone`] makes another in the same process.
/// Each handle is registered in the queue's producer table while it lives (see the module
/// docs). It may move between threads (`Send`) but not be shared by them (not `Sync`): give
/// each thread its own clone.
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmchan::mpmc::channel::<u64>(16)?;
/// let tx2 = tx.clone();
/// tx.send(1)?;
/// tx2.send(2)?;
/// assert_eq!(rx.recv()? + rx.recv()?, 3);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Sender<T: ShmSafe> {
    end: Endpoint<T>,
    /// The position of this handle's loan not yet sent or skipped (see `loan.rs`).
    pub(super) loaned: Outstanding,
}

// SAFETY: a `Sender` is one producer handle; moving it to another thread moves that role with
// it. Its `Cell`s make it `!Sync`, so two threads never use one handle at once.
unsafe impl<T: ShmSafe> Send for Sender<T> {}

impl<T: ShmSafe> Sender<T> {
    /// The futex word this sender sleeps on: whoever makes it ready (a slot frees up or the last receiver closes)
    /// clears the word and wakes it if it holds 1. A waiter stores 1, issues a SeqCst fence, re-checks with a
    /// `try_` operation and sleeps while the word holds 1 (the protocol of `channel::wait`);
    /// `WaitSet` and the async notifier wait on it the same way.
    pub(crate) fn wait_word(&self) -> &std::sync::atomic::AtomicU32 {
        &self.end.queue.header().tx_wait.0
    }

    /// For `WaitSet`: whether `try_send` would now succeed or fail with an error other than
    /// `Full` (every receiver is gone, or this handle has no holder entry). With `liveness`,
    /// also rescans the receivers' liveness when due, and frees the next slot if a dead
    /// receiver has held it for `LIVENESS_INTERVAL` (as `try_send` does).
    pub(crate) fn wait_set_ready(&self, liveness: bool) -> bool {
        let end = &self.end;
        if end.entry().is_err() || end.queue.probe_space() {
            return true;
        }
        if end.peer_disconnected(liveness.then(Instant::now)) {
            return true;
        }
        if liveness && end.geometry.check_unchanged(end.queue.header()).is_err() {
            return true; // impossible constants: `try_send` reports them
        }
        let pos = end
            .queue
            .header()
            .tail
            .0
            .load(std::sync::atomic::Ordering::Acquire);
        liveness
            && end.stuck_long_enough(pos)
            && end.queue.recover_unreleased(pos) == Recovery::Recovered
    }

    pub(crate) fn attach(memory: Arc<QueueMemory>, geometry: Geometry) -> Sender<T> {
        Sender {
            end: Endpoint::attach(memory, geometry, Role::Producer),
            loaned: Outstanding::default(),
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint<T> {
        &self.end
    }

    /// Sends `value`, blocking while the queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] if every receiver dropped its handle or died (noticed at once
    /// after a drop, within [`LIVENESS_INTERVAL`](crate::channel::LIVENESS_INTERVAL) after a
    /// death); [`Error::TooManyHolders`] if this handle could not be registered;
    /// [`Error::Corrupted`] if another process wrote impossible values.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<[u8; 4]>(2)?;
    /// tx.send(*b"ping")?;
    /// assert_eq!(&rx.recv()?, b"ping");
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn send(&self, value: T) -> Result<()> {
        self.send_until(value, None).map_err(Error::from)
    }

    /// Sends `value`, blocking at most `timeout` while the queue is full.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (with the message) if the queue stayed full; otherwise as
    /// for [`send`](Sender::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (tx, _rx) = shmchan::mpmc::channel::<u8>(2)?;
    /// tx.send_timeout(1, Duration::from_millis(10)).unwrap();
    /// tx.send_timeout(2, Duration::from_millis(10)).unwrap();
    /// assert!(tx.send_timeout(3, Duration::from_millis(10)).is_err());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(value, Instant::now().checked_add(timeout))
    }

    fn send_until(&self, value: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        match self.try_send(value) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(v)) => return Err(SendTimeoutError::Disconnected(v)),
            Err(TrySendError::Failed(e)) => return Err(SendTimeoutError::Failed(e)),
        }
        let r = wait::block_on_shared(
            &self.end.queue.header().tx_wait.0,
            self.end.strategy.get(),
            deadline,
            || match self.try_send(value) {
                Ok(()) => Ok(Some(())),
                Err(TrySendError::Full(_)) => Ok(None),
                Err(e) => Err(Error::from(e)),
            },
            || self.end.queue.probe_space(),
            || Ok(()),
        );
        match r {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(SendTimeoutError::Timeout(value)),
            Err(Error::Disconnected) => Err(SendTimeoutError::Disconnected(value)),
            Err(e) => Err(SendTimeoutError::Failed(e)),
        }
    }

    /// Sends `value` if there is room, without blocking.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] (with the message) if the queue is full (or, briefly, if other
    /// senders won every race for a slot); [`TrySendError::Disconnected`] if every receiver is
    /// gone; [`TrySendError::Failed`] for the other errors of [`send`](Sender::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::mpmc::TrySendError;
    ///
    /// let (tx, rx) = shmchan::mpmc::channel::<u16>(2)?;
    /// tx.try_send(1).unwrap();
    /// tx.try_send(2).unwrap();
    /// assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    /// drop(rx);
    /// assert!(matches!(tx.try_send(3), Err(TrySendError::Disconnected(3))));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.try_send_with(value, || {})
    }

    #[inline]
    fn try_send_with(&self, value: T, claimed: impl FnOnce()) -> Result<(), TrySendError<T>> {
        let end = &self.end;
        let me = match end.entry() {
            Ok(me) => me,
            Err(e) => return Err(TrySendError::Failed(e)),
        };
        if self.loaned.is_set() {
            self.settle_loan(); // a forgotten loan: give its position up first
        }
        if end.peer_disconnected(end.clock_due()) {
            return Err(TrySendError::Disconnected(value));
        }
        let mut claimed = Some(claimed);
        for _ in 0..2 {
            let hook = || {
                if let Some(h) = claimed.take() {
                    h()
                }
            };
            match end.queue.try_push(me, &value, hook) {
                Ok(Push::Done) => {
                    wake_all(&end.queue.header().rx_wait.0);
                    return Ok(());
                }
                Ok(Push::Full { pos }) => match self.full_slow_path(pos) {
                    Ok(true) => continue,
                    Ok(false) => return Err(TrySendError::Full(value)),
                    Err(Error::Disconnected) => return Err(TrySendError::Disconnected(value)),
                    Err(e) => return Err(TrySendError::Failed(e)),
                },
                Ok(Push::Busy) => {
                    // Lost every race, or the indices are garbage: check the constants.
                    return match self.end.geometry.check_unchanged(end.queue.header()) {
                        Ok(()) => Err(TrySendError::Full(value)),
                        Err(e) => Err(TrySendError::Failed(e)),
                    };
                }
                Err(e) => return Err(TrySendError::Failed(e)),
            }
        }
        Err(TrySendError::Full(value))
    }

    /// On a full queue: check the constants, the receivers' liveness, and whether the slot at
    /// `pos` is held by a dead receiver (then free it). Returns true if a slot was freed.
    #[cold]
    pub(super) fn full_slow_path(&self, pos: u64) -> Result<bool> {
        let end = &self.end;
        end.geometry.check_unchanged(end.queue.header())?;
        if end.peer_disconnected(Some(Instant::now())) {
            return Err(Error::Disconnected);
        }
        if !end.stuck_long_enough(pos) {
            return Ok(false);
        }
        match end.queue.recover_unreleased(pos) {
            Recovery::Recovered => Ok(true),
            Recovery::Held { pid } => {
                end.stuck_holder.set(pid);
                Ok(false)
            }
            Recovery::NotStuck => Ok(false),
        }
    }

    /// Sends every message of `values` in order, blocking while the queue is full. Each
    /// message is claimed separately, so other senders' messages may interleave.
    ///
    /// # Errors
    ///
    /// As for [`send`](Sender::send). On error, a prefix of `values` may have been sent; use
    /// [`try_send_batch`](Sender::try_send_batch) to know how much.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<u32>(64)?;
    /// tx.send_batch(&[1, 2, 3])?;
    /// let mut got = Vec::new();
    /// rx.recv_batch(&mut got, 10)?;
    /// assert_eq!(got, [1, 2, 3]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn send_batch(&self, values: &[T]) -> Result<()> {
        values.iter().try_for_each(|v| self.send(*v))
    }

    /// Sends as many leading messages of `values` as fit now; returns how many (0 if the queue
    /// is full).
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] if every receiver is gone before the first message was sent;
    /// the other errors of [`send`](Sender::send).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::mpmc::channel::<u32>(2)?;
    /// assert_eq!(tx.try_send_batch(&[1, 2, 3])?, 2);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_send_batch(&self, values: &[T]) -> Result<usize> {
        for (n, v) in values.iter().enumerate() {
            match self.try_send(*v) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Ok(n),
                Err(_) if n > 0 => return Ok(n),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(values.len())
    }

    /// Test hook: sends `value` like [`try_send`](Sender::try_send), calling `claimed` after
    /// the slot is claimed and before the message is written and published. Not public API.
    #[doc(hidden)]
    pub fn __try_send_with_hook(
        &self,
        value: T,
        claimed: impl FnOnce(),
    ) -> Result<(), TrySendError<T>> {
        self.try_send_with(value, claimed)
    }

    /// Chooses how a blocked `send` waits (spin, sleep, or both).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::mpmc::WaitStrategy;
    ///
    /// let (tx, _rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// tx.set_wait_strategy(WaitStrategy::Block);
    /// assert_eq!(tx.wait_strategy(), WaitStrategy::Block);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn set_wait_strategy(&self, strategy: WaitStrategy) {
        self.end.strategy.set(strategy);
    }

    /// How a blocked `send` waits.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// assert_eq!(tx.wait_strategy(), shmchan::mpmc::WaitStrategy::Adaptive);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.end.strategy.get()
    }

    /// The capacity in messages (the requested one rounded up to a power of two).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::mpmc::channel::<u8>(100)?;
    /// assert_eq!(tx.capacity(), 128);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.end.queue.capacity() as usize
    }

    /// Messages claimed by senders and not yet by receivers (a snapshot; others change it).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// tx.send(1)?;
    /// assert_eq!(tx.len_hint(), 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn len_hint(&self) -> usize {
        self.end.queue.len_hint() as usize
    }

    /// Slots skipped so far because their sender died between claiming and publishing them
    /// (those messages were never sent: their `send` did not return).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// assert_eq!(tx.recovered(), 0);
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
    /// let (tx, _rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// assert_eq!(tx.lost(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn lost(&self) -> u64 {
        self.end.queue.counters().1
    }

    /// How many receiver handles are alive now, in all processes (reads `/proc`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// let rx2 = rx.clone();
    /// assert_eq!(tx.peer_count(), 2);
    /// drop((rx, rx2));
    /// assert_eq!(tx.peer_count(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn peer_count(&self) -> usize {
        self.end.peer_pids().len()
    }

    /// Whether every receiver is known to be gone (dropped, or found dead); false while no
    /// receiver has ever attached.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::mpmc::channel::<u8>(4)?;
    /// assert!(!tx.is_disconnected());
    /// drop(rx);
    /// assert!(tx.is_disconnected());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.end.peer_disconnected(Some(Instant::now()))
    }
}

impl<T: ShmSafe> Clone for Sender<T> {
    /// Another sender on the same queue, registered in the producer table. If the table is
    /// full, the clone's operations fail with [`Error::TooManyHolders`] until an entry frees.
    fn clone(&self) -> Self {
        Sender {
            end: self.end.duplicate(),
            loaned: Outstanding::default(),
        }
    }
}

impl<T: ShmSafe> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Sender")
            .field("type", &T::LAYOUT.type_name)
            .field("capacity", &self.capacity())
            .field("receiver_pids", &self.end.peer_pids())
            .finish()
    }
}

impl<T: ShmSafe> Drop for Sender<T> {
    fn drop(&mut self) {
        // A forgotten loan's position is skipped, or receivers would wait on it for good.
        self.settle_loan();
        // Receivers blocked on an empty queue must look again: this may have been the last
        // sender.
        if self.end.leave() {
            wake_all(&self.end.queue.header().rx_wait.0);
        }
    }
}
