//! Zero copy on broadcast channels (`Overflow::Block` only): the publisher's loan of the next
//! slot, written in place, and a subscriber's guard over its next message, read in place.
//!
//! A [`Loan`] is the slot of position `tail`, which the publisher may write once every live
//! subscriber's cursor is past `tail - capacity` (the room a `Block`-mode `send` waits for).
//! Taking it marks the slot's stamp as being written, as a `send` does before copying the
//! message in; [`Loan::send`] stamps it and stores `tail + 1` exactly as a `send` ends, and
//! wakes the subscribers, so they see no difference. A loan dropped unsent publishes nothing;
//! the next loan or send gets the same slot.
//!
//! A [`RecvRef`] is the slot of the subscriber's cursor `c`, once `tail > c` and the slot's
//! stamp says it holds message `c`. The subscriber's cursor stays at `c` while the guard
//! lives, so the publisher cannot overwrite the slot (it would have to pass `c + capacity`);
//! the guard's drop moves the cursor on, as a `recv` does after copying. A subscriber that
//! died holding a guard stops holding the publisher back within
//! [`LIVENESS_INTERVAL`](super::LIVENESS_INTERVAL), as any dead subscriber does.
//!
//! In `Overflow::DropOldest` mode the publisher never waits, so it may overwrite a slot while
//! it is read in place: loans and guards are refused there with
//! [`Error::InvalidArgument`] (use `send` and `recv`, which copy and detect an overwrite).
//!
//! Both guards borrow their end mutably, so no other send or receive of that handle runs while
//! one is out. Both give access to the slot only through the message's generated views (one
//! atomic access per field, never a reference to the whole message) or copy it as atomic
//! words: a process that breaks the protocol and writes the slot meanwhile can tear the message
//! (every bit pattern is a valid `ShmSafe` value), never cause undefined behaviour.
//!
//! `mem::forget` of a guard is harmless: a forgotten loan publishes nothing, a forgotten
//! `RecvRef` does not move the cursor (the message is received again).

use std::time::{Duration, Instant};

use super::Overflow;
use super::publisher::Publisher;
use super::ring::Read;
use super::subscriber::Subscriber;
use crate::channel::wait;
use crate::mpmc::layout::corrupted;
use crate::mpmc::queue::wake_all;
use crate::{Error, Result, ShmSafe};

/// The next slot of a broadcast channel, loaned to the publisher to write in place;
/// [`send`](Loan::send) publishes it to every subscriber.
///
/// Get one with [`Publisher::loan`], [`Publisher::try_loan`] or [`Publisher::loan_timeout`]
/// (`Overflow::Block` channels only). Write the message through [`view_mut`](Loan::view_mut)
/// (field by field, in shared memory: a message of any size is never built on the stack),
/// [`write`](Loan::write) or [`write_from`](Loan::write_from). The slot holds whatever was
/// there before (an older message, or zeros): write every field the subscribers read.
///
/// Dropping a loan without sending publishes nothing and keeps the slot for the next loan or
/// send. While the loan lives the publisher is borrowed, so nothing else is sent meanwhile.
///
/// # Examples
///
/// ```
/// use shmchan::ShmSafe;
///
/// #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Tick {
///     seq: u64,
///     price: f64,
/// }
///
/// let (mut tx, mut rx) = shmchan::broadcast::channel::<Tick>(8)?;
/// let mut slot = tx.loan()?;
/// slot.view_mut().set_seq(1);
/// slot.view_mut().set_price(1.5);
/// slot.send()?;
/// let msg = rx.recv_ref()?;
/// assert_eq!((msg.view().seq(), msg.view().price()), (1, 1.5));
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Loan<'a, T: ShmSafe> {
    publisher: &'a mut Publisher<T>,
    pos: u64,
}

impl<'a, T: ShmSafe> Loan<'a, T> {
    fn new(publisher: &'a mut Publisher<T>, pos: u64) -> Loan<'a, T> {
        publisher.ring().begin_write(pos);
        Loan { publisher, pos }
    }

    /// Read-write access to the slot, field by field: the message type's generated `ViewMut`
    /// (for an array an [`ArrayViewMut`](crate::view::ArrayViewMut)). For a primitive message
    /// type (`u64`...) the "view" is a copy of the value: use [`write`](Loan::write) instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::broadcast::channel::<[u32; 4]>(2)?;
    /// let mut slot = tx.loan()?;
    /// slot.view_mut().store([0; 4]);
    /// slot.view_mut().set(2, 7);
    /// slot.send()?;
    /// assert_eq!(rx.recv()?, [0, 0, 7, 0]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn view_mut(&mut self) -> T::ViewMut<'_> {
        // SAFETY: the slot is in bounds of the mapping (the ring's private geometry), aligned
        // for `T` (8-aligned, and loans are refused for types aligned to more) and mapped while
        // the publisher (borrowed for `'a`) lives. Under the protocol nobody reads it: every
        // live subscriber is past the message it held, no subscriber reads position `pos`
        // before `tail` passes it, and a late subscriber that still copies the old message
        // sees the `WRITING` stamp and rejects its copy. The `&mut self` borrow keeps this view
        // the only one. A process that breaks the protocol accesses it from elsewhere; the view
        // makes one atomic access per field, so it can only tear the message (any bits are a
        // valid `T: ShmSafe`).
        unsafe { T::view_mut(self.publisher.ring().value_ptr(self.pos)) }
    }

    /// Read access to the slot as it is now, field by field.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = shmchan::broadcast::channel::<[u8; 2]>(2)?;
    /// let mut slot = tx.loan()?;
    /// slot.write([4, 5]);
    /// assert_eq!(slot.view().get(1), Some(5));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn view(&self) -> T::View<'_> {
        // SAFETY: as for `view_mut`; reads only, and `&self` excludes a mutable view meanwhile.
        unsafe { T::view_shared(self.publisher.ring().value_ptr(self.pos)) }
    }

    /// Overwrites the whole slot with `value` (which passes through the stack: for a large
    /// message, write its fields through [`view_mut`](Loan::view_mut) or copy it from the heap
    /// with [`write_from`](Loan::write_from)).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::broadcast::channel::<u64>(4)?;
    /// let mut slot = tx.loan()?;
    /// slot.write(42);
    /// slot.send()?;
    /// assert_eq!(rx.recv()?, 42);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn write(&mut self, value: T) {
        self.write_from(&value);
    }

    /// Overwrites the whole slot with a copy of `*value`, word by word, without an
    /// intermediate copy on the stack (`value` may be a `Box` of any size).
    ///
    /// # Examples
    ///
    /// ```
    /// let big: Box<[u64; 1 << 16]> = vec![9u64; 1 << 16].into_boxed_slice().try_into().unwrap();
    /// let (mut tx, mut rx) = shmchan::broadcast::channel::<[u64; 1 << 16]>(2)?;
    /// let mut slot = tx.loan()?;
    /// slot.write_from(&big);
    /// slot.send()?;
    /// assert_eq!(rx.recv_ref()?.view().get(12345), Some(9));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn write_from(&mut self, value: &T) {
        self.publisher.ring().store_value(self.pos, value);
    }

    /// Publishes the slot as the next message and wakes the subscribers that sleep.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyHolders`] in a forked child holding a copy of a loan while its parent
    /// still holds the publisher (nothing is published); [`Error::Corrupted`] if another
    /// process moved the publisher's cursor since the loan (nothing is published).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::broadcast::channel::<u16>(2)?;
    /// let rx2 = tx.subscribe()?;
    /// let mut slot = tx.loan()?;
    /// slot.write(7);
    /// slot.send()?;
    /// assert_eq!((rx.recv()?, rx2.recv()?), (7, 7));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn send(self) -> Result<()> {
        // The same checks as a send's: the role is ours, and the slot is still the next one.
        if self.publisher.try_reserve()? != Some(self.pos) {
            return Err(corrupted(format!(
                "the broadcast publisher's cursor moved away from the loaned position {} \
                 (another process published meanwhile); nothing was published",
                self.pos
            )));
        }
        let ring = self.publisher.ring();
        ring.commit(self.pos);
        wake_all(&ring.header().sub_wait.0);
        Ok(())
    }
}

impl<T: ShmSafe> std::fmt::Debug for Loan<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("broadcast::Loan")
            .field("type", &T::LAYOUT.type_name)
            .field("position", &self.pos)
            .finish()
    }
}

/// A subscriber's next broadcast message, left in its slot and read in place; dropping the
/// guard moves the subscriber past it.
///
/// Get one with [`Subscriber::recv_ref`], [`Subscriber::try_recv_ref`] or
/// [`Subscriber::recv_ref_timeout`] (`Overflow::Block` channels only). Read it through
/// [`view`](RecvRef::view) (field by field, in shared memory) or copy it out with
/// [`to_owned`](RecvRef::to_owned) or [`to_boxed`](RecvRef::to_boxed). While the guard lives
/// the subscriber is borrowed, and the publisher cannot overwrite the slot (it waits for this
/// subscriber as for one that has not read the message yet): drop it promptly.
///
/// # Examples
///
/// ```
/// let (tx, mut rx) = shmchan::broadcast::channel::<[u64; 4]>(4)?;
/// tx.send([1, 2, 3, 4])?;
/// let msg = rx.recv_ref()?;
/// assert_eq!(msg.view().get(3), Some(4));
/// drop(msg); // moves past the message
/// assert!(rx.try_recv()?.is_none());
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct RecvRef<'a, T: ShmSafe> {
    subscriber: &'a mut Subscriber<T>,
    pos: u64,
    /// A checked private copy, for the rare position this handle cannot protect (a forked
    /// copy registered late, see `Subscriber::register_late`); `None`: in place.
    copy: Option<Box<T>>,
}

impl<T: ShmSafe> RecvRef<'_, T> {
    /// Read access to the message, field by field: the message type's generated `View` (for
    /// an array an [`ArrayView`](crate::view::ArrayView), for a primitive its value).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::broadcast::channel::<[i32; 3]>(2)?;
    /// tx.send([5, -6, 7])?;
    /// assert_eq!(rx.recv_ref()?.view().get(1), Some(-6));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn view(&self) -> T::View<'_> {
        match &self.copy {
            // SAFETY: private heap memory owned by the guard: aligned, valid, written by nobody
            // while `&self` lives (a volatile-read view suffices).
            Some(b) => unsafe { T::view(&**b) },
            // SAFETY: in place, the slot is in bounds, aligned for `T` (8-aligned; loans are
            // refused for types aligned to more) and mapped (read-write) while the subscriber
            // (borrowed) lives. Its stamp said it holds message `pos` (Acquire: the
            // publisher's writes are visible), and this subscriber's published cursor is at
            // most `pos` until the guard drops, so a `Block`-mode publisher does not write the
            // slot meanwhile. A process that breaks the protocol writes from elsewhere; the
            // shared view reads each field with one atomic access, so it can only tear the
            // message, never cause undefined behaviour.
            None => unsafe { T::view_shared(self.subscriber.ring().value_ptr(self.pos)) },
        }
    }

    /// Copies the whole message out (onto the stack: for a large message use
    /// [`to_boxed`](RecvRef::to_boxed) or the view).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::broadcast::channel::<u64>(2)?;
    /// tx.send(11)?;
    /// assert_eq!(rx.recv_ref()?.to_owned(), 11);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn to_owned(&self) -> T {
        if let Some(b) = &self.copy {
            return **b;
        }
        let mut out = std::mem::MaybeUninit::<T>::uninit();
        self.subscriber.ring().load_value_into(self.pos, &mut out);
        // SAFETY: every byte was copied (as atomic words) from the slot, and any bits are a
        // valid `T` (`ShmSafe`), even torn ones.
        unsafe { out.assume_init() }
    }

    /// Copies the whole message into a new heap allocation, word by word, without a copy on
    /// the stack.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::broadcast::channel::<[u8; 1024]>(2)?;
    /// tx.send([3; 1024])?;
    /// let copy: Box<[u8; 1024]> = rx.recv_ref()?.to_boxed();
    /// assert_eq!(copy[1023], 3);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn to_boxed(&self) -> Box<T> {
        let mut out = Box::<T>::new_uninit();
        match &self.copy {
            // SAFETY: `b` is a valid `T` in its own allocation and `out` a fresh one: valid
            // for one `T` each, not overlapping. (Not `out.write(**b)`: that may build the
            // message on the stack.)
            Some(b) => unsafe { std::ptr::copy_nonoverlapping(&**b, out.as_mut_ptr(), 1) },
            None => self.subscriber.ring().load_value_into(self.pos, &mut out),
        }
        // SAFETY: every byte was initialised (copied from the slot as atomic words, or from a
        // valid copy), and any bits are a valid `T` (`ShmSafe`).
        unsafe { out.assume_init() }
    }
}

impl<T: ShmSafe> Drop for RecvRef<'_, T> {
    fn drop(&mut self) {
        self.subscriber.received_in_place(self.pos);
    }
}

impl<T: ShmSafe> std::fmt::Debug for RecvRef<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("broadcast::RecvRef")
            .field("type", &T::LAYOUT.type_name)
            .field("position", &self.pos)
            .field("copied", &self.copy.is_some())
            .finish()
    }
}

/// `Ok` if loans can be offered on a channel of `T` in `overflow` mode.
pub(super) fn loans_supported<T: ShmSafe>(overflow: Overflow) -> Result<()> {
    if overflow == Overflow::DropOldest {
        return Err(Error::InvalidArgument {
            what: "broadcast loans and recv_ref need Overflow::Block: in DropOldest mode the \
                   publisher may overwrite a slot while it is read in place; use send() and \
                   recv() there (they copy and detect an overwrite)"
                .into(),
        });
    }
    if align_of::<T>() > 8 {
        return Err(Error::InvalidArgument {
            what: format!(
                "broadcast loans and recv_ref need a message type aligned to at most 8 bytes \
                 (broadcast slots are 8-aligned; {} is {}-aligned): use send() and recv()",
                T::LAYOUT.type_name,
                align_of::<T>()
            ),
        });
    }
    Ok(())
}

fn timeout(what: &str) -> Error {
    Error::Timeout {
        what: what.into(),
        holder_pid: None,
    }
}

/// `*_until(None)` returns `Ok(None)` only if a deadline passed, and there is none.
fn no_deadline_bug() -> Error {
    timeout("the broadcast channel (no deadline was set: this is a bug)")
}

impl<T: ShmSafe> Publisher<T> {
    /// Loans the next slot, blocking while the slowest live subscriber is a whole lap behind
    /// (as [`send`](Publisher::send) does): write the message in place through the [`Loan`],
    /// then [`send`](Loan::send) it. No copy of the message is made, whatever its size.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] on an `Overflow::DropOldest` channel, or for a message type
    /// aligned to more than 8 bytes (use [`send`](Publisher::send)); otherwise as for `send`.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::broadcast::channel::<[u64; 512]>(4)?;
    /// let mut slot = tx.loan()?;
    /// slot.view_mut().store([0; 512]);
    /// slot.view_mut().set(0, 99);
    /// slot.send()?;
    /// assert_eq!(rx.recv()?[0], 99);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn loan(&mut self) -> Result<Loan<'_, T>> {
        loans_supported::<T>(self.overflow())?;
        let pos = self.reserve_until(None)?.ok_or_else(no_deadline_bug)?;
        Ok(Loan::new(self, pos))
    }

    /// Loans the next slot if there is room, without blocking: `Ok(None)` while the slowest
    /// live subscriber is a lap behind.
    ///
    /// # Errors
    ///
    /// As for [`loan`](Publisher::loan).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = shmchan::broadcast::channel::<u32>(2)?;
    /// tx.try_loan()?.expect("room").send()?;
    /// tx.try_loan()?.expect("room").send()?;
    /// assert!(tx.try_loan()?.is_none()); // `_rx` read nothing
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn try_loan(&mut self) -> Result<Option<Loan<'_, T>>> {
        loans_supported::<T>(self.overflow())?;
        Ok(self.try_reserve()?.map(|pos| Loan::new(self, pos)))
    }

    /// Loans the next slot, blocking at most `timeout` while there is no room.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the slowest live subscriber did not move in time; otherwise as
    /// for [`loan`](Publisher::loan).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (mut tx, _rx) = shmchan::broadcast::channel::<u8>(2)?;
    /// tx.send_batch(&[1, 2])?;
    /// let e = tx.loan_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(e, shmchan::Error::Timeout { .. }));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn loan_timeout(&mut self, timeout: Duration) -> Result<Loan<'_, T>> {
        loans_supported::<T>(self.overflow())?;
        let pos = self
            .reserve_until(Instant::now().checked_add(timeout))?
            .ok_or_else(|| {
                self::timeout("room in the broadcast ring for a loan (a subscriber did not move)")
            })?;
        Ok(Loan::new(self, pos))
    }
}

impl<T: ShmSafe> Subscriber<T> {
    /// The next message's position and, for a position this handle cannot protect, a checked
    /// copy; `Ok(None)` if none is published yet.
    pub(super) fn try_peek(&self) -> Result<Option<(u64, Option<Box<T>>)>> {
        let Some((me, c, t)) = self.next_published()? else {
            return Ok(None);
        };
        let found = if c < self.unprotected_below.get() {
            match self.ring().read_boxed(c) {
                Read::Message(b) => return Ok(Some((c, Some(b)))),
                Read::Lapped => Read::Lapped,
                Read::Stale => Read::Stale,
            }
        } else {
            self.ring().stamp_check(c)
        };
        match found {
            Read::Message(()) => Ok(Some((c, None))),
            Read::Lapped => Err(self.unreadable(me, c, t, true)),
            Read::Stale => Err(self.unreadable(me, c, t, false)),
        }
    }

    fn peek_until(&self, deadline: Option<Instant>) -> Result<Option<(u64, Option<Box<T>>)>> {
        if let Some(p) = self.try_peek()? {
            return Ok(Some(p));
        }
        wait::block_on_shared(
            self.wait_word(),
            self.wait_strategy(),
            deadline,
            || self.try_peek(),
            || self.lag() != 0,
            || Ok(()),
        )
    }

    pub(super) fn guard(&mut self, (pos, copy): (u64, Option<Box<T>>)) -> RecvRef<'_, T> {
        RecvRef {
            subscriber: self,
            pos,
            copy,
        }
    }

    /// Receives the next message in place, blocking while there is none: the guard reads it
    /// in its slot, and its drop moves this subscriber past it. No copy of the message is
    /// made.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] on an `Overflow::DropOldest` channel, or for a message type
    /// aligned to more than 8 bytes (use [`recv`](Subscriber::recv)); otherwise as for
    /// `recv` ([`Error::Disconnected`] once the publisher is gone and every message was
    /// received, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::broadcast::channel::<[f64; 2]>(4)?;
    /// std::thread::spawn(move || tx.send([0.5, 1.5]));
    /// let msg = rx.recv_ref()?;
    /// assert_eq!(msg.view().get(1), Some(1.5));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_ref(&mut self) -> Result<RecvRef<'_, T>> {
        loans_supported::<T>(self.ring().geometry().overflow())?;
        let p = self.peek_until(None)?.ok_or_else(no_deadline_bug)?;
        Ok(self.guard(p))
    }

    /// Receives the next message in place if one is there, without blocking: `Ok(None)` if
    /// not.
    ///
    /// # Errors
    ///
    /// As for [`recv_ref`](Subscriber::recv_ref).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, mut rx) = shmchan::broadcast::channel::<u32>(4)?;
    /// assert!(rx.try_recv_ref()?.is_none());
    /// tx.send(8)?;
    /// assert_eq!(rx.try_recv_ref()?.map(|m| m.to_owned()), Some(8));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn try_recv_ref(&mut self) -> Result<Option<RecvRef<'_, T>>> {
        loans_supported::<T>(self.ring().geometry().overflow())?;
        Ok(self.try_peek()?.map(|p| self.guard(p)))
    }

    /// Receives the next message in place, blocking at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if nothing was published in time; otherwise as for
    /// [`recv_ref`](Subscriber::recv_ref).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (_tx, mut rx) = shmchan::broadcast::channel::<u32>(4)?;
    /// let e = rx.recv_ref_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(e, shmchan::Error::Timeout { .. }));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<RecvRef<'_, T>> {
        loans_supported::<T>(self.ring().geometry().overflow())?;
        let p = self
            .peek_until(Instant::now().checked_add(timeout))?
            .ok_or_else(|| self::timeout("a broadcast message"))?;
        Ok(self.guard(p))
    }
}
