//! Zero copy on the consuming side: a receiver's guard over a claimed message, read in place.
//!
//! A [`RecvRef`] is position `p`, claimed exactly as a `recv` claims it (the holder entry's
//! intent names `p + 1`, then the CAS of `head`), but not copied out: the guard reads the
//! message in its slot through the generated views, and its drop releases the slot for the next
//! lap with the same CAS of the slot's sequence number a `recv` ends with. A receiver killed
//! while holding a guard is covered by the senders' recovery: once the ring wraps onto the slot,
//! a sender that finds its holder dead frees it and counts the message in
//! [`lost`](Receiver::lost).
//!
//! The message is taken from the queue when the guard is made: no other receiver gets it, and
//! dropping the guard does not put it back. The receiver remembers the position it holds, so a
//! guard that was `mem::forget`-ten is released by the receiver's next receive or by its drop;
//! until then, senders that wrap around onto its slot wait for it. A guard copied into a forked
//! child belongs to the parent: its drop there releases nothing.

use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use super::claim::{Claim, check_align};
use super::receiver::Receiver;
use crate::channel::wait;
use crate::sync::words::{load_words, load_words_into};
use crate::{Error, Result, ShmSafe};

/// A message of an mpmc queue, taken by one receiver and left in its slot to be read in place;
/// dropping the guard releases the slot to the senders.
///
/// Get one with [`Receiver::recv_ref`], [`Receiver::try_recv_ref`] or
/// [`Receiver::recv_ref_timeout`]. Read it through [`view`](RecvRef::view) (field by field, in
/// shared memory) or copy it out with [`to_owned`](RecvRef::to_owned) or
/// [`to_boxed`](RecvRef::to_boxed). While the guard lives the receiver is borrowed, and no
/// sender can reuse the slot (a sender that wraps around onto it waits).
///
/// # Examples
///
/// ```
/// let (tx, mut rx) = shmchan::mpmc::channel::<[u64; 4]>(4)?;
/// tx.send([1, 2, 3, 4])?;
/// let msg = rx.recv_ref()?;
/// assert_eq!(msg.view().get(3), Some(4));
/// drop(msg); // releases the slot; the message is consumed
/// assert!(rx.try_recv()?.is_none());
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct RecvRef<'a, T: ShmSafe> {
    pub(super) receiver: &'a mut Receiver<T>,
    pub(super) pos: u64,
}

impl<'a, T: ShmSafe> RecvRef<'a, T> {
    fn slot(&self) -> *mut T {
        self.receiver.endpoint().queue.message_ptr(self.pos)
    }

    /// Read access to the message, field by field: the message type's generated `View` (for
    /// an array an [`ArrayView`](crate::view::ArrayView), for a primitive its value).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::mpmc::channel::<[i32; 3]>(2)?;
    /// tx.send([5, -6, 7])?;
    /// assert_eq!(rx.recv_ref()?.view().get(1), Some(-6));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn view(&self) -> T::View<'_> {
        // SAFETY: the message lies in bounds of the mapping (by the private geometry), is
        // aligned for `T` (8-aligned; `check_align` refused guards of types aligned to more) and
        // stays mapped while the receiver (borrowed for `'a`) lives. Position `pos` is claimed by
        // this receiver: the producer's writes happened before the Acquire load of `seq` that
        // found it published, and no producer writes the slot again before our release. A peer
        // that breaks the protocol writes from another process; the views read each field with
        // one atomic access, so it can only tear the message, never cause UB.
        unsafe { T::view_shared(self.slot()) }
    }

    /// Copies the whole message out (onto the stack: for a large message use
    /// [`to_boxed`](RecvRef::to_boxed) or the view).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::mpmc::channel::<u64>(2)?;
    /// tx.send(11)?;
    /// assert_eq!(rx.recv_ref()?.to_owned(), 11);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn to_owned(&self) -> T {
        // SAFETY: the message words are in bounds and 8-aligned, `words_for::<T>()` of them, and
        // every process accesses mpmc value words atomically (see `view`).
        unsafe { load_words::<T>(self.slot().cast::<u64>()) }
    }

    /// Copies the whole message into a new heap allocation, without a copy on the stack.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::mpmc::channel::<[u8; 1024]>(2)?;
    /// tx.send([3; 1024])?;
    /// let copy: Box<[u8; 1024]> = rx.recv_ref()?.to_boxed();
    /// assert_eq!(copy[1023], 3);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn to_boxed(&self) -> Box<T> {
        let mut out: Box<MaybeUninit<T>> = Box::new_uninit();
        // SAFETY: as for `to_owned`; `out` is a fresh private allocation of one `T`.
        unsafe { load_words_into(self.slot().cast::<u64>(), &mut *out) };
        // SAFETY: `load_words_into` initialised every byte, and any bits are a valid `T`
        // (`ShmSafe`), even torn ones.
        unsafe { out.assume_init() }
    }
}

impl<T: ShmSafe> Drop for RecvRef<'_, T> {
    fn drop(&mut self) {
        // Releases the slot (in a forked child's copy, `take` forgets the parent's record).
        self.receiver.settle_held();
    }
}

impl<T: ShmSafe> std::fmt::Debug for RecvRef<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::RecvRef")
            .field("type", &T::LAYOUT.type_name)
            .field("position", &self.pos)
            .finish()
    }
}

impl<T: ShmSafe> Receiver<T> {
    /// Releases the slot of a guard this process took (dropped, or forgotten and found by the
    /// next receive); forgets a record inherited across `fork`.
    pub(super) fn settle_held(&self) {
        let Some(pos) = self.held.take() else {
            return;
        };
        // A guard was taken, so this handle has an entry (its index never changes). A slot
        // freed by another process meanwhile (hostile) is left as it is.
        if let Ok(me) = self.endpoint().entry() {
            let _ = self.endpoint().queue.release_claimed(me, pos);
        }
    }

    /// One attempt to claim the next message for a guard (as `try_recv` does for a copy).
    pub(super) fn try_claim_ref(&self) -> Result<Option<u64>> {
        let end = self.endpoint();
        let me = end.entry()?;
        if self.held.is_set() {
            self.settle_held();
        }
        for _ in 0..2 {
            match end.queue.try_claim_message(me)? {
                Claim::Got(pos) => {
                    self.held.set(pos);
                    return Ok(Some(pos));
                }
                Claim::Pending { pos } => {
                    if !self.pending_slow_path(pos)? {
                        return Ok(None);
                    }
                }
                Claim::Busy => {
                    end.geometry.check_unchanged(end.queue.header())?;
                    return Ok(None);
                }
                Claim::Empty => return self.empty_ref_slow_path(me),
                Claim::Full { .. } => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The queue is empty: `Disconnected` if every sender is gone and it is still empty (as
    /// `try_recv` does).
    #[cold]
    fn empty_ref_slow_path(&self, me: &super::layout::Entry) -> Result<Option<u64>> {
        let end = self.endpoint();
        if !end.peer_disconnected(Some(Instant::now())) {
            return Ok(None);
        }
        // A sender may have published just before leaving: drain first.
        match end.queue.try_claim_message(me)? {
            Claim::Got(pos) => {
                self.held.set(pos);
                Ok(Some(pos))
            }
            Claim::Empty => Err(Error::Disconnected),
            Claim::Pending { pos } => {
                self.pending_slow_path(pos)?;
                Ok(None)
            }
            Claim::Busy | Claim::Full { .. } => Ok(None),
        }
    }

    fn recv_ref_until(&self, deadline: Option<Instant>) -> Result<Option<u64>> {
        check_align::<T>()?;
        let end = self.endpoint();
        end.stuck_holder.set(None);
        if let Some(pos) = self.try_claim_ref()? {
            return Ok(Some(pos));
        }
        wait::block_on_shared(
            &end.queue.header().rx_wait.0,
            end.strategy.get(),
            deadline,
            || self.try_claim_ref(),
            || end.queue.probe_message(),
            || Ok(()),
        )
    }

    /// Receives the next message in place, blocking while the queue is empty: the guard reads
    /// it in its slot and releases the slot when dropped. No copy of the message is made.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Receiver::recv): [`Error::Disconnected`] once the queue is empty and
    /// every sender is gone, [`Error::TooManyHolders`], [`Error::Corrupted`];
    /// [`Error::InvalidArgument`] for a message type aligned to more than 8 bytes (an mpmc slot
    /// holds its message 8-aligned: use `recv`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::mpmc::channel::<[f64; 2]>(4)?;
    /// std::thread::spawn(move || tx.send([0.5, 1.5]));
    /// let msg = rx.recv_ref()?;
    /// assert_eq!(msg.view().get(1), Some(1.5));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_ref(&mut self) -> Result<RecvRef<'_, T>> {
        let pos = self.recv_ref_until(None)?.ok_or_else(|| Error::Timeout {
            what: "a message (no deadline was set; this is a bug)".into(),
            holder_pid: None,
        })?;
        Ok(RecvRef {
            receiver: self,
            pos,
        })
    }

    /// Receives the next message in place if one is ready, without blocking: `Ok(None)` when
    /// the queue is empty (or the next message is still being written).
    ///
    /// # Errors
    ///
    /// As for [`recv_ref`](Receiver::recv_ref).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::mpmc::channel::<u32>(4)?;
    /// assert!(rx.try_recv_ref()?.is_none());
    /// tx.send(8)?;
    /// assert_eq!(rx.try_recv_ref()?.map(|m| m.to_owned()), Some(8));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_recv_ref(&mut self) -> Result<Option<RecvRef<'_, T>>> {
        check_align::<T>()?;
        Ok(self.try_claim_ref()?.map(|pos| RecvRef {
            receiver: self,
            pos,
        }))
    }

    /// Receives the next message in place, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if nothing arrived in time (naming the sender that holds the next
    /// position, if one does: it may be stopped, or hold a loan); otherwise as for
    /// [`recv_ref`](Receiver::recv_ref).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (_tx, mut rx) = shmchan::mpmc::channel::<u32>(4)?;
    /// let e = rx.recv_ref_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(e, shmchan::Error::Timeout { .. }));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<RecvRef<'_, T>> {
        let pos = self
            .recv_ref_until(Instant::now().checked_add(timeout))?
            .ok_or_else(|| Error::Timeout {
                what: "a message on the mpmc queue".into(),
                holder_pid: self.endpoint().stuck_holder.get(),
            })?;
        Ok(RecvRef {
            receiver: self,
            pos,
        })
    }
}
