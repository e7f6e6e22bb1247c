//! The subscribing end.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use super::Overflow;
use super::ring::{Read, Ring};
use crate::channel::LIVENESS_INTERVAL;
use crate::channel::wait::{self, WaitStrategy, notify};
use crate::mpmc::holders::Holder;
use crate::mpmc::layout::{Entry, corrupted};
use crate::{Error, Result, ShmSafe};

/// The most messages a subscriber reads before it publishes its cursor (it also does when it
/// finds the ring empty, and on every lag): fewer cursor stores, and so fewer cache-line
/// transfers to the publisher, at the price of the publisher seeing up to this many fewer
/// free slots.
const CURSOR_STRIDE: u64 = 32;

/// A subscribing end of a broadcast channel: it receives every message published after it
/// joined, in order.
///
/// Get one from [`channel`](super::channel()), [`Publisher::subscribe`](super::Publisher::subscribe)
/// (both before `fork`, to hand it to a child) or [`Subscriber::open`] (keyed, any process, any
/// time; joins at the newest message). Each subscriber has its own cursor in the channel's
/// subscriber table. It may move between threads (`Send`) but not be shared by them.
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmchan::broadcast::channel::<u64>(16)?;
/// tx.send(7)?;
/// drop(tx);
/// assert_eq!(rx.recv()?, 7);
/// assert!(matches!(rx.recv(), Err(shmchan::Error::Disconnected)));
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Subscriber<T: ShmSafe> {
    // First: leaves the table before the mapping `ring` holds is unmapped.
    holder: Holder,
    ring: Ring<T>,
    /// The next position to read.
    cursor: Cell<u64>,
    /// The cursor last stored in the shared entry.
    shared_cursor: Cell<u64>,
    /// The publisher's cursor as last read: positions below it are published, so the shared
    /// `tail` (written on every message) is only read again once the subscriber reaches it.
    seen_tail: Cell<u64>,
    stride: u64,
    strategy: Cell<WaitStrategy>,
    /// A lag found while a batch was being drained, reported by the next call.
    pending_lag: Cell<u64>,
    /// The publisher's departures counter when its entry was last looked at.
    seen_departures: Cell<u32>,
    last_scan: Cell<Option<Instant>>,
    publisher_gone: Cell<bool>,
    /// Positions below this may be overwritten while read (see `register_late`): 0 for a
    /// handle registered by `join` or at `fork`.
    pub(super) unprotected_below: Cell<u64>,
}

// SAFETY: a `Subscriber` is one subscribing handle; moving it to another thread moves its
// cursor with it. Its `Cell`s make it `!Sync`, so two threads never use one handle at once.
unsafe impl<T: ShmSafe> Send for Subscriber<T> {}

impl<T: ShmSafe> Subscriber<T> {
    /// The channel this subscriber reads.
    pub(crate) fn ring(&self) -> &Ring<T> {
        &self.ring
    }

    /// Joins `ring` at the newest message.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyHolders`] if the subscriber table is full.
    pub(crate) fn attach(ring: Ring<T>) -> Result<Subscriber<T>> {
        // SAFETY: the table lies in the mapping `ring` keeps alive, and `holder` is dropped
        // before `ring` (field order), in every process that inherits both.
        let holder = unsafe { Holder::join(*ring.subscriber_table(), "subscriber", &|_| true) };
        let s = Subscriber {
            holder,
            stride: (ring.capacity() / 4).clamp(1, CURSOR_STRIDE),
            seen_departures: Cell::new(ring.publisher_table().departures()),
            ring,
            cursor: Cell::new(0),
            shared_cursor: Cell::new(0),
            seen_tail: Cell::new(0),
            strategy: Cell::new(WaitStrategy::default()),
            pending_lag: Cell::new(0),
            last_scan: Cell::new(None),
            publisher_gone: Cell::new(false),
            unprotected_below: Cell::new(0),
        };
        let me = s.holder.entry(&|_| true)?;
        s.join(me);
        notify(&s.ring.header().pub_wait.0);
        Ok(s)
    }

    /// Registers this subscriber's cursor at the newest message (see `ring.rs` for why the
    /// second read of `tail` is the one to start at).
    fn join(&self, me: &Entry) {
        let t0 = self.ring.tail();
        me.inherited.store(t0.wrapping_add(1), Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let t1 = self.ring.tail();
        me.inherited.store(t1.wrapping_add(1), Ordering::Release);
        self.cursor.set(t1);
        self.shared_cursor.set(t1);
        self.seen_tail.set(t1);
    }

    /// This handle's entry; a handle that had none (a child forked while the table was full)
    /// registers now and stores its cursor (a lap it missed meanwhile shows up as a lag).
    #[inline]
    fn entry(&self) -> Result<&Entry> {
        let me = self.holder.entry(&|_| true)?;
        if me.inherited.load(Ordering::Relaxed) == 0 {
            self.register_late(me);
        }
        Ok(me)
    }

    /// Stores the cursor of a handle that had no entry. A publisher that scanned the cursors
    /// before it saw the entry may still overwrite the messages below the `tail` read after the
    /// fence (the argument of `join`): in-place reads of those copy and check instead.
    #[cold]
    fn register_late(&self, me: &Entry) {
        self.store_cursor(me, self.cursor.get());
        fence(Ordering::SeqCst);
        self.unprotected_below.set(self.ring.tail());
    }

    fn store_cursor(&self, me: &Entry, c: u64) {
        me.inherited.store(c.wrapping_add(1), Ordering::Release);
        self.shared_cursor.set(c);
        if self.ring.geometry().overflow() == Overflow::Block {
            notify(&self.ring.header().pub_wait.0);
        }
    }

    /// The futex word this subscriber sleeps on: the publisher clears it and wakes every
    /// announced sleeper after each message and when it leaves. A waiter stores 1, issues a
    /// SeqCst fence, re-checks with a `try_` operation and sleeps while the word holds 1 (the
    /// protocol of `channel::wait`); `WaitSet` and the async notifier wait on it the same way.
    pub(crate) fn wait_word(&self) -> &AtomicU32 {
        &self.ring.header().sub_wait.0
    }

    /// For `WaitSet`: whether `try_recv` would now return a message or an error (a message or
    /// a lag is there, the publisher is gone, or this handle has no entry). With `liveness`,
    /// also looks at the publisher's liveness when due and re-checks the constants.
    pub(crate) fn wait_set_ready(&self, liveness: bool) -> bool {
        if self.holder.entry(&|_| true).is_err()
            || self.pending_lag.get() != 0
            || self.ring.tail() != self.cursor.get()
        {
            return true;
        }
        if liveness
            && self
                .ring
                .geometry()
                .check_unchanged(self.ring.header())
                .is_err()
        {
            return true;
        }
        self.publisher_disconnected(liveness.then(Instant::now))
    }

    /// Receives the next message, blocking while there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Lagged`] once after the publisher overwrote messages this subscriber had not
    /// read (`Overflow::DropOldest`); the next call returns the oldest message still held.
    /// [`Error::Disconnected`] once the publisher is gone (dropped, or its process died) and
    /// every message it published was received. [`Error::TooManyHolders`] for a forked copy
    /// that found the table full; [`Error::Corrupted`] if another process wrote impossible
    /// values.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<u32>(8)?;
    /// tx.send(3)?;
    /// assert_eq!(rx.recv()?, 3);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv(&self) -> Result<T> {
        self.recv_until(None)?.ok_or_else(|| Error::Timeout {
            what: "a broadcast message (no deadline was set; this is a bug)".into(),
            holder_pid: None,
        })
    }

    /// Receives the next message, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if nothing was published in time; otherwise as for
    /// [`recv`](Subscriber::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (_tx, rx) = shmchan::broadcast::channel::<u32>(8)?;
    /// assert!(matches!(
    ///     rx.recv_timeout(Duration::from_millis(5)),
    ///     Err(shmchan::Error::Timeout { .. })
    /// ));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        self.recv_until(Instant::now().checked_add(timeout))?
            .ok_or_else(|| Error::Timeout {
                what: "a broadcast message".into(),
                holder_pid: self
                    .ring
                    .publisher_table()
                    .entries()
                    .first()
                    .and_then(|e| Some(e.owner.load(Ordering::Relaxed) as u32).filter(|&p| p != 0)),
            })
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Option<T>> {
        if let Some(v) = self.try_recv()? {
            return Ok(Some(v));
        }
        wait::block_on_shared(
            self.wait_word(),
            self.strategy.get(),
            deadline,
            || self.try_recv(),
            || self.ring.tail() != self.cursor.get(),
            || Ok(()),
        )
    }

    /// Receives the next message if one is there, without blocking (`Ok(None)` if not).
    ///
    /// # Errors
    ///
    /// As for [`recv`](Subscriber::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<u32>(8)?;
    /// assert_eq!(rx.try_recv()?, None);
    /// tx.send(4)?;
    /// assert_eq!(rx.try_recv()?, Some(4));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn try_recv(&self) -> Result<Option<T>> {
        let Some((me, c, t)) = self.next_published()? else {
            return Ok(None);
        };
        match self.ring.read(c) {
            Read::Message(v) => {
                self.advance(me, c);
                Ok(Some(v))
            }
            Read::Lapped => Err(self.unreadable(me, c, t, true)),
            Read::Stale => Err(self.unreadable(me, c, t, false)),
        }
    }

    /// This handle's entry, the position `c` to read and the publisher's cursor `t > c` as
    /// last seen, once the message at `c` is published; `Ok(None)` if there is none yet.
    /// Reports a pending lag, a lap, a cursor moved back and a gone publisher as `try_recv`
    /// does. Reads no slot.
    #[inline(always)]
    pub(super) fn next_published(&self) -> Result<Option<(&Entry, u64, u64)>> {
        let me = self.entry()?;
        if self.pending_lag.get() != 0 {
            return Err(Error::Lagged {
                missed: self.pending_lag.replace(0),
            });
        }
        let c = self.cursor.get();
        let cap = self.ring.capacity();
        let mut t = self.seen_tail.get();
        if t == c || t.wrapping_sub(c) > cap {
            t = self.ring.tail();
            self.seen_tail.set(t);
        }
        if t == c {
            if self.shared_cursor.get() != c {
                self.store_cursor(me, c);
            }
            // A last message may have been published just before the publisher left: it is
            // received by the next call.
            return if self.publisher_disconnected(Some(Instant::now())) && self.ring.tail() == c {
                Err(Error::Disconnected)
            } else {
                Ok(None)
            };
        }
        let behind = t.wrapping_sub(c);
        if behind > cap {
            if t < c {
                // The publisher's cursor moved back: only another process rewriting it does
                // that. Follow it, so that the next call works on what it says now.
                self.cursor.set(t);
                self.seen_tail.set(t);
                self.store_cursor(me, t);
                return Err(corrupted(format!(
                    "the broadcast publisher's cursor moved back from {c} to {t}"
                )));
            }
            return Err(self.lagged(me, c, t));
        }
        Ok(Some((me, c, t)))
    }

    /// Message `c` was received: move the cursor past it (and publish the cursor every
    /// `stride` messages).
    #[inline(always)]
    pub(super) fn advance(&self, me: &Entry, c: u64) {
        let next = c.wrapping_add(1);
        self.cursor.set(next);
        if next.wrapping_sub(self.shared_cursor.get()) >= self.stride {
            self.store_cursor(me, next);
        }
    }

    /// A guard over message `c` (`RecvRef`) was dropped: move past it, as `try_recv` does
    /// after copying.
    pub(super) fn received_in_place(&self, c: u64) {
        if self.cursor.get() == c {
            match self.holder.entry(&|_| true) {
                Ok(me) => self.advance(me, c),
                Err(_) => self.cursor.set(c.wrapping_add(1)),
            }
        }
    }

    /// The slot of position `c` did not hold message `c` (`t`: the publisher's cursor as
    /// seen): `lapped`, the publisher overwrote it (reported as a lag), or it holds an older
    /// message, which only another process writing the slot does (skipped, reported as
    /// corruption).
    #[cold]
    pub(super) fn unreadable(&self, me: &Entry, c: u64, t: u64, lapped: bool) -> Error {
        if lapped {
            return self.lagged(me, c, self.ring.tail());
        }
        if let Err(e) = self.ring.geometry().check_unchanged(self.ring.header()) {
            return e;
        }
        // Skip the position, so that the next call (and a publisher waiting for this cursor)
        // moves on.
        let next = c.wrapping_add(1);
        self.cursor.set(next);
        self.store_cursor(me, next);
        corrupted(format!(
            "broadcast slot of position {c} holds an older message although the publisher's cursor is {t}; skipped"
        ))
    }

    /// Skips to the oldest message still held after the publisher lapped position `c`
    /// (`t`: its cursor now).
    #[cold]
    fn lagged(&self, me: &Entry, c: u64, t: u64) -> Error {
        let oldest = t
            .saturating_sub(self.ring.capacity())
            .max(c.wrapping_add(1));
        let missed = oldest.wrapping_sub(c);
        self.cursor.set(oldest);
        self.seen_tail.set(t);
        self.store_cursor(me, oldest);
        self.ring
            .header()
            .counters
            .0
            .missed
            .fetch_add(missed, Ordering::Relaxed);
        Error::Lagged { missed }
    }

    /// Whether the publisher has been attached and is gone now (dropped, or dead). Looks at
    /// `/proc` only when it left since the last look, when it was found gone, or when the time
    /// `now` is given and [`LIVENESS_INTERVAL`] passed since the last look.
    fn publisher_disconnected(&self, now: Option<Instant>) -> bool {
        let table = self.ring.publisher_table();
        if !table.is_attached() {
            return false;
        }
        let departures = table.departures();
        let due = departures != self.seen_departures.get()
            || self.publisher_gone.get()
            || now.is_some_and(|t| {
                self.last_scan
                    .get()
                    .is_none_or(|last| t.saturating_duration_since(last) >= LIVENESS_INTERVAL)
            });
        if !due {
            return false;
        }
        self.seen_departures.set(departures);
        self.last_scan.set(Some(now.unwrap_or_else(Instant::now)));
        let gone = !table.any_alive();
        self.publisher_gone.set(gone);
        gone
    }

    /// Receives at least one message (blocking for the first), then whatever else is there,
    /// up to `max` in all, appended to `out`; returns how many.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Subscriber::recv) before the first message; a lag or disconnection
    /// after it ends the batch early (and is reported by the next call).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<u32>(64)?;
    /// tx.send_batch(&[1, 2, 3])?;
    /// let mut got = Vec::new();
    /// assert_eq!(rx.recv_batch(&mut got, 2)?, 2);
    /// assert_eq!(got, [1, 2]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        out.push(self.recv()?);
        Ok(1 + self.drain_into(out, max - 1))
    }

    /// [`recv_batch`](Subscriber::recv_batch) without blocking: 0 if nothing is there.
    ///
    /// # Errors
    ///
    /// As for [`try_recv`](Subscriber::try_recv) before the first message.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<u32>(64)?;
    /// let mut got = Vec::new();
    /// assert_eq!(rx.try_recv_batch(&mut got, 8)?, 0);
    /// tx.send(5)?;
    /// assert_eq!(rx.try_recv_batch(&mut got, 8)?, 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        match self.try_recv()? {
            Some(v) => out.push(v),
            None => return Ok(0),
        }
        Ok(1 + self.drain_into(out, max - 1))
    }

    fn drain_into(&self, out: &mut Vec<T>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            // Other errors leave the cursor where it is, so the next call sees them again; a
            // lag moves it, so it is kept for the next call to report.
            match self.try_recv() {
                Ok(Some(v)) => out.push(v),
                Err(Error::Lagged { missed }) => {
                    self.pending_lag.set(missed);
                    break;
                }
                _ => break,
            }
            n += 1;
        }
        n
    }

    #[cfg(test)]
    pub(crate) fn ring_for_tests(&self) -> &Ring<T> {
        &self.ring
    }

    /// Chooses how a blocked `recv` waits (spin, sleep, or both).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::broadcast::WaitStrategy;
    ///
    /// let (_tx, rx) = shmchan::broadcast::channel::<u8>(4)?;
    /// rx.set_wait_strategy(WaitStrategy::Spin);
    /// assert_eq!(rx.wait_strategy(), WaitStrategy::Spin);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn set_wait_strategy(&self, strategy: WaitStrategy) {
        self.strategy.set(strategy);
    }

    /// How a blocked `recv` waits.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = shmchan::broadcast::channel::<u8>(4)?;
    /// assert_eq!(rx.wait_strategy(), shmchan::broadcast::WaitStrategy::Adaptive);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.strategy.get()
    }

    /// The capacity in messages.
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = shmchan::broadcast::channel::<u8>(5)?;
    /// assert_eq!(rx.capacity(), 8);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// Messages published that this subscriber has not received yet (may exceed the capacity
    /// in `DropOldest` mode: then the next receive reports the lag).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<u8>(4)?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// assert_eq!(rx.lag(), 2);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn lag(&self) -> u64 {
        self.ring.tail().saturating_sub(self.cursor.get())
    }

    /// How many publisher handles are alive (reads `/proc`): 1 for the publisher, plus the
    /// copies of it forked children hold (each may take its place once it is gone); 0 once
    /// all are gone.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<u8>(4)?;
    /// assert_eq!(rx.peer_count(), 1);
    /// drop(tx);
    /// assert_eq!(rx.peer_count(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn peer_count(&self) -> usize {
        self.ring.publisher_table().live_pids().len()
    }

    /// Whether the publisher is known to be gone (dropped, or found dead); false while no
    /// publisher has ever attached.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::channel::<u8>(4)?;
    /// assert!(!rx.is_disconnected());
    /// drop(tx);
    /// assert!(rx.is_disconnected());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.publisher_disconnected(Some(Instant::now()))
    }
}

impl<T: ShmSafe> std::fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("broadcast::Subscriber")
            .field("type", &T::LAYOUT.type_name)
            .field("capacity", &self.capacity())
            .field("cursor", &self.cursor.get())
            .finish()
    }
}

impl<T: ShmSafe> Drop for Subscriber<T> {
    fn drop(&mut self) {
        // A publisher waiting for this subscriber must look again.
        if self.holder.leave() {
            notify(&self.ring.header().pub_wait.0);
        }
    }
}
