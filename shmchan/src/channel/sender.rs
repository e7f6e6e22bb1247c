//! The sending end.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{SendTimeoutError, TrySendError};
use super::layout::{Geometry, RingHeader};
use super::liveness::{self, Membership, PeerState};
use super::memory::RingMemory;
use super::ring::{Producer, PushError};
use super::role::Role;
use super::wait::{self, ClockPacer, LIVENESS_INTERVAL, WaitStrategy};
use crate::{Error, Result, ShmSafe};

/// The sending end of a channel: a single producer.
///
/// Create it with [`channel`](crate::channel()) (anonymous, before `fork`) or
/// [`Sender::create`]/[`Sender::open`] (keyed). It may move between threads (`Send`) but not be
/// shared by them (not `Sync`); after a `fork`, use it in one process only: the first process
/// to send through its copy (or the one that created or opened a keyed sender) holds the
/// sending role until it drops its handle or dies, and a copy used in another process
/// meanwhile gets [`Error::InUse`] without writing anything.
///
/// Dropping it closes the sending end once no other process holds it (see
/// [`Receiver::recv`](super::Receiver::recv)).
///
/// # Examples
///
/// ```
/// let (tx, rx) = shmchan::channel::<u64>(16)?;
/// tx.send(42)?;
/// assert_eq!(rx.recv()?, 42);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Sender<T: ShmSafe> {
    ring: Producer<T>,
    geometry: Geometry,
    membership: Option<Membership>,
    /// The fork generation in which this handle holds the producer role ([`Role::NONE`]: not
    /// claimed in this process yet), and the identity it claimed it under.
    role: Cell<u64>,
    identity: Cell<(u32, u32)>,
    strategy: Cell<WaitStrategy>,
    last_peer_check: Cell<Option<Instant>>,
    /// Paces the receiver liveness checks of a sender whose ring has room.
    pacer: ClockPacer,
    /// Attempts that found the ring full, and the pacer of their looks at the clock: a
    /// producer that outruns its consumer polls a full ring between messages, and a clock read
    /// on each poll cost four times a whole send.
    full_polls: Cell<u64>,
    full_pacer: ClockPacer,
    // Last: unmapped after the fields above, which point into it, are gone.
    memory: Arc<RingMemory>,
}

// SAFETY: a `Sender` is the only producer of its ring; moving it to another thread moves that
// role with it. Its `Cell`s make it `!Sync`, so two threads never use it at once.
unsafe impl<T: ShmSafe> Send for Sender<T> {}

impl<T: ShmSafe> Sender<T> {
    /// Becomes a sender of a ring already validated for `geometry`.
    ///
    /// # Errors
    ///
    /// With a claimed role: [`Error::Corrupted`] if the ring's indices are impossible; nothing
    /// was recorded then (the caller releases the role).
    pub(crate) fn attach(
        memory: Arc<RingMemory>,
        geometry: Geometry,
        role: Role,
    ) -> Result<Sender<T>> {
        // SAFETY: `memory` holds a ring initialised or validated for `geometry` and stays
        // mapped while `self.memory` lives, which outlives `ring` (field order).
        let ring = unsafe { Producer::new(memory.base(), &geometry) };
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
        let membership = unsafe { Membership::join(&ring.header().sender.0, recorded) };
        Ok(Sender {
            ring,
            geometry,
            membership: Some(membership),
            role: Cell::new(generation),
            identity: Cell::new(identity),
            strategy: Cell::new(WaitStrategy::default()),
            // The peer was current when we attached: the first liveness check (`/proc` reads)
            // is due one interval later, not on the first operation.
            last_peer_check: Cell::new(Some(Instant::now())),
            pacer: ClockPacer::new(),
            full_polls: Cell::new(0),
            full_pacer: ClockPacer::new(),
            memory,
        })
    }

    /// Claims the producer role for this process (first use here, or first use after a
    /// `fork`), and takes the ring's indices.
    #[cold]
    #[inline(never)]
    fn claim_role(&self) -> Result<()> {
        let word = &self.header().sender.0.role;
        let id = word.claim_here(
            || self.memory.probe(),
            || format!("the sending end of this {} channel", T::LAYOUT.type_name),
            || self.ring.resync(),
        )?;
        self.identity.set(id);
        self.role.set(liveness::fork_generation());
        Ok(())
    }

    /// Whether this handle may produce in this process now (claiming the role if needed).
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

    /// Sends `value`, blocking while the channel is full.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] if the receiver dropped its end or its process died (a dead
    /// receiver is noticed at once if it dropped, and within about [`LIVENESS_INTERVAL`] if it
    /// was killed or `exec`ed, whether the ring is full or not; a keyed receiving end can be
    /// re-opened, after which sending works again); [`Error::Corrupted`] if another process
    /// wrote impossible indices; [`Error::InUse`] if another process uses this sender (a copy
    /// carried across `fork`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::channel::<[u8; 16]>(4)?;
    /// tx.send(*b"hello, world....")?;
    /// assert_eq!(&rx.recv()?[..5], b"hello");
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn send(&self, value: T) -> Result<()> {
        self.send_until(value, None).map_err(Error::from)
    }

    /// Sends `value`, blocking at most `timeout` while the channel is full.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] (with the message) if the channel stayed full; otherwise as
    /// for [`send`](Sender::send).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (tx, _rx) = shmchan::channel::<u8>(1)?;
    /// tx.send_timeout(1, Duration::from_millis(10)).unwrap();
    /// assert!(tx.send_timeout(2, Duration::from_millis(10)).is_err());
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
            &self.header().tx_wait.0,
            self.strategy.get(),
            deadline,
            || match self.try_send(value) {
                Ok(()) => Ok(Some(())),
                Err(TrySendError::Full(_)) => Ok(None),
                Err(e) => Err(Error::from(e)),
            },
            || self.ring.probe_space(),
            || self.check_receiver(),
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
    /// [`TrySendError::Full`] (with the message) if the channel is full;
    /// [`TrySendError::Disconnected`] if the receiver is gone; [`TrySendError::Failed`] with
    /// [`Error::Corrupted`] if another process wrote impossible indices, or with
    /// [`Error::InUse`] if another process uses this sender (a copy carried across `fork`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::channel::TrySendError;
    ///
    /// let (tx, rx) = shmchan::channel::<u16>(2)?;
    /// tx.try_send(1).unwrap();
    /// tx.try_send(2).unwrap();
    /// assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
    /// drop(rx);
    /// assert!(matches!(tx.try_send(3), Err(TrySendError::Disconnected(3))));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let header = self.header();
        if header.receiver.0.is_closed() {
            return Err(TrySendError::Disconnected(value));
        }
        if let Err(e) = self.ensure_role() {
            return Err(TrySendError::Failed(e));
        }
        match self.ring.try_push(value) {
            Ok(index) => {
                wait::notify(&header.rx_wait.0);
                if self.pacer.due_at(index) {
                    self.paced_peer_check();
                }
                Ok(())
            }
            Err(PushError::Full(v)) => match self.full_slow_path() {
                Ok(()) => Err(TrySendError::Full(v)),
                Err(Error::Disconnected) => Err(TrySendError::Disconnected(v)),
                Err(e) => Err(TrySendError::Failed(e)),
            },
            Err(PushError::Corrupted(e)) => Err(TrySendError::Failed(e)),
        }
    }

    /// The next free slot for a loan, without blocking: `None` if the ring is full. The checks
    /// of [`try_send`](Sender::try_send), in the same order.
    #[inline]
    pub(super) fn try_reserve(&self) -> Result<Option<u64>> {
        if self.header().receiver.0.is_closed() {
            return Err(Error::Disconnected);
        }
        self.ensure_role()?;
        match self.ring.try_reserve()? {
            Some(index) => Ok(Some(index)),
            None => {
                self.full_slow_path()?;
                Ok(None)
            }
        }
    }

    /// The next free slot for a loan, blocking while the ring is full until `deadline`
    /// (`Ok(None)` once it passed).
    pub(super) fn reserve_until(&self, deadline: Option<Instant>) -> Result<Option<u64>> {
        if let Some(index) = self.try_reserve()? {
            return Ok(Some(index));
        }
        wait::block_on(
            &self.header().tx_wait.0,
            self.strategy.get(),
            deadline,
            || self.try_reserve(),
            || self.ring.probe_space(),
            || self.check_receiver(),
        )
    }

    /// The value of the slot of `index` (a reserved one, for a loan's views).
    #[inline]
    pub(super) fn slot_ptr(&self, index: u64) -> *mut T {
        self.ring.value_ptr(index)
    }

    /// The fork generation this handle holds the producer role in, and the pid it holds it
    /// under (a loan records them: a copy of the loan in a forked child must not publish).
    #[inline]
    pub(super) fn role_of_loan(&self) -> (u64, u32) {
        (self.role.get(), self.identity.get().0)
    }

    /// Publishes the loaned slot `index`, written in place, as a `send` would have; wakes the
    /// receiver if it sleeps.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] (nothing published) if the receiver closed its end meanwhile;
    /// [`Error::Corrupted`] if another process moved the ring's `tail`.
    #[inline]
    pub(super) fn commit_loan(&self, index: u64) -> Result<()> {
        let header = self.header();
        if header.receiver.0.is_closed() {
            return Err(Error::Disconnected);
        }
        self.ring.commit(index)?;
        wait::notify(&header.rx_wait.0);
        if self.pacer.due_at(index) {
            self.paced_peer_check();
        }
        Ok(())
    }

    /// On a full ring: check the header's constants, and now and then the receiver's liveness
    /// (the clock is read on a paced subset of these polls: every one while they come slower
    /// than one per millisecond, at least every 64th in a busy loop).
    fn full_slow_path(&self) -> Result<()> {
        self.geometry.check_unchanged(self.header())?;
        let n = self.full_polls.get();
        self.full_polls.set(n.wrapping_add(1));
        if !self.full_pacer.due_at(n) {
            return Ok(());
        }
        self.check_receiver_every_interval(self.full_pacer.look())
    }

    /// After some sends into a ring with room: now and then, whether the receiver still lives
    /// (a dead one is closed, and the next send reports `Disconnected`: messages stop going
    /// into the void within about [`LIVENESS_INTERVAL`]).
    #[cold]
    #[inline(never)]
    fn paced_peer_check(&self) {
        let now = self.pacer.look();
        let _ = self.check_receiver_every_interval(now);
    }

    fn check_receiver_every_interval(&self, now: Instant) -> Result<()> {
        match self.last_peer_check.get() {
            Some(t) if now.duration_since(t) < LIVENESS_INTERVAL => Ok(()),
            _ => {
                self.last_peer_check.set(Some(now));
                self.check_receiver()
            }
        }
    }

    fn check_receiver(&self) -> Result<()> {
        match self.header().receiver.0.check_peer(&self.memory.probe()) {
            PeerState::Closed => Err(Error::Disconnected),
            PeerState::Connected | PeerState::NotYetAttached => Ok(()),
        }
    }

    /// Sends every message of `values` in order, blocking while the channel is full, publishing
    /// one index update per run of messages that fits.
    ///
    /// # Errors
    ///
    /// As for [`send`](Sender::send). On error, a prefix of `values` may have been sent; use
    /// [`try_send_batch`](Sender::try_send_batch) to know how much.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::channel::<u32>(64)?;
    /// tx.send_batch(&[1, 2, 3])?;
    /// let mut got = Vec::new();
    /// rx.recv_batch(&mut got, 10)?;
    /// assert_eq!(got, [1, 2, 3]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn send_batch(&self, values: &[T]) -> Result<()> {
        let mut rest = values;
        while !rest.is_empty() {
            let n = self.try_send_batch(rest)?;
            if n == 0 {
                // Full: block for one message, then continue in batches.
                self.send(rest[0])?;
                rest = &rest[1..];
            } else {
                rest = &rest[n..];
            }
        }
        Ok(())
    }

    /// Sends as many leading messages of `values` as fit now, with one index update; returns
    /// how many (0 if the channel is full).
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] if the receiver is gone, [`Error::Corrupted`] on impossible
    /// indices, [`Error::InUse`] if another process uses this sender.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::channel::<u32>(2)?;
    /// assert_eq!(tx.try_send_batch(&[1, 2, 3])?, 2);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_send_batch(&self, values: &[T]) -> Result<usize> {
        let header = self.header();
        if header.receiver.0.is_closed() {
            return Err(Error::Disconnected);
        }
        self.ensure_role()?;
        let (n, first) = self.ring.try_push_slice(values)?;
        if n > 0 {
            wait::notify(&header.rx_wait.0);
            if self.pacer.due(first, n as u64) {
                self.paced_peer_check();
            }
        } else if !values.is_empty() {
            self.full_slow_path()?;
        }
        Ok(n)
    }

    /// Chooses how a blocked `send` waits (spin, sleep, or both).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::channel::WaitStrategy;
    ///
    /// let (tx, _rx) = shmchan::channel::<u8>(4)?;
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
    /// let (tx, _rx) = shmchan::channel::<u8>(4)?;
    /// assert_eq!(tx.wait_strategy(), shmchan::channel::WaitStrategy::Adaptive);
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
    /// let (tx, _rx) = shmchan::channel::<u8>(100)?;
    /// assert_eq!(tx.capacity(), 128);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// Messages sent and not yet known to be received (an upper bound).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::channel::<u8>(4)?;
    /// tx.send(1)?;
    /// assert_eq!(tx.len_hint(), 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn len_hint(&self) -> usize {
        self.ring.len_hint() as usize
    }

    /// How many processes hold the receiving end now (alive and still mapping the channel):
    /// whether anyone listens. Reads `/proc`; not for hot loops.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmchan::{Key, Receiver, Sender};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-peer-tx-{}", std::process::id()))?;
    /// let tx = Sender::<u64>::create(key, 8)?;
    /// assert_eq!(tx.peer_count(), 0);
    /// let rx = Receiver::<u64>::open(key)?; // usually in another process
    /// assert_eq!(tx.peer_count(), 1);
    /// # drop(rx);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn peer_count(&self) -> usize {
        self.header()
            .receiver
            .0
            .live_holders(&self.memory.probe())
            .len()
    }

    /// Blocks until at least one process holds the receiving end (a keyed receiver opened it), at
    /// most `timeout`; returns how many hold it. Sleeps on a futex the opener wakes, and
    /// re-checks every [`LIVENESS_INTERVAL`].
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if no receiver appeared in time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmchan::{Key, Receiver, Sender};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-wait-tx-{}", std::process::id()))?;
    /// let tx = Sender::<u64>::create(key, 8)?;
    /// assert!(matches!(
    ///     tx.wait_for_peer(Duration::from_millis(5)),
    ///     Err(shmchan::Error::Timeout { .. })
    /// ));
    /// let worker = std::thread::spawn(move || Receiver::<u64>::open(key).map(|rx| rx.recv()));
    /// assert_eq!(tx.wait_for_peer(Duration::from_secs(10))?, 1);
    /// tx.send(1)?;
    /// # worker.join().unwrap()??;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_for_peer(&self, timeout: Duration) -> Result<usize> {
        self.header()
            .receiver
            .0
            .wait_for_holder(&self.memory.probe(), timeout, "receiving")
    }

    /// Whether the receiving end is known to be closed (dropped, or found dead). A keyed
    /// receiving end may be re-opened afterwards.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::channel::<u8>(4)?;
    /// assert!(!tx.is_disconnected());
    /// drop(rx);
    /// assert!(tx.is_disconnected());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn is_disconnected(&self) -> bool {
        self.header().receiver.0.is_closed()
    }

    #[cfg(test)]
    pub(crate) fn ring_header(&self) -> &RingHeader {
        self.header()
    }

    /// Bytes mapped for the ring.
    #[cfg(test)]
    pub(crate) fn memory_len(&self) -> usize {
        self.memory.len()
    }
}

impl<T: ShmSafe> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("type", &T::LAYOUT.type_name)
            .field("capacity", &self.capacity())
            .field("receiver_pids", &self.header().receiver.0.holder_pids())
            .field("receiver_role_pid", &self.header().receiver.0.role.holder())
            .finish()
    }
}

impl<T: ShmSafe> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(m) = self.membership.take() {
            if self.role.get() == liveness::fork_generation() {
                let (pid, start) = self.identity.get();
                m.side().role.release(pid, start);
            }
            // The last holder closing the end wakes a receiver waiting for data: it must now
            // see `closed` (after draining what was published before).
            if m.leave() {
                wait::notify(&self.header().rx_wait.0);
            }
        }
    }
}

mod waiting;
