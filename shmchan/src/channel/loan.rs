//! Zero copy: a sender's loan of the next free slot, written in place, and a receiver's guard
//! over the next message, read in place.
//!
//! A [`Loan`] is the slot at the ring's `tail`, which the producer owns (`tail - head < cap`)
//! until it publishes it: [`Loan::send`] stamps the slot and stores `tail + 1` exactly as a
//! `send` does after copying the value in, so the consumer sees no difference. A loan dropped
//! unsent changes nothing in shared memory; the next loan or send gets the same slot.
//!
//! A [`RecvRef`] is the slot at `head`, which the consumer owns (`head < tail`, or its stamp
//! said ready) until it stores `head + 1`: its drop does that, as a `recv` does after copying
//! the value out.
//!
//! Both guards borrow their end mutably (`&mut Sender`, `&mut Receiver`), so no other send or
//! receive can run while one is out: the slot is never handed out twice, and messages stay in
//! order. Both give access to the slot only through the message's generated views (one atomic
//! access per field, never a reference to the whole message), because a peer that breaks the
//! protocol may write the same bytes at any time: it can then tear the message (every bit
//! pattern is a valid `ShmSafe` value), never cause undefined behaviour.
//!
//! `mem::forget` of a guard is harmless: a forgotten loan publishes nothing (its slot is loaned
//! again next time), a forgotten `RecvRef` releases nothing (the message is delivered again). A
//! guard carried into a forked child neither publishes nor releases: the role of the end stays
//! with the process that took the guard.

use std::time::{Duration, Instant};

use super::liveness;
use super::receiver::Receiver;
use super::sender::Sender;
use crate::{Error, Result, ShmSafe};

/// The next free slot of a channel, loaned to the sender to write in place; [`send`](Loan::send)
/// publishes it.
///
/// Get one with [`Sender::loan`], [`Sender::try_loan`] or [`Sender::loan_timeout`]. Write the
/// message through [`view_mut`](Loan::view_mut) (field by field, in shared memory: a message of
/// any size is never built on the stack) or [`write`](Loan::write). The slot holds whatever was
/// there before (an earlier message, or zeros): write every field the receiver reads.
///
/// Dropping a loan without sending publishes nothing and keeps the slot for the next loan or
/// send. While the loan lives the sender is borrowed, so nothing else is sent meanwhile.
///
/// # Examples
///
/// ```
/// use shmchan::ShmSafe;
///
/// #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Quote {
///     seq: u64,
///     price: f64,
/// }
///
/// let (mut tx, mut rx) = shmchan::channel::<Quote>(8)?;
/// let mut slot = tx.loan()?;
/// slot.view_mut().set_seq(1);
/// slot.view_mut().set_price(1.5);
/// slot.send()?;
/// let msg = rx.recv_ref()?;
/// assert_eq!((msg.view().seq(), msg.view().price()), (1, 1.5));
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Loan<'a, T: ShmSafe> {
    sender: &'a mut Sender<T>,
    index: u64,
    /// The fork generation the loan was taken in: a copy in a forked child must not publish.
    generation: u64,
    /// The pid holding the sending role when the loan was taken (for the child's error).
    holder: u32,
}

impl<'a, T: ShmSafe> Loan<'a, T> {
    fn new(sender: &'a mut Sender<T>, index: u64) -> Loan<'a, T> {
        let (generation, holder) = sender.role_of_loan();
        Loan {
            sender,
            index,
            generation,
            holder,
        }
    }

    /// Read-write access to the slot, field by field: the message type's generated `ViewMut`
    /// (for an array an [`ArrayViewMut`](crate::view::ArrayViewMut)). For a primitive message
    /// type (`u64`...) the "view" is a copy of the value: use [`write`](Loan::write) instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::channel::<[u32; 4]>(2)?;
    /// let mut slot = tx.loan()?;
    /// slot.view_mut().store([0; 4]);
    /// slot.view_mut().set(2, 7);
    /// slot.send()?;
    /// assert_eq!(rx.recv()?, [0, 0, 7, 0]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn view_mut(&mut self) -> T::ViewMut<'_> {
        // SAFETY: the slot is in bounds of the mapping, aligned for `T` (the ring's geometry),
        // and mapped while the sender (borrowed for `'a`) lives. It is the producer's until
        // `send` publishes it (`tail - head < cap` when it was reserved; `head` only grows up to
        // `tail`): under the protocol no one else reads or writes it, and the `&mut self` borrow
        // keeps this view the only one. A peer that breaks the protocol writes from another
        // process; the views access each field with one atomic access, so it can only tear the
        // message (any bits are a valid `T: ShmSafe`).
        unsafe { T::view_mut(self.sender.slot_ptr(self.index)) }
    }

    /// Read access to the slot as it is now, field by field.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = shmchan::channel::<[u8; 2]>(1)?;
    /// let mut slot = tx.loan()?;
    /// slot.write([4, 5]);
    /// assert_eq!(slot.view().get(1), Some(5));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn view(&self) -> T::View<'_> {
        // SAFETY: as for `view_mut`; reads only, and `&self` excludes a mutable view meanwhile.
        unsafe { T::view_shared(self.sender.slot_ptr(self.index)) }
    }

    /// Overwrites the whole slot with `value` (which passes through the stack: for a large
    /// message, write its fields through [`view_mut`](Loan::view_mut) or copy it from the heap
    /// with [`write_from`](Loan::write_from)).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::channel::<u64>(4)?;
    /// let mut slot = tx.loan()?;
    /// slot.write(42);
    /// slot.send()?;
    /// assert_eq!(rx.recv()?, 42);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn write(&mut self, value: T) {
        // SAFETY: the slot is the producer's, in bounds and aligned (see `view_mut`); a plain
        // write, as `send` makes: under the protocol nobody else accesses the slot.
        unsafe { self.sender.slot_ptr(self.index).write(value) }
    }

    /// Overwrites the whole slot with a copy of `*value`, without an intermediate copy on the
    /// stack (`value` may be a `Box` of any size).
    ///
    /// # Examples
    ///
    /// ```
    /// let big: Box<[u64; 1 << 16]> = vec![9u64; 1 << 16].into_boxed_slice().try_into().unwrap();
    /// let (mut tx, mut rx) = shmchan::channel::<[u64; 1 << 16]>(2)?;
    /// let mut slot = tx.loan()?;
    /// slot.write_from(&big);
    /// slot.send()?;
    /// assert_eq!(rx.recv_ref()?.view().get(12345), Some(9));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn write_from(&mut self, value: &T) {
        // SAFETY: as for `write`; `value` is a live `T` in private memory, which cannot overlap
        // the slot (no reference to shared slot memory is ever handed out).
        unsafe { std::ptr::copy_nonoverlapping(value, self.sender.slot_ptr(self.index), 1) }
    }

    /// Publishes the slot as the next message and wakes the receiver if it sleeps.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] if the receiver closed its end since the loan (nothing is
    /// published); [`Error::Corrupted`] if another process moved the ring's indices;
    /// [`Error::InUse`] in a forked child holding a copy of a loan taken by its parent (the
    /// parent keeps the sending role; nothing is published).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::channel::<u16>(2)?;
    /// let mut slot = tx.loan()?;
    /// slot.write(7);
    /// slot.send()?;
    /// let mut slot = tx.loan()?;
    /// slot.write(8);
    /// drop(rx);
    /// assert!(matches!(slot.send(), Err(shmchan::Error::Disconnected)));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn send(self) -> Result<()> {
        if liveness::fork_generation() != self.generation {
            return Err(Error::InUse {
                what: format!(
                    "the sending end of this {} channel (a loan taken before fork)",
                    T::LAYOUT.type_name
                ),
                pid: self.holder,
            });
        }
        self.sender.commit_loan(self.index)
    }
}

impl<T: ShmSafe> std::fmt::Debug for Loan<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("type", &T::LAYOUT.type_name)
            .field("index", &self.index)
            .finish()
    }
}

/// The next message of a channel, left in its slot and read in place; dropping the guard
/// releases the slot to the sender.
///
/// Get one with [`Receiver::recv_ref`], [`Receiver::try_recv_ref`] or
/// [`Receiver::recv_ref_timeout`]. Read it through [`view`](RecvRef::view) (field by field, in
/// shared memory) or copy it out with [`to_owned`](RecvRef::to_owned) or
/// [`to_boxed`](RecvRef::to_boxed). While the guard lives the receiver is borrowed, and the
/// sender cannot reuse the slot.
///
/// # Examples
///
/// ```
/// let (tx, mut rx) = shmchan::channel::<[u64; 4]>(4)?;
/// tx.send([1, 2, 3, 4])?;
/// let msg = rx.recv_ref()?;
/// assert_eq!(msg.view().get(3), Some(4));
/// drop(msg); // releases the slot
/// assert!(rx.try_recv()?.is_none());
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct RecvRef<'a, T: ShmSafe> {
    receiver: &'a mut Receiver<T>,
    index: u64,
    /// The fork generation the guard was taken in: a copy in a forked child must not release.
    generation: u64,
}

impl<'a, T: ShmSafe> RecvRef<'a, T> {
    pub(super) fn new(receiver: &'a mut Receiver<T>, index: u64) -> RecvRef<'a, T> {
        let generation = receiver.role_generation();
        RecvRef {
            receiver,
            index,
            generation,
        }
    }

    /// Read access to the message, field by field: the message type's generated `View` (for
    /// an array an [`ArrayView`](crate::view::ArrayView), for a primitive its value).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::channel::<[i32; 3]>(2)?;
    /// tx.send([5, -6, 7])?;
    /// assert_eq!(rx.recv_ref()?.view().get(1), Some(-6));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn view(&self) -> T::View<'_> {
        // SAFETY: the slot is in bounds, aligned for `T` and mapped while the receiver
        // (borrowed for `'a`) lives. It is the consumer's until the guard's drop stores
        // `head + 1`: the producer's writes happened before the Acquire load (of `tail` or the
        // stamp) that made it ready, and it writes the slot again only after our release. A
        // peer that breaks the protocol writes from another process; the views read each field
        // with one atomic access, so it can only tear the message, never cause UB.
        unsafe { T::view_shared(self.receiver.slot_ptr(self.index)) }
    }

    /// Copies the whole message out (onto the stack: for a large message use
    /// [`to_boxed`](RecvRef::to_boxed) or the view).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::channel::<u64>(2)?;
    /// tx.send(11)?;
    /// assert_eq!(rx.recv_ref()?.to_owned(), 11);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn to_owned(&self) -> T {
        // SAFETY: the guard holds message `index`, peeked and not released (see `view`).
        unsafe { self.receiver.read_peeked(self.index) }
    }

    /// Copies the whole message into a new heap allocation, without a copy on the stack.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::channel::<[u8; 1024]>(2)?;
    /// tx.send([3; 1024])?;
    /// let copy: Box<[u8; 1024]> = rx.recv_ref()?.to_boxed();
    /// assert_eq!(copy[1023], 3);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn to_boxed(&self) -> Box<T> {
        let mut out = Box::<T>::new_uninit();
        // SAFETY: the slot is ours (see `view`) and valid for reads of one `T`; `out` is a fresh
        // private allocation of one `T`, so they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.receiver.slot_ptr(self.index), out.as_mut_ptr(), 1);
        }
        // SAFETY: every byte was copied from an initialised slot, and any bits are a valid `T`
        // (`ShmSafe`), even torn ones.
        unsafe { out.assume_init() }
    }
}

impl<T: ShmSafe> Drop for RecvRef<'_, T> {
    fn drop(&mut self) {
        // A copy of the guard in a forked child releases nothing: the parent holds the role.
        if liveness::fork_generation() == self.generation {
            self.receiver.release_peeked(self.index);
        }
    }
}

impl<T: ShmSafe> std::fmt::Debug for RecvRef<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvRef")
            .field("type", &T::LAYOUT.type_name)
            .field("index", &self.index)
            .finish()
    }
}

fn slot_timeout() -> Error {
    Error::Timeout {
        what: "a free slot in the channel (the receiver did not keep up)".into(),
        holder_pid: None,
    }
}

fn message_timeout() -> Error {
    Error::Timeout {
        what: "a message on the channel".into(),
        holder_pid: None,
    }
}

/// `*_until(None)` returns `Ok(None)` only if a deadline passed, and there is none.
fn no_deadline_bug() -> Error {
    Error::Timeout {
        what: "the channel (no deadline was set: this is a bug)".into(),
        holder_pid: None,
    }
}

impl<T: ShmSafe> Sender<T> {
    /// Loans the next free slot, blocking while the channel is full: write the message in
    /// place through the [`Loan`], then [`send`](Loan::send) it. No copy of the message is made,
    /// whatever its size.
    ///
    /// # Errors
    ///
    /// As for [`send`](Sender::send): [`Error::Disconnected`], [`Error::Corrupted`],
    /// [`Error::InUse`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::channel::<[u64; 512]>(4)?;
    /// let mut slot = tx.loan()?;
    /// slot.view_mut().store([0; 512]);
    /// slot.view_mut().set(0, 99);
    /// slot.send()?;
    /// assert_eq!(rx.recv()?[0], 99);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn loan(&mut self) -> Result<Loan<'_, T>> {
        let index = self.reserve_until(None)?.ok_or_else(no_deadline_bug)?;
        Ok(Loan::new(self, index))
    }

    /// Loans the next free slot if there is one, without blocking: `Ok(None)` when the channel
    /// is full.
    ///
    /// # Errors
    ///
    /// As for [`loan`](Sender::loan).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = shmchan::channel::<u32>(1)?;
    /// tx.try_loan()?.expect("empty channel").send()?;
    /// assert!(tx.try_loan()?.is_none()); // full
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn try_loan(&mut self) -> Result<Option<Loan<'_, T>>> {
        Ok(self.try_reserve()?.map(|index| Loan::new(self, index)))
    }

    /// Loans the next free slot, blocking at most `timeout` while the channel is full.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the channel stayed full; otherwise as for [`loan`](Sender::loan).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (mut tx, _rx) = shmchan::channel::<u8>(1)?;
    /// tx.send(1)?;
    /// let e = tx.loan_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(e, shmchan::Error::Timeout { .. }));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn loan_timeout(&mut self, timeout: Duration) -> Result<Loan<'_, T>> {
        let index = self
            .reserve_until(Instant::now().checked_add(timeout))?
            .ok_or_else(slot_timeout)?;
        Ok(Loan::new(self, index))
    }
}

impl<T: ShmSafe> Receiver<T> {
    /// Receives the next message in place, blocking while the channel is empty: the guard reads
    /// it in its slot and releases the slot when dropped. No copy of the message is made.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Receiver::recv): [`Error::Disconnected`] once the channel is empty and
    /// the sender is gone, [`Error::Corrupted`], [`Error::InUse`].
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::channel::<[f64; 2]>(4)?;
    /// std::thread::spawn(move || tx.send([0.5, 1.5]));
    /// let msg = rx.recv_ref()?;
    /// assert_eq!(msg.view().get(1), Some(1.5));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_ref(&mut self) -> Result<RecvRef<'_, T>> {
        let index = self.peek_until(None)?.ok_or_else(no_deadline_bug)?;
        Ok(RecvRef::new(self, index))
    }

    /// Receives the next message in place if one is ready, without blocking: `Ok(None)` when
    /// the channel is empty.
    ///
    /// # Errors
    ///
    /// As for [`try_recv`](Receiver::try_recv).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::channel::<u32>(4)?;
    /// assert!(rx.try_recv_ref()?.is_none());
    /// tx.send(8)?;
    /// assert_eq!(rx.try_recv_ref()?.map(|m| m.to_owned()), Some(8));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn try_recv_ref(&mut self) -> Result<Option<RecvRef<'_, T>>> {
        Ok(self.try_peek()?.map(|index| RecvRef::new(self, index)))
    }

    /// Receives the next message in place, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if nothing arrived in time; otherwise as for
    /// [`recv_ref`](Receiver::recv_ref).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (_tx, mut rx) = shmchan::channel::<u32>(4)?;
    /// let e = rx.recv_ref_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(e, shmchan::Error::Timeout { .. }));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<RecvRef<'_, T>> {
        let index = self
            .peek_until(Instant::now().checked_add(timeout))?
            .ok_or_else(message_timeout)?;
        Ok(RecvRef::new(self, index))
    }
}
