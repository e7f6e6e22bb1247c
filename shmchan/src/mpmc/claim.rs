//! The queue operations behind loans: a claim of a position that is held across calls instead
//! of being finished inside one `try_push`/`try_pop`, and the operations that finish it later.
//!
//! A producer's loan claims position `p` exactly as a push does (`intent = p + 1` in its holder
//! entry, then the CAS of `tail`), and keeps the claim: the intent stays set while the loan
//! lives, so a consumer waiting on `p` sees a live claimer and waits, and recovers the slot
//! (skips it) if the process dies. [`Queue::publish_claimed`] finishes it as a push does (CAS of
//! `seq` from `p` to `p + 1`, Release); [`Queue::skip_claimed`] gives it up with the marker
//! crash recovery uses (`(p + 1) | SKIP`), which consumers release without a message. A
//! voluntary skip is not counted in `recovered`: nothing crashed.
//!
//! A consumer's `recv_ref` claims position `p` as a pop does and keeps the claim (intent
//! `p + 1`) while the guard lives; [`Queue::release_claimed`] frees the slot for the next lap as
//! a pop does after its copy. A consumer killed meanwhile is covered by the producers'
//! recovery of unreleased slots (the message is counted `lost`).
//!
//! Each handle remembers the position it holds in an [`Outstanding`] record, so a guard that
//! was `mem::forget`-ten is finished by the next operation of its handle, or by its drop: a
//! handle's holder entry has one intent word, which must not be overwritten by a new claim
//! while the old one is unfinished (recovery could no longer find the old claimer).

use std::cell::Cell;
use std::sync::atomic::Ordering;

use super::layout::{Entry, corrupted};
use super::queue::{Queue, RETRY_LIMIT, is_before, wake_all};
use crate::format::mpmc::SKIP;
use crate::sys::proc;
use crate::{Error, Result, ShmSafe};

/// What a claim found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// Position `pos` is claimed by this handle (its intent stays set).
    Got(u64),
    /// The producer's slot at `pos` still holds an older message (full queue).
    Full { pos: u64 },
    /// Nothing claimed by any producer (empty queue).
    Empty,
    /// Position `pos` is claimed by a producer that has not published it yet.
    Pending { pos: u64 },
    /// Lost every race within the retry budget; try again.
    Busy,
}

/// The position a handle holds across calls (a loan or a `recv_ref` guard), with the fork
/// generation that took it: a forked child's copy of the record belongs to the parent and is
/// dropped without finishing anything.
#[derive(Debug, Default)]
pub(super) struct Outstanding(Cell<Option<(u64, u64)>>);

impl Outstanding {
    /// Records that this handle now holds `pos`.
    #[inline]
    pub(super) fn set(&self, pos: u64) {
        self.0.set(Some((pos, proc::fork_generation())));
    }

    /// Whether a position is recorded (a cheap check for the copy paths).
    #[inline]
    pub(super) fn is_set(&self) -> bool {
        self.0.get().is_some()
    }

    /// Clears the record; returns the position if this process took it (not a parent before
    /// `fork`).
    #[inline]
    pub(super) fn take(&self) -> Option<u64> {
        let (pos, generation) = self.0.take()?;
        (generation == proc::fork_generation()).then_some(pos)
    }
}

/// Loans need the message aligned in its slot: the value words start 8 bytes into an 8-aligned
/// slot, so a type aligned to more than 8 cannot be viewed in place.
pub(super) fn check_align<T: ShmSafe>() -> Result<()> {
    if align_of::<T>() <= 8 {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: format!(
                "mpmc loans of {} (aligned to {} bytes): an mpmc slot holds its message 8-aligned, \
                 so in-place access needs an alignment of at most 8; use send/recv (which copy), \
                 or an spsc channel, whose slots follow the message's alignment",
                T::LAYOUT.type_name,
                align_of::<T>()
            ),
        })
    }
}

impl<T: ShmSafe> Queue<T> {
    /// The start of the message in the slot of `pos`: 8-aligned, `words_for::<T>()` words.
    #[inline]
    pub(super) fn message_ptr(&self, pos: u64) -> *mut T {
        self.value_ptr(pos).cast()
    }

    /// Claims the next free position, without writing (what [`Queue::try_push`] does first): on
    /// [`Claim::Got`] the slot is this producer's until [`Queue::publish_claimed`] or
    /// [`Queue::skip_claimed`], and `me.intent` names it.
    pub(super) fn try_claim_free(&self, me: &Entry) -> Claim {
        let tail = &self.header().tail.0;
        let mut pos = tail.load(Ordering::Relaxed);
        let mut intent_set = false;
        let mut outcome = Claim::Busy;
        for _ in 0..RETRY_LIMIT {
            let seq = self.seq(pos).load(Ordering::Acquire);
            if seq == pos {
                me.intent.store(pos.wrapping_add(1), Ordering::Release);
                intent_set = true;
                match tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Claim::Got(pos),
                    Err(now) => pos = now,
                }
            } else if is_before(seq & !SKIP, pos) {
                outcome = Claim::Full { pos };
                break;
            } else {
                pos = tail.load(Ordering::Relaxed);
            }
        }
        if intent_set {
            me.intent.store(0, Ordering::Release);
        }
        outcome
    }

    /// Publishes position `pos`, claimed by [`Queue::try_claim_free`] and written since, and
    /// wakes sleeping consumers.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Corrupted`] if a consumer skipped the slot meanwhile (only a hostile peer
    /// or a wrong `/proc` makes that happen): the message is not delivered.
    pub(super) fn publish_claimed(&self, me: &Entry, pos: u64) -> Result<()> {
        self.publish_seq(me, pos)?;
        wake_all(&self.header().rx_wait.0);
        Ok(())
    }

    /// The publication of a claimed and written position (a send's or a loan's): the CAS of
    /// `seq` from `pos` to `pos + 1` (Release: the message words happen before a consumer's
    /// Acquire of `seq`), then the intent cleared. The caller wakes consumers.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Corrupted`] if a consumer skipped the slot meanwhile, having found this
    /// process dead (only a hostile peer or a wrong `/proc` makes that happen): the message is
    /// not delivered.
    #[inline]
    pub(super) fn publish_seq(&self, me: &Entry, pos: u64) -> Result<()> {
        let r = self.seq(pos).compare_exchange(
            pos,
            pos.wrapping_add(1),
            Ordering::Release,
            Ordering::Relaxed,
        );
        me.intent.store(0, Ordering::Release);
        r.map(|_| ()).map_err(|_| {
            corrupted(format!(
                "the slot of position {pos}, claimed by this live sender, was skipped by a consumer that found it dead; the message was not sent"
            ))
        })
    }

    /// Gives up position `pos`, claimed by [`Queue::try_claim_free`] and not published: marks
    /// it skipped (consumers release it without a message) and wakes them. Not counted in
    /// `recovered`. If it was already skipped (see [`Queue::publish_claimed`]), nothing changes.
    pub(super) fn skip_claimed(&self, me: &Entry, pos: u64) {
        let _ = self.seq(pos).compare_exchange(
            pos,
            pos.wrapping_add(1) | SKIP,
            Ordering::Release,
            Ordering::Relaxed,
        );
        me.intent.store(0, Ordering::Release);
        wake_all(&self.header().rx_wait.0);
    }

    /// Claims the next published message, without copying it (what [`Queue::try_pop`] does
    /// first): on
    /// [`Claim::Got`] the slot is this consumer's until [`Queue::release_claimed`], and
    /// `me.intent` names it. Skipped slots on the way are released, as `try_pop` does.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Corrupted`] if a skipped slot was freed by another process while this
    /// consumer held it, or the indices are impossible.
    pub(super) fn try_claim_message(&self, me: &Entry) -> Result<Claim> {
        let head = &self.header().head.0;
        let mut pos = head.load(Ordering::Relaxed);
        let mut intent_set = false;
        let mut outcome = Claim::Busy;
        for _ in 0..RETRY_LIMIT {
            let seq = self.seq(pos).load(Ordering::Acquire);
            let want = pos.wrapping_add(1);
            if seq == want || seq == want | SKIP {
                me.intent.store(want, Ordering::Release);
                intent_set = true;
                if let Err(now) =
                    head.compare_exchange_weak(pos, want, Ordering::AcqRel, Ordering::Relaxed)
                {
                    pos = now;
                    continue;
                }
                if seq == want {
                    return Ok(Claim::Got(pos));
                }
                // A skipped slot: release it without a message and look further.
                let r = self.seq(pos).compare_exchange(
                    seq,
                    pos.wrapping_add(self.capacity()),
                    Ordering::Release,
                    Ordering::Relaxed,
                );
                me.intent.store(0, Ordering::Release);
                intent_set = false;
                if r.is_err() {
                    return Err(corrupted(format!(
                        "the slot of position {pos}, held by this live receiver, was freed by another process"
                    )));
                }
                wake_all(&self.header().tx_wait.0);
                pos = head.load(Ordering::Relaxed);
            } else if is_before(seq & !SKIP, want) {
                // As in `try_pop`: `head`, then `tail`, then `head` again, all Acquire.
                let now = head.load(Ordering::Acquire);
                if now != pos {
                    pos = now;
                    continue;
                }
                let tail = self.header().tail.0.load(Ordering::Acquire);
                let now = head.load(Ordering::Acquire);
                if now != pos {
                    pos = now;
                    continue;
                }
                let claimed_ahead = tail.wrapping_sub(pos);
                outcome = if claimed_ahead == 0 {
                    Claim::Empty
                } else if claimed_ahead <= self.capacity() {
                    Claim::Pending { pos }
                } else {
                    if intent_set {
                        me.intent.store(0, Ordering::Release);
                    }
                    return Err(corrupted(format!(
                        "mpmc indices head={pos} tail={tail} are impossible (more than the capacity {} apart, or reversed)",
                        self.capacity()
                    )));
                };
                break;
            } else {
                pos = head.load(Ordering::Relaxed);
            }
        }
        if intent_set {
            me.intent.store(0, Ordering::Release);
        }
        Ok(outcome)
    }

    /// Releases the message at `pos`, claimed by [`Queue::try_claim_message`] and read since,
    /// for the next lap, and wakes sleeping producers. Returns false if another process freed
    /// the slot meanwhile (a hostile peer, or a wrong `/proc`): nothing is changed then.
    pub(super) fn release_claimed(&self, me: &Entry, pos: u64) -> bool {
        let released = self.release_seq(me, pos);
        wake_all(&self.header().tx_wait.0);
        released
    }

    /// The release of a claimed message for the next lap (a receive's or a guard's): the CAS of
    /// `seq` from `pos + 1` to `pos + capacity` (Release: the reads happen before a producer's
    /// Acquire that sees the slot free), then the intent cleared. False, changing nothing, if
    /// another process freed the slot meanwhile. The caller wakes producers.
    #[inline]
    pub(super) fn release_seq(&self, me: &Entry, pos: u64) -> bool {
        let r = self.seq(pos).compare_exchange(
            pos.wrapping_add(1),
            pos.wrapping_add(self.capacity()),
            Ordering::Release,
            Ordering::Relaxed,
        );
        me.intent.store(0, Ordering::Release);
        r.is_ok()
    }
}
