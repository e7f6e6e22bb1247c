//! Zero copy on the producing side: a sender's loan of a claimed slot, written in place.
//!
//! A [`Loan`] is position `p`, claimed exactly as a `send` claims it (the holder entry's intent
//! names `p + 1`, then the CAS of `tail`), but not yet written: the producer writes the message
//! in the slot through the generated views, then [`Loan::send`] publishes it with the same CAS
//! of the slot's sequence number a `send` ends with, so receivers cannot tell loans and copies
//! apart. A loan dropped unsent marks its slot *skipped* (the marker crash recovery uses), so
//! receivers pass over it at once instead of waiting for it; it is not counted in
//! [`recovered`](Sender::recovered).
//!
//! The sender remembers the position it has loaned. A loan that was `mem::forget`-ten is
//! therefore skipped by the sender's next `send`, `try_send` or loan, or by the sender's drop;
//! until then, receivers that reach its position see a live claimer and wait for it (their
//! timeouts apply, and name this process). A loan copied into a forked child belongs to the
//! parent: in the child its `send` fails with [`Error::InUse`] and its drop does nothing.

use std::time::{Duration, Instant};

use super::claim::{Claim, check_align};
use super::sender::Sender;
use crate::channel::wait;
use crate::sync::words::store_words;
use crate::sys::proc;
use crate::{Error, Result, ShmSafe};

/// A slot of an mpmc queue, claimed by one sender and written in place; [`send`](Loan::send)
/// publishes it as the sender's next message.
///
/// Get one with [`Sender::loan`], [`Sender::try_loan`] or [`Sender::loan_timeout`]. Write the
/// message through [`view_mut`](Loan::view_mut) (field by field, in shared memory: a message of
/// any size is never built on the stack), [`write`](Loan::write) or
/// [`write_from`](Loan::write_from). The slot holds whatever an earlier message left there:
/// write every field the receivers read.
///
/// The slot's position is claimed from the moment the loan is taken, and receivers take
/// positions in order: those that reach it wait for it (their timeouts apply, and name this
/// process), and so do the messages other senders sent after the loan was taken. Keep loans
/// short, and don't wait for a receiver of the same queue while holding one. Dropping the loan
/// unsent gives the position up at once (receivers skip it). `mem::forget` of a loan keeps
/// receivers waiting on its position until this sender's next operation or its drop, which
/// give it up; don't forget loans.
///
/// # Examples
///
/// ```
/// use shmchan::ShmSafe;
///
/// #[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Job {
///     id: u64,
///     cost: f64,
/// }
///
/// let (mut tx, mut rx) = shmchan::mpmc::channel::<Job>(8)?;
/// let mut slot = tx.loan()?;
/// slot.view_mut().set_id(1);
/// slot.view_mut().set_cost(2.5);
/// slot.send()?;
/// let job = rx.recv_ref()?;
/// assert_eq!((job.view().id(), job.view().cost()), (1, 2.5));
/// # Ok::<(), shmchan::Error>(())
/// ```
pub struct Loan<'a, T: ShmSafe> {
    sender: &'a mut Sender<T>,
    pos: u64,
    /// The fork generation the loan was taken in: a copy in a forked child must not publish.
    generation: u64,
    /// The process that took the loan (named in the child's error).
    holder: u32,
}

impl<'a, T: ShmSafe> Loan<'a, T> {
    fn new(sender: &'a mut Sender<T>, pos: u64) -> Loan<'a, T> {
        Loan {
            sender,
            pos,
            generation: proc::fork_generation(),
            holder: proc::pid(),
        }
    }

    fn slot(&self) -> *mut T {
        self.sender.endpoint().queue.message_ptr(self.pos)
    }

    /// Read-write access to the slot, field by field: the message type's generated `ViewMut`
    /// (for an array an [`ArrayViewMut`](crate::view::ArrayViewMut)). For a primitive message
    /// type (`u64`...) the "view" is a copy of the value: use [`write`](Loan::write) instead.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::mpmc::channel::<[u32; 4]>(2)?;
    /// let mut slot = tx.loan()?;
    /// slot.view_mut().store([0; 4]);
    /// slot.view_mut().set(2, 7);
    /// slot.send()?;
    /// assert_eq!(rx.recv()?, [0, 0, 7, 0]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn view_mut(&mut self) -> T::ViewMut<'_> {
        // SAFETY: the message lies in bounds of the mapping (`words_for::<T>()` words after the
        // slot's sequence word, by the private geometry), is aligned for `T` (8-aligned, and
        // `check_align` refused loans of types aligned to more), and stays mapped while the
        // sender (borrowed for `'a`) lives. Position `pos` is claimed by this sender and not
        // published: under the protocol no other process reads or writes the slot, and the
        // `&mut self` borrow keeps this view the only one. A peer that breaks the protocol
        // writes from another process; the views access each field with one atomic access,
        // so it can only tear the message (any bits are a valid `T: ShmSafe`).
        unsafe { T::view_mut(self.slot()) }
    }

    /// Read access to the slot as it is now, field by field.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = shmchan::mpmc::channel::<[u8; 2]>(2)?;
    /// let mut slot = tx.loan()?;
    /// slot.write([4, 5]);
    /// assert_eq!(slot.view().get(1), Some(5));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn view(&self) -> T::View<'_> {
        // SAFETY: as for `view_mut`; reads only, and `&self` excludes a mutable view meanwhile.
        unsafe { T::view_shared(self.slot()) }
    }

    /// Overwrites the whole slot with `value` (which passes through the stack: for a large
    /// message, write its fields through [`view_mut`](Loan::view_mut) or copy it from the heap
    /// with [`write_from`](Loan::write_from)).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::mpmc::channel::<u64>(4)?;
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

    /// Overwrites the whole slot with a copy of `*value`, without an intermediate copy on the
    /// stack (`value` may be a `Box` of any size).
    ///
    /// # Examples
    ///
    /// ```
    /// let big: Box<[u64; 1 << 16]> = vec![9u64; 1 << 16].into_boxed_slice().try_into().unwrap();
    /// let (mut tx, mut rx) = shmchan::mpmc::channel::<[u64; 1 << 16]>(2)?;
    /// let mut slot = tx.loan()?;
    /// slot.write_from(&big);
    /// slot.send()?;
    /// assert_eq!(rx.recv_ref()?.view().get(12345), Some(9));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn write_from(&mut self, value: &T) {
        // SAFETY: the message words are in bounds, 8-aligned and hold `words_for::<T>()` words
        // (the slot size); every process accesses the value words of mpmc slots atomically
        // (and the views only while the protocol gives them the slot), and `value` is private
        // memory, not the slot.
        unsafe { store_words(self.slot().cast::<u64>(), value) }
    }

    /// Publishes the slot as this sender's next message and wakes receivers that sleep.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] if every receiver is gone (the slot is then skipped, nothing is
    /// delivered); [`Error::Corrupted`] if another process skipped the slot meanwhile (only a
    /// hostile peer can); [`Error::InUse`] in a forked child holding a copy of a loan its parent
    /// took (the parent keeps the slot; nothing is published).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::mpmc::channel::<u16>(2)?;
    /// let mut slot = tx.loan()?;
    /// slot.write(7);
    /// slot.send()?;
    /// assert_eq!(rx.recv()?, 7);
    /// let mut slot = tx.loan()?;
    /// slot.write(8);
    /// drop(rx);
    /// assert!(matches!(slot.send(), Err(shmchan::Error::Disconnected)));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    #[inline]
    pub fn send(self) -> Result<()> {
        if proc::fork_generation() != self.generation {
            return Err(Error::InUse {
                what: format!(
                    "a loaned slot of this {} mpmc queue (a loan taken before fork)",
                    T::LAYOUT.type_name
                ),
                pid: self.holder,
            });
        }
        let end = self.sender.endpoint();
        if end.peer_disconnected(end.clock_due()) {
            return Err(Error::Disconnected); // the drop skips the slot
        }
        let me = end.entry()?;
        // From here on the drop has nothing left to do, whatever the publication says.
        let _ = self.sender.loaned.take();
        end.queue.publish_claimed(me, self.pos)
    }
}

impl<T: ShmSafe> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        // Unsent: skip the slot (in a forked child's copy, `take` forgets the parent's record).
        if self.sender.loaned.is_set() {
            self.sender.settle_loan();
        }
    }
}

impl<T: ShmSafe> std::fmt::Debug for Loan<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpmc::Loan")
            .field("type", &T::LAYOUT.type_name)
            .field("position", &self.pos)
            .finish()
    }
}

impl<T: ShmSafe> Sender<T> {
    /// Skips the position of a loan this process took and did not send (dropped, or forgotten
    /// and found by the next operation); forgets a record inherited across `fork`.
    #[cold]
    pub(super) fn settle_loan(&self) {
        let Some(pos) = self.loaned.take() else {
            return;
        };
        // A loan was taken, so this handle has an entry (its index never changes).
        if let Ok(me) = self.endpoint().entry() {
            self.endpoint().queue.skip_claimed(me, pos);
        }
    }

    /// One attempt to claim a free slot for a loan (as `try_send` does for a copy).
    fn try_claim_loan(&self) -> Result<Option<u64>> {
        let end = self.endpoint();
        let me = end.entry()?;
        if self.loaned.is_set() {
            self.settle_loan();
        }
        if end.peer_disconnected(end.clock_due()) {
            return Err(Error::Disconnected);
        }
        for _ in 0..2 {
            match end.queue.try_claim_free(me) {
                Claim::Got(pos) => {
                    self.loaned.set(pos);
                    return Ok(Some(pos));
                }
                Claim::Full { pos } => {
                    if !self.full_slow_path(pos)? {
                        return Ok(None);
                    }
                }
                Claim::Busy => {
                    end.geometry.check_unchanged(end.queue.header())?;
                    return Ok(None);
                }
                Claim::Empty | Claim::Pending { .. } => return Ok(None),
            }
        }
        Ok(None)
    }

    fn loan_until(&self, deadline: Option<Instant>) -> Result<Option<u64>> {
        check_align::<T>()?;
        let end = self.endpoint();
        end.stuck_holder.set(None);
        if let Some(pos) = self.try_claim_loan()? {
            return Ok(Some(pos));
        }
        wait::block_on_shared(
            &end.queue.header().tx_wait.0,
            end.strategy.get(),
            deadline,
            || self.try_claim_loan(),
            || end.queue.probe_space(),
            || Ok(()),
        )
    }

    /// Loans the next free slot, blocking while the queue is full: write the message in place
    /// through the [`Loan`], then [`send`](Loan::send) it. No copy of the message is made,
    /// whatever its size.
    ///
    /// # Errors
    ///
    /// As for [`send`](Sender::send): [`Error::Disconnected`], [`Error::TooManyHolders`],
    /// [`Error::Corrupted`]; [`Error::InvalidArgument`] for a message type aligned to more than
    /// 8 bytes (an mpmc slot holds its message 8-aligned: use `send`).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, rx) = shmchan::mpmc::channel::<[u64; 512]>(4)?;
    /// let mut slot = tx.loan()?;
    /// slot.view_mut().store([0; 512]);
    /// slot.view_mut().set(0, 99);
    /// slot.send()?;
    /// assert_eq!(rx.recv()?[0], 99);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn loan(&mut self) -> Result<Loan<'_, T>> {
        let pos = self.loan_until(None)?.ok_or_else(|| Error::Timeout {
            what: "a free mpmc slot (no deadline was set; this is a bug)".into(),
            holder_pid: None,
        })?;
        Ok(Loan::new(self, pos))
    }

    /// Loans the next free slot if there is one, without blocking: `Ok(None)` when the queue
    /// is full (or, briefly, when other senders won every race for a slot).
    ///
    /// # Errors
    ///
    /// As for [`loan`](Sender::loan).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut tx, _rx) = shmchan::mpmc::channel::<u32>(2)?;
    /// tx.try_loan()?.expect("room").send()?;
    /// tx.try_loan()?.expect("room").send()?;
    /// assert!(tx.try_loan()?.is_none()); // full
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn try_loan(&mut self) -> Result<Option<Loan<'_, T>>> {
        check_align::<T>()?;
        Ok(self.try_claim_loan()?.map(|pos| Loan::new(self, pos)))
    }

    /// Loans the next free slot, blocking at most `timeout` while the queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the queue stayed full (naming the receiver holding the slot, if
    /// one does: it may be stopped); otherwise as for [`loan`](Sender::loan).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (mut tx, _rx) = shmchan::mpmc::channel::<u8>(2)?;
    /// tx.send_batch(&[1, 2])?;
    /// let e = tx.loan_timeout(Duration::from_millis(5)).unwrap_err();
    /// assert!(matches!(e, shmchan::Error::Timeout { .. }));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn loan_timeout(&mut self, timeout: Duration) -> Result<Loan<'_, T>> {
        let pos = self
            .loan_until(Instant::now().checked_add(timeout))?
            .ok_or_else(|| Error::Timeout {
                what: "a free slot in the mpmc queue (the receivers did not keep up)".into(),
                holder_pid: self.endpoint().stuck_holder.get(),
            })?;
        Ok(Loan::new(self, pos))
    }
}
