//! The receiving end.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layout::{Geometry, RingHeader};
use super::liveness::{self, Membership};
use super::memory::RingMemory;
use super::ring::Consumer;
use super::role::Role;
use super::wait::{self, ClockPacer, LIVENESS_INTERVAL, WaitStrategy};
use crate::{Error, Result, ShmSafe};

/// The receiving end of a channel: a single consumer.
///
/// Create it with [`channel`](crate::channel()) (anonymous, before `fork`) or
/// [`Receiver::open`]/[`Receiver::create`] (keyed). It may move between threads (`Send`) but not
/// be shared by them (not `Sync`); after a `fork`, use it in one process only: the first
/// process to receive through its copy (or the one that created or opened a keyed receiver)
/// holds the receiving role until it drops its handle or dies, and a copy used in another
/// process meanwhile gets [`Error::InUse`] without taking any message.
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmchan::channel::<u64>(16)?;
/// tx.send(7)?;
/// drop(tx);
/// assert_eq!(rx.recv()?, 7);
/// assert!(matches!(rx.recv(), Err(shmchan::Error::Disconnected)));
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Receiver<T: ShmSafe> {
    ring: Consumer<T>,
    geometry: Geometry,
    membership: Option<Membership>,
    /// The fork generation in which this handle holds the consumer role ([`Role::NONE`]: not
    /// claimed in this process yet), and the identity it claimed it under.
    role: Cell<u64>,
    identity: Cell<(u32, u32)>,
    strategy: Cell<WaitStrategy>,
    last_peer_check: Cell<Option<Instant>>,
    /// Polls that found the ring empty, and the pacer of their looks at the clock: a consumer
    /// that keeps up polls an empty ring between messages, and a clock read on each poll cost
    /// four times a whole receive.
    empty_polls: Cell<u64>,
    pacer: ClockPacer,
    // Last: unmapped after the fields above, which point into it, are gone.
    memory: Arc<RingMemory>,
}

// SAFETY: a `Receiver` is the only consumer of its ring; moving it to another thread moves that
// role with it. Its `Cell`s make it `!Sync`, so two threads never use it at once.
unsafe impl<T: ShmSafe> Send for Receiver<T> {}

impl<T: ShmSafe> Receiver<T> {
    /// Becomes a receiver of a ring already validated for `geometry`.
    ///
    /// # Errors
    ///
    /// With a claimed role: [`Error::Corrupted`] if the ring's indices are impossible; nothing
    /// was recorded then (the caller releases the role).
    pub(crate) fn attach(
        memory: Arc<RingMemory>,
        geometry: Geometry,
        role: Role,
    ) -> Result<Receiver<T>> {
        // SAFETY: `memory` holds a ring initialised or validated for `geometry` and stays
        // mapped while `self.memory` lives, which outlives `ring` (field order).
        let ring = unsafe { Consumer::new(memory.base(), &geometry) };
        let (generation, identity, recorded) = match role {
            Role::Unclaimed => (Role::NONE, (0, 0), false),
            Role::Claimed(id) => (liveness::fork_generation(), id, false),
            Role::Created(id) => (liveness::fork_generation(), id, true),
        };
        if generation != Role::NONE {
            // Before joining: a failure leaves the end as it was.
            ring.resync()?;
        }
        // SAFETY: the side lies in the same mapping, kept alive as above.
        let membership = unsafe { Membership::join(&ring.header().receiver.0, recorded) };
        Ok(Receiver {
            ring,
            geometry,
            membership: Some(membership),
            role: Cell::new(generation),
            identity: Cell::new(identity),
            strategy: Cell::new(WaitStrategy::default()),
            // The peer was current when we attached: the first liveness check (`/proc` reads)
            // is due one interval later, not on the first operation.
            last_peer_check: Cell::new(Some(Instant::now())),
            empty_polls: Cell::new(0),
            pacer: ClockPacer::new(),
            memory,
        })
    }

    /// Claims the consumer role for this process (first use here, or first use after a
    /// `fork`), and takes the ring's `head`.
    #[cold]
    #[inline(never)]
    fn claim_role(&self) -> Result<()> {
        let word = &self.header().receiver.0.role;
        let id = word.claim_here(
            || self.memory.probe(),
            || format!("the receiving end of this {} channel", T::LAYOUT.type_name),
            || self.ring.resync(),
        )?;
        self.identity.set(id);
        self.role.set(liveness::fork_generation());
        Ok(())
    }

    /// Whether this handle may consume in this process now (claiming the role if needed).
    #[inline]
    fn ensure_role(&self) -> Result<()> {
        if self.role.get() == liveness::fork_generation() {
            Ok(())
        } else {
            self.claim_role()
        }
    }

    fn header(&self) -> &RingHeader {
        self.ring.header()
    }

    /// Receives the next message, blocking while the channel is empty.
    ///
    /// Messages arrive exactly once, in the order they were sent.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] once the channel is empty and the sender dropped its end or its
    /// process died (every message committed before that is delivered first; a killed sender is
    /// noticed within [`LIVENESS_INTERVAL`] of blocking; a keyed sending end can be re-opened,
    /// after which messages arrive again); [`Error::Corrupted`] if another process wrote
    /// impossible indices; [`Error::InUse`] if another process uses this receiver (a copy
    /// carried across `fork`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::channel::<u32>(4)?;
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
    /// [`Error::Timeout`] if nothing arrived in time; otherwise as for [`recv`](Receiver::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (_tx, rx) = shmchan::channel::<u32>(4)?;
    /// let e = rx.recv_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(e, shmchan::Error::Timeout { .. }));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        self.recv_until(Instant::now().checked_add(timeout))?
            .ok_or_else(|| Error::Timeout {
                what: "a message on the channel".into(),
                holder_pid: None,
            })
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Option<T>> {
        if let Some(v) = self.try_recv()? {
            return Ok(Some(v));
        }
        wait::block_on(
            &self.header().rx_wait.0,
            self.strategy.get(),
            deadline,
            || self.try_recv(),
            || self.ring.probe_message(),
            || self.check_sender(),
        )
    }

    /// Receives a message if one is ready, without blocking: `Ok(None)` when the channel is
    /// empty.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the channel is empty and the sender is gone;
    /// [`Error::Corrupted`] on impossible indices; [`Error::InUse`] if another process uses
    /// this receiver (a copy carried across `fork`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::channel::<u32>(4)?;
    /// assert_eq!(rx.try_recv()?, None);
    /// tx.send(3)?;
    /// assert_eq!(rx.try_recv()?, Some(3));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn try_recv(&self) -> Result<Option<T>> {
        self.ensure_role()?;
        if let Some(v) = self.ring.try_pop()? {
            wait::notify(&self.header().tx_wait.0);
            return Ok(Some(v));
        }
        if self.sender_closed()? {
            // Messages committed just before the close may have arrived since the first look.
            return match self.ring.try_pop()? {
                Some(v) => Ok(Some(v)),
                None => Err(Error::Disconnected),
            };
        }
        Ok(None)
    }

    /// The index of the next message, left in its slot, without blocking: `None` if the ring
    /// is empty. The checks of [`try_recv`](Receiver::try_recv), in the same order.
    #[inline]
    pub(super) fn try_peek(&self) -> Result<Option<u64>> {
        self.ensure_role()?;
        if let Some(index) = self.ring.try_peek()? {
            return Ok(Some(index));
        }
        if self.sender_closed()? {
            // Messages committed just before the close may have arrived since the first look.
            return match self.ring.try_peek()? {
                Some(index) => Ok(Some(index)),
                None => Err(Error::Disconnected),
            };
        }
        Ok(None)
    }

    /// The index of the next message, left in its slot, blocking while the ring is empty
    /// until `deadline` (`Ok(None)` once it passed).
    pub(super) fn peek_until(&self, deadline: Option<Instant>) -> Result<Option<u64>> {
        if let Some(index) = self.try_peek()? {
            return Ok(Some(index));
        }
        wait::block_on(
            &self.header().rx_wait.0,
            self.strategy.get(),
            deadline,
            || self.try_peek(),
            || self.ring.probe_message(),
            || self.check_sender(),
        )
    }

    /// The value of the slot of `index` (a peeked message, for a guard's view).
    #[inline]
    pub(super) fn slot_ptr(&self, index: u64) -> *const T {
        self.ring.value_ptr(index)
    }

    /// Copies message `index` out.
    ///
    /// # Safety
    ///
    /// `index` came from [`Self::try_peek`] or [`Self::peek_until`] and was not released since.
    #[inline]
    pub(super) unsafe fn read_peeked(&self, index: u64) -> T {
        // SAFETY: forwarded.
        unsafe { self.ring.read_peeked(index) }
    }

    /// The fork generation this handle holds the consumer role in (a guard records it: a copy
    /// of the guard in a forked child must not release the slot).
    #[inline]
    pub(super) fn role_generation(&self) -> u64 {
        self.role.get()
    }

    /// Releases the peeked message `index` to the sender, and wakes the sender if it sleeps on
    /// a full ring.
    #[inline]
    pub(super) fn release_peeked(&self, index: u64) {
        if self.ring.release_one(index) {
            wait::notify(&self.header().tx_wait.0);
        }
    }

    /// On an empty ring: whether the sender's end is closed (Acquire on `closed`: the sender's
    /// last `tail` store happened before it closed, so a re-check after this sees every message
    /// it committed). Also checks the header's constants, and now and then the sender's
    /// liveness.
    fn sender_closed(&self) -> Result<bool> {
        let header = self.header();
        if header.sender.0.is_closed() {
            return Ok(true);
        }
        self.geometry.check_unchanged(header)?;
        // The clock is read on a paced subset of the empty polls: every one while they come
        // slower than one per millisecond, at least every 64th in a busy loop.
        let n = self.empty_polls.get();
        self.empty_polls.set(n.wrapping_add(1));
        if !self.pacer.due_at(n) {
            return Ok(false);
        }
        let now = self.pacer.look();
        match self.last_peer_check.get() {
            Some(t) if now.duration_since(t) < LIVENESS_INTERVAL => Ok(false),
            _ => {
                self.last_peer_check.set(Some(now));
                self.check_sender()?;
                Ok(header.sender.0.is_closed())
            }
        }
    }

    /// After a timeout: if every sender died, close the side; `try_recv` then drains and
    /// reports `Disconnected`.
    fn check_sender(&self) -> Result<()> {
        let _ = self.header().sender.0.check_peer(&self.memory.probe());
        Ok(())
    }

    /// Receives up to `max` messages into `out` (appended), blocking until at least one is
    /// ready, with one index update; returns how many.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Receiver::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::channel::<u8>(8)?;
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
        let first = self.recv()?;
        out.push(first);
        Ok(1 + self.try_recv_batch(out, max - 1)?)
    }

    /// Receives up to `max` ready messages into `out` (appended) without blocking, with one
    /// index update; returns how many (0 if the channel is empty).
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the channel is empty and the sender is gone;
    /// [`Error::Corrupted`] on impossible indices; [`Error::InUse`] if another process uses
    /// this receiver (a copy carried across `fork`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::channel::<u8>(8)?;
    /// let mut out = Vec::new();
    /// assert_eq!(rx.try_recv_batch(&mut out, 8)?, 0);
    /// tx.send(9)?;
    /// assert_eq!(rx.try_recv_batch(&mut out, 8)?, 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_recv_batch(&self, out: &mut Vec<T>, max: usize) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        self.ensure_role()?;
        let n = self.ring.try_pop_into(out, max)?;
        if n > 0 {
            wait::notify(&self.header().tx_wait.0);
            return Ok(n);
        }
        if self.sender_closed()? {
            let n = self.ring.try_pop_into(out, max)?;
            return if n > 0 {
                Ok(n)
            } else {
                Err(Error::Disconnected)
            };
        }
        Ok(0)
    }

    /// Chooses how a blocked `recv` waits (spin, sleep, or both).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::channel::WaitStrategy;
    ///
    /// let (_tx, rx) = shmchan::channel::<u8>(4)?;
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
    /// let (_tx, rx) = shmchan::channel::<u8>(4)?;
    /// assert_eq!(rx.wait_strategy(), shmchan::channel::WaitStrategy::Adaptive);
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
    /// let (_tx, rx) = shmchan::channel::<u8>(3)?;
    /// assert_eq!(rx.capacity(), 4);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// Messages ready to be received (reads the shared index).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] on impossible indices; [`Error::InUse`] if another process uses
    /// this receiver (a copy carried across `fork`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::channel::<u8>(4)?;
    /// tx.send(1)?;
    /// assert_eq!(rx.len()?, 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn len(&self) -> Result<usize> {
        self.ensure_role()?;
        Ok(usize::try_from(self.ring.ready()?).unwrap_or(usize::MAX))
    }

    /// Whether no message is ready.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] on impossible indices; [`Error::InUse`] if another process uses
    /// this receiver (a copy carried across `fork`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (_tx, rx) = shmchan::channel::<u8>(4)?;
    /// assert!(rx.is_empty()?);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// How many processes hold the sending end now (alive and still mapping the channel):
    /// whether anyone produces. Reads `/proc`; not for hot loops.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Receiver, Sender};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-peer-rx-{}", std::process::id()))?;
    /// let rx = Receiver::<u64>::create(key, 8)?;
    /// assert_eq!(rx.peer_count(), 0);
    /// let tx = Sender::<u64>::open(key)?; // usually in another process
    /// assert_eq!(rx.peer_count(), 1);
    /// drop(tx);
    /// assert_eq!(rx.peer_count(), 0);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn peer_count(&self) -> usize {
        self.header()
            .sender
            .0
            .live_holders(&self.memory.probe())
            .len()
    }

    /// Blocks until at least one process holds the sending end (a keyed sender opened it), at
    /// most `timeout`; returns how many hold it. Sleeps on a futex the opener wakes, and
    /// re-checks every [`LIVENESS_INTERVAL`].
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if no sender appeared in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmchan::{Key, Receiver, Sender};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-wait-rx-{}", std::process::id()))?;
    /// let rx = Receiver::<u64>::create(key, 8)?;
    /// // A worker (usually another process) opens the sending end and keeps it.
    /// let worker = std::thread::spawn(move || {
    ///     let tx = Sender::<u64>::open(key)?;
    ///     tx.send(3)?;
    ///     Ok::<_, shmchan::Error>(tx)
    /// });
    /// assert_eq!(rx.wait_for_peer(Duration::from_secs(10))?, 1);
    /// assert_eq!(rx.recv()?, 3);
    /// # drop(worker.join().unwrap()?);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_for_peer(&self, timeout: Duration) -> Result<usize> {
        self.header()
            .sender
            .0
            .wait_for_holder(&self.memory.probe(), timeout, "sending")
    }

    /// Whether the sending end is known to be closed (dropped, or found dead). Messages may
    /// still be waiting, and a keyed sending end may be re-opened afterwards.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::channel::<u8>(4)?;
    /// drop(tx);
    /// assert!(rx.is_disconnected());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.header().sender.0.is_closed()
    }
}

fn unreachable_timeout() -> Error {
    // `recv_until(None)` only returns `Ok(None)` if a deadline passed, and there is none.
    Error::Timeout {
        what: "a message on the channel (no deadline was set: this is a bug)".into(),
        holder_pid: None,
    }
}

impl<T: ShmSafe> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("type", &T::LAYOUT.type_name)
            .field("capacity", &self.capacity())
            .field("sender_pids", &self.header().sender.0.holder_pids())
            .field("sender_role_pid", &self.header().sender.0.role.holder())
            .finish()
    }
}

impl<T: ShmSafe> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Some(m) = self.membership.take() {
            if self.role.get() == liveness::fork_generation() {
                let (pid, start) = self.identity.get();
                m.side().role.release(pid, start);
            }
            // Wake a sender blocked on a full ring: it must now see the closed end.
            if m.leave() {
                wait::notify(&self.header().tx_wait.0);
            }
        }
    }
}

mod waiting;
