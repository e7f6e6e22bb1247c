//! The publishing end.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::Overflow;
use super::layout::Geometry;
use super::memory::ChannelMemory;
use super::ring::Ring;
use super::subscriber::Subscriber;
use crate::channel::wait::{self, WaitStrategy};
use crate::channel::{LIVENESS_INTERVAL, SendTimeoutError, TrySendError};
use crate::mpmc::holders::Holder;
use crate::mpmc::queue::wake_all;
use crate::{Error, Result, ShmSafe};

/// The publishing end of a broadcast channel: every message it sends goes to every subscriber.
///
/// There is one publisher per channel. Create it with [`channel`](super::channel())
/// (anonymous, before `fork`), [`Publisher::create`] or [`Publisher::options`] (keyed); a
/// restarted publisher re-attaches with [`Publisher::open`]. Publishing while no subscriber
/// listens is not an error: the message is simply not received by anyone (subscribers join at
/// the newest message). It may move between threads (`Send`) but not be shared by them.
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmchan::broadcast::channel::<u64>(16)?;
/// let rx2 = tx.subscribe()?;
/// tx.send(7)?;
/// assert_eq!((rx.recv()?, rx2.recv()?), (7, 7));
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Publisher<T: ShmSafe> {
    // First: leaves the table before the mapping `ring` holds is unmapped.
    holder: Holder,
    ring: Ring<T>,
    strategy: Cell<WaitStrategy>,
    /// `Block` mode: positions below this may be written without looking at the cursors.
    limit: Cell<u64>,
    /// Per subscriber entry: the owner word found dead there (0: none), skipped in scans.
    dead: Box<[Cell<u64>]>,
    /// The position the publisher found no room for, and since when (or the last scan).
    stuck: Cell<Option<(u64, Instant)>>,
    /// The live subscriber that holds the publisher back, when known (for `Timeout` errors).
    slowest_pid: Cell<Option<u32>>,
}

// SAFETY: a `Publisher` is the one publishing handle; moving it to another thread moves that
// role with it. Its `Cell`s make it `!Sync`, so two threads never use one handle at once.
unsafe impl<T: ShmSafe> Send for Publisher<T> {}

impl<T: ShmSafe> Publisher<T> {
    /// Takes the publisher's entry on a channel validated for `geometry`.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyHolders`] if another live publisher holds the channel.
    pub(crate) fn attach(memory: Arc<ChannelMemory>, geometry: Geometry) -> Result<Publisher<T>> {
        let ring = Ring::<T>::new(memory, geometry);
        // SAFETY: the table lies in the mapping `ring` keeps alive, and `holder` is dropped
        // before `ring` (field order), in every process that inherits both.
        let holder = unsafe { Holder::join(*ring.publisher_table(), "publisher", &|_| true) };
        let p = Publisher {
            holder,
            limit: Cell::new(0),
            dead: (0..geometry.max_subscribers)
                .map(|_| Cell::new(0))
                .collect(),
            ring,
            strategy: Cell::new(WaitStrategy::default()),
            stuck: Cell::new(None),
            slowest_pid: Cell::new(None),
        };
        p.holder.entry(&|_| true)?;
        Ok(p)
    }

    /// The futex word this publisher sleeps on (`Block` mode, while the slowest subscriber is
    /// a lap behind): a subscriber that moves its cursor, leaves or joins clears the word and
    /// wakes it if it holds 1. A waiter stores 1, issues a SeqCst fence, re-checks with a
    /// `try_` operation and sleeps while the word holds 1 (the protocol of `channel::wait`).
    pub(crate) fn wait_word(&self) -> &AtomicU32 {
        &self.ring.header().pub_wait.0
    }

    /// A new subscriber of this channel, in this process, joining at the newest message
    /// (create subscribers before `fork` to hand them to children).
    ///
    /// # Errors
    ///
    /// [`Error::TooManyHolders`] if the subscriber table is full.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<u8>(4)?;
    /// tx.send(1)?;
    /// let late = tx.subscribe()?; // does not see message 1
    /// tx.send(2)?;
    /// assert_eq!((rx.recv()?, rx.recv()?), (1, 2));
    /// assert_eq!(late.recv()?, 2);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn subscribe(&self) -> Result<Subscriber<T>> {
        Subscriber::attach(self.ring.duplicate())
    }

    /// Sends `value` to every subscriber. In `Overflow::Block` mode it blocks while the slowest
    /// live subscriber is a whole lap behind (a dead one stops counting within
    /// [`LIVENESS_INTERVAL`]); in `Overflow::DropOldest` mode it never blocks.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyHolders`] if this is a forked child's copy of a publisher its parent
    /// still holds; [`Error::Corrupted`] if another process wrote impossible values. Never
    /// [`Error::Disconnected`]: publishing with no subscriber is allowed.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<[u8; 4]>(2)?;
    /// tx.send(*b"ping")?;
    /// assert_eq!(&rx.recv()?, b"ping");
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn send(&self, value: T) -> Result<()> {
        self.send_until(value, None).map_err(|e| match e {
            SendTimeoutError::Timeout(_) => Error::Timeout {
                what: "room in the broadcast ring (no deadline was set; this is a bug)".into(),
                holder_pid: None,
            },
            other => Error::from(other),
        })
    }

    /// Sends `value`, blocking at most `timeout` while the ring is full (`Block` mode).
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (with the message) if the slowest live subscriber did not
    /// move in time; otherwise as for [`send`](Publisher::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (tx, _rx) = shmchan::broadcast::channel::<u8>(2)?;
    /// tx.send_timeout(1, Duration::from_millis(10)).unwrap();
    /// tx.send_timeout(2, Duration::from_millis(10)).unwrap();
    /// assert!(tx.send_timeout(3, Duration::from_millis(10)).is_err()); // `_rx` read nothing
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
        let r = wait::block_on(
            self.wait_word(),
            self.strategy.get(),
            deadline,
            || match self.try_send(value) {
                Ok(()) => Ok(Some(())),
                Err(TrySendError::Full(_)) => Ok(None),
                Err(e) => Err(Error::from(e)),
            },
            || self.has_room(),
            || Ok(()),
        );
        match r {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(SendTimeoutError::Timeout(value)),
            Err(e) => Err(SendTimeoutError::Failed(e)),
        }
    }

    /// Sends `value` if the ring has room, without blocking.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] (with the message) if the slowest live subscriber is a lap behind
    /// (`Block` mode only); [`TrySendError::Failed`] for the errors of
    /// [`send`](Publisher::send). Never `Disconnected`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::broadcast::TrySendError;
    ///
    /// let (tx, rx) = shmchan::broadcast::channel::<u16>(2)?;
    /// tx.try_send(1).unwrap();
    /// tx.try_send(2).unwrap();
    /// assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    /// drop(rx); // the only subscriber leaves: nobody holds the publisher back
    /// tx.try_send(3).unwrap();
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let t = match self.try_reserve() {
            Ok(Some(t)) => t,
            Ok(None) => return Err(TrySendError::Full(value)),
            Err(e) => return Err(TrySendError::Failed(e)),
        };
        self.ring.write(t, &value);
        wake_all(&self.ring.header().sub_wait.0);
        Ok(())
    }

    /// The position the next message may be written at, if there is room for it (`Ok(None)`:
    /// `Block` mode and the slowest live subscriber is a lap behind). Writes nothing.
    #[inline]
    pub(super) fn try_reserve(&self) -> Result<Option<u64>> {
        self.holder.entry(&|_| true)?;
        // Only the publisher writes `tail`; reading it back (not a private copy) lets a
        // publisher re-opened after a crash continue where the old one stopped.
        let t = self.ring.header().tail.0.load(Ordering::Relaxed);
        if self.ring.geometry().overflow() == Overflow::Block
            && t >= self.limit.get()
            && !self.make_room(t)?
        {
            return Ok(None);
        }
        Ok(Some(t))
    }

    /// [`try_reserve`](Self::try_reserve), waiting as a blocked `send` does until `deadline`
    /// (`Ok(None)` once it passed).
    pub(super) fn reserve_until(&self, deadline: Option<Instant>) -> Result<Option<u64>> {
        if let Some(t) = self.try_reserve()? {
            return Ok(Some(t));
        }
        wait::block_on(
            self.wait_word(),
            self.strategy.get(),
            deadline,
            || self.try_reserve(),
            || self.has_room(),
            || Ok(()),
        )
    }

    /// The channel this publisher writes.
    pub(super) fn ring(&self) -> &Ring<T> {
        &self.ring
    }

    /// For `WaitSet`: whether `try_send` would now send or fail (there is room, the mode never
    /// blocks, or this handle cannot publish). With `liveness`, also stops counting the dead
    /// subscribers that hold the publisher back, as a blocked `send` does.
    pub(crate) fn wait_set_ready(&self, liveness: bool) -> bool {
        if self.holder.entry(&|_| true).is_err()
            || self.ring.geometry().overflow() == Overflow::DropOldest
            || self.has_room()
        {
            return true;
        }
        let t = self.ring.header().tail.0.load(Ordering::Relaxed);
        liveness && self.make_room(t).unwrap_or(true)
    }

    /// Whether a send would find room (a cheap probe while spinning: cached limit or a scan).
    fn has_room(&self) -> bool {
        let t = self.ring.header().tail.0.load(Ordering::Relaxed);
        t < self.limit.get() || self.scan(t) > t
    }

    /// The limit the live cursors allow now.
    fn scan(&self, t: u64) -> u64 {
        let slowest = self.ring.slowest_cursor(t, |i, owner| {
            self.dead.get(i).is_none_or(|d| d.get() != owner)
        });
        let limit = slowest.saturating_add(self.ring.capacity());
        self.limit.set(limit);
        limit
    }

    /// `Block` mode, no room at `t` by the cached limit: re-scan the cursors; once stuck for
    /// [`LIVENESS_INTERVAL`], stop counting the subscribers that hold it back and are dead.
    #[cold]
    fn make_room(&self, t: u64) -> Result<bool> {
        self.ring.geometry().check_unchanged(self.ring.header())?;
        if self.scan(t) > t {
            self.stuck.set(None);
            return Ok(true);
        }
        let now = Instant::now();
        match self.stuck.get() {
            Some((p, since)) if p == t && now.duration_since(since) >= LIVENESS_INTERVAL => {
                self.stuck.set(Some((t, now)));
            }
            Some((p, _)) if p == t => return Ok(false),
            _ => {
                self.stuck.set(Some((t, now)));
                return Ok(false);
            }
        }
        let cap = self.ring.capacity();
        self.slowest_pid.set(None);
        for (i, e) in self.ring.subscriber_table().entries().iter().enumerate() {
            let owner = e.owner.load(Ordering::Acquire);
            let holds_back = e
                .inherited
                .load(Ordering::Acquire)
                .checked_sub(1)
                .is_some_and(|c| c < t && t - c >= cap);
            if owner == 0 || !holds_back || self.dead.get(i).is_some_and(|d| d.get() == owner) {
                continue;
            }
            if self.ring.subscriber_table().holder_alive(owner) {
                self.slowest_pid
                    .set(Some(owner as u32 & !crate::format::mpmc::RESERVED));
            } else if let Some(d) = self.dead.get(i) {
                d.set(owner);
            }
        }
        Ok(self.scan(t) > t)
    }

    /// Sends every message of `values` in order, blocking while the ring is full.
    ///
    /// # Errors
    ///
    /// As for [`send`](Publisher::send); on error a prefix of `values` may have been sent.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<u32>(64)?;
    /// tx.send_batch(&[1, 2, 3])?;
    /// let mut got = Vec::new();
    /// rx.recv_batch(&mut got, 10)?;
    /// assert_eq!(got, [1, 2, 3]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn send_batch(&self, values: &[T]) -> Result<()> {
        values.iter().try_for_each(|v| self.send(*v))
    }

    /// Chooses how a blocked `send` waits (spin, sleep, or both).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::broadcast::WaitStrategy;
    ///
    /// let (tx, _rx) = shmchan::broadcast::channel::<u8>(4)?;
    /// tx.set_wait_strategy(WaitStrategy::Block);
    /// assert_eq!(tx.wait_strategy(), WaitStrategy::Block);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn set_wait_strategy(&self, strategy: WaitStrategy) {
        self.strategy.set(strategy);
    }

    /// How a blocked `send` waits.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::broadcast::channel::<u8>(4)?;
    /// assert_eq!(tx.wait_strategy(), shmchan::broadcast::WaitStrategy::Adaptive);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.strategy.get()
    }

    /// The capacity in messages (the requested one rounded up to a power of two).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::broadcast::channel::<u8>(100)?;
    /// assert_eq!(tx.capacity(), 128);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// What the publisher does when the slowest subscriber is a lap behind.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::broadcast::{Overflow, channel};
    /// let (tx, _rx) = channel::<u8>(4)?;
    /// assert_eq!(tx.overflow(), Overflow::Block);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn overflow(&self) -> Overflow {
        self.ring.geometry().overflow()
    }

    /// Messages published so far (the publisher's cursor).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::broadcast::channel::<u8>(4)?;
    /// tx.send(1)?;
    /// assert_eq!(tx.published(), 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn published(&self) -> u64 {
        self.ring.tail()
    }

    /// How many subscriber handles are alive now, in all processes (reads `/proc`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<u8>(4)?;
    /// let rx2 = tx.subscribe()?;
    /// assert_eq!(tx.peer_count(), 2);
    /// drop((rx, rx2));
    /// assert_eq!(tx.peer_count(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn peer_count(&self) -> usize {
        self.ring.subscriber_table().live_pids().len()
    }

    /// Blocks until at least one subscriber is alive, at most `timeout`; returns how many are.
    /// Sleeps on the futex a joining subscriber wakes, re-checking every
    /// [`LIVENESS_INTERVAL`].
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if no subscriber appeared in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmchan::{Key, broadcast};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-bc-wait-{}", std::process::id()))?;
    /// let tx = broadcast::Publisher::<u64>::create(key, 8)?;
    /// assert!(tx.wait_for_peer(Duration::from_millis(5)).is_err());
    /// let rx = broadcast::Subscriber::<u64>::open(key)?; // usually in another process
    /// assert_eq!(tx.wait_for_peer(Duration::from_secs(10))?, 1);
    /// # drop(rx);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_for_peer(&self, timeout: Duration) -> Result<usize> {
        let found = wait::block_on(
            self.wait_word(),
            WaitStrategy::Block,
            Instant::now().checked_add(timeout),
            || Ok(Some(self.peer_count()).filter(|&n| n > 0)),
            || false,
            || Ok(()),
        )?;
        found.ok_or_else(|| Error::Timeout {
            what: "a subscriber to join the broadcast channel".into(),
            holder_pid: None,
        })
    }
}

impl<T: ShmSafe> std::fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("broadcast::Publisher")
            .field("type", &T::LAYOUT.type_name)
            .field("capacity", &self.capacity())
            .field("overflow", &self.overflow())
            .field("published", &self.published())
            .field("held_back_by", &self.slowest_pid.get())
            .finish()
    }
}

impl<T: ShmSafe> Drop for Publisher<T> {
    fn drop(&mut self) {
        // Subscribers asleep on an empty ring must look again: they are now disconnected.
        if self.holder.leave() {
            wake_all(&self.ring.header().sub_wait.0);
        }
    }
}
