//! The multi-producer multi-consumer algorithm (Vyukov's bounded queue with a sequence number
//! per slot), over raw memory laid out as in [`super::layout`], and its crash recovery.
//!
//! Positions are free-running `u64`s; position `p` lives in slot `p & mask`. Slot `i` starts
//! with `seq = i`.
//!
//! - **Producer** at `p = tail`: if `seq == p` the slot is free for this lap. It records
//!   `intent = p + 1` in its holder entry, claims `p` by a CAS of `tail` from `p` to `p + 1`,
//!   writes the message (atomic words: a peer presumed dead, or hostile, may write the same
//!   bytes), and publishes by a CAS of `seq` from `p` to `p + 1` (Release), then clears its
//!   intent. The publish is a CAS, not a store: if a consumer already skipped the slot (below),
//!   the publish fails and the send reports an error instead of corrupting the ring.
//! - **Consumer** at `p = head`: if `seq == p + 1` (Acquire) the message is complete. It records
//!   `intent = p + 1`, claims by a CAS of `head`, copies the message out and releases the slot
//!   for the next lap by a CAS of `seq` from `p + 1` to `p + capacity`, then clears its intent.
//!
//! `seq < p` (for a producer) means the ring is full; `seq < p + 1` (for a consumer) that
//! position `p` is not published yet: empty if `tail == p`, claimed by a producer that has not
//! finished if `tail > p`.
//!
//! **Recovery.** A claimer stores its intent (Release) before its claiming CAS (AcqRel), so
//! whoever later observes the moved index with Acquire also sees the claimer's intent, or a
//! later value the claimer stored after finishing (and then its publication). Hence:
//!
//! - A consumer that finds `p` claimed but unpublished for longer than `LIVENESS_INTERVAL`
//!   scans the producer table for entries whose intent is `p + 1`. If there is at least one and
//!   all are dead (pid and start time, from `/proc`; a stopped process is alive), the claimer
//!   died between claiming and publishing: the consumer CASes `seq` from `p` to `(p + 1) |
//!   SKIP`, counts it in `recovered` and clears the dead entries' intent. Whoever takes the
//!   slot releases it without a message. A live entry with that intent (the claimer, or a
//!   producer about to fail its CAS for `p`) means "wait".
//! - A producer that finds the slot of `p` still holding message `m = p - capacity` while `head
//!   > m`, for longer than `LIVENESS_INTERVAL`, does the same with the consumer table: all
//!   holders of intent `m + 1` dead means a consumer died holding the message; the producer
//!   CASes `seq` from `m + 1` to `m + capacity` (freeing the slot) and counts it in `lost`.
//!
//! Both recoveries and the normal publish/release are CASes on the same `seq` word, so exactly
//! one of "the claimer finished" and "the slot was recovered" happens. Every index read from
//! shared memory is bounded by the private `mask`, so hostile values give errors or wrong but
//! valid messages, never an out-of-bounds access; retry loops are bounded.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use super::claim::Claim;
use super::holders::Table;
use super::layout::{Entry, Geometry, MpmcHeader, corrupted};
use crate::channel::liveness::Probe;
use crate::format::mpmc::{SKIP, SLOT_VALUE_OFFSET};
use crate::sync::words::{load_words, store_words};
use crate::sys::futex;
use crate::{Result, ShmSafe};
use std::sync::OnceLock;

/// Attempts of one `try_push`/`try_pop` before it reports "busy" (only reached under heavy
/// contention or when another process keeps rewriting the indices).
pub(super) const RETRY_LIMIT: u32 = 10_000;

/// Wakes every process sleeping on `word` if one announced itself (several producers or
/// consumers may sleep on the same word; waking one would leave the others asleep until their
/// timeout once the word is cleared). See `channel::wait` for why the fence prevents a lost
/// wake-up.
#[inline]
pub(crate) fn wake_all(word: &AtomicU32) {
    fence(Ordering::SeqCst);
    if word.load(Ordering::Relaxed) != 0 {
        word.store(0, Ordering::Relaxed);
        futex::wake(word, i32::MAX as u32);
    }
}

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Published.
    Done,
    /// The slot of position `pos` still holds an older message.
    Full { pos: u64 },
    /// Lost every race within the retry budget; try again.
    Busy,
}

/// What a pop found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pop<T> {
    /// A message.
    Got(T),
    /// Nothing claimed by any producer.
    Empty,
    /// Position `pos` is claimed by a producer that has not published it yet.
    Pending { pos: u64 },
    /// Lost every race within the retry budget; try again.
    Busy,
}

/// The result of a recovery attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The slot was skipped (dead producer) or freed (dead consumer).
    Recovered,
    /// A live (possibly stopped) holder claims it, or nobody recorded a claim: wait.
    Held { pid: Option<u32> },
    /// The slot is not stuck (any more).
    NotStuck,
}

/// The queue at one mapping: raw pointers and the private geometry. Shared by the handles of
/// one process; the memory is kept mapped by the handle that owns the copy.
pub(crate) struct Queue<T> {
    header: *const MpmcHeader,
    slots: *mut u8,
    slot_size: usize,
    mask: u64,
    capacity: u64,
    producers: Table,
    consumers: Table,
    _marker: PhantomData<T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Queue<T> {}

#[inline]
pub(super) fn is_before(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) < 0
}

impl<T: ShmSafe> Queue<T> {
    /// The queue at `base`.
    ///
    /// # Safety
    ///
    /// `base` must point to a queue initialised for `geometry` (with [`Geometry::init`] or
    /// checked with [`Geometry::validate`]), mapped for [`Geometry::total_len`] bytes for as
    /// long as the result (or a copy) is used; `probe` must stay valid as long, and belong to
    /// this mapping.
    pub(crate) unsafe fn new(
        base: *mut u8,
        geometry: &Geometry,
        probe: &OnceLock<Probe>,
    ) -> Queue<T> {
        let header = base as *const MpmcHeader;
        // SAFETY: the caller guarantees `base` holds a header; the counters are atomics.
        let counters = unsafe { &(*header).counters.0 };
        let n = geometry.max_holders as usize;
        // The offsets lie within the mapped length (validated geometry), so these stay in the
        // mapping.
        let producers = base.wrapping_add(geometry.producers_offset as usize) as *const Entry;
        let consumers = base.wrapping_add(geometry.consumers_offset as usize) as *const Entry;
        let slots = base.wrapping_add(geometry.slots_offset as usize);
        Queue {
            header,
            slots,
            slot_size: geometry.slot_size as usize,
            mask: geometry.capacity - 1,
            capacity: geometry.capacity,
            // SAFETY: `n` entries at each table offset, and the counter words, inside the
            // mapping (geometry), mapped while the queue is used (caller).
            producers: unsafe {
                Table::new(
                    producers,
                    n,
                    &counters.producers_attached,
                    &counters.producers_departed,
                    probe,
                )
            },
            // SAFETY: as above.
            consumers: unsafe {
                Table::new(
                    consumers,
                    n,
                    &counters.consumers_attached,
                    &counters.consumers_departed,
                    probe,
                )
            },
            _marker: PhantomData,
        }
    }

    pub(crate) fn header(&self) -> &MpmcHeader {
        // SAFETY: `new`'s contract keeps the header mapped while `self` is used.
        unsafe { &*self.header }
    }

    pub(crate) fn producers(&self) -> &Table {
        &self.producers
    }

    pub(crate) fn consumers(&self) -> &Table {
        &self.consumers
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The start of the slot of `pos` (in bounds: `pos & mask < capacity`, and the mapping
    /// holds `capacity` slots by the private geometry).
    #[inline]
    fn slot(&self, pos: u64) -> *mut u8 {
        self.slots
            .wrapping_add((pos & self.mask) as usize * self.slot_size)
    }

    /// The sequence word of the slot of `pos`.
    #[inline]
    pub(super) fn seq(&self, pos: u64) -> &AtomicU64 {
        // SAFETY: in bounds (see `slot`), 8-aligned (slots offset a multiple of 128, slot size
        // a multiple of 8), and only ever accessed atomically.
        unsafe { AtomicU64::from_ptr(self.slot(pos).cast()) }
    }

    #[inline]
    pub(super) fn value_ptr(&self, pos: u64) -> *mut u64 {
        self.slot(pos)
            .wrapping_add(SLOT_VALUE_OFFSET as usize)
            .cast()
    }

    /// Publishes `value` at the next free position, calling `claimed` between the claim and
    /// the write (a test hook; `|| {}` otherwise).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Corrupted`] if the slot this call claimed was skipped by a consumer
    /// (which found this process dead: only a hostile peer or a wrong `/proc` makes that
    /// happen); the message was then not sent.
    #[inline]
    pub(crate) fn try_push(&self, me: &Entry, value: &T, claimed: impl FnOnce()) -> Result<Push> {
        Ok(match self.try_claim_free(me) {
            Claim::Got(pos) => {
                claimed();
                // SAFETY: the slot's value words are in bounds (`value_ptr`), 8-aligned, hold
                // `words_for::<T>()` words (slot size), and every process accesses them
                // atomically.
                unsafe { store_words(self.value_ptr(pos), value) };
                self.publish_seq(me, pos)?;
                Push::Done
            }
            Claim::Full { pos } => Push::Full { pos },
            Claim::Busy | Claim::Empty | Claim::Pending { .. } => Push::Busy,
        })
    }

    /// Takes the next published message, calling `claimed` between the claim and the copy (a
    /// test hook).
    ///
    /// # Errors
    ///
    /// [`crate::Error::Corrupted`] if the slot was freed by a producer while this live consumer
    /// held it, or the indices are impossible.
    #[inline]
    pub(crate) fn try_pop(&self, me: &Entry, claimed: impl FnOnce()) -> Result<Pop<T>> {
        Ok(match self.try_claim_message(me)? {
            Claim::Got(pos) => {
                claimed();
                // SAFETY: in bounds and 8-aligned (`value_ptr`), `words_for::<T>()` words,
                // accessed atomically by everyone; `T: ShmSafe` makes any bytes a valid `T`.
                let value = unsafe { load_words::<T>(self.value_ptr(pos)) };
                if !self.release_seq(me, pos) {
                    return Err(corrupted(format!(
                        "the slot of position {pos}, held by this live receiver, was freed by another process"
                    )));
                }
                Pop::Got(value)
            }
            Claim::Empty => Pop::Empty,
            Claim::Pending { pos } => Pop::Pending { pos },
            Claim::Busy | Claim::Full { .. } => Pop::Busy,
        })
    }

    /// Whether the slot at the current `tail` looks free (a cheap probe for spinning).
    #[inline]
    pub(crate) fn probe_space(&self) -> bool {
        let pos = self.header().tail.0.load(Ordering::Relaxed);
        self.seq(pos).load(Ordering::Relaxed) == pos
    }

    /// Whether the slot at the current `head` looks published, or `tail` is ahead (a cheap
    /// probe for spinning).
    #[inline]
    pub(crate) fn probe_message(&self) -> bool {
        let pos = self.header().head.0.load(Ordering::Relaxed);
        let seq = self.seq(pos).load(Ordering::Relaxed) & !SKIP;
        seq == pos.wrapping_add(1)
    }

    /// Scans `table` for holders whose intent is `intent`: `Ok(dead entries)` if there is
    /// at least one and all are dead, `Err(pid)` otherwise.
    fn dead_claimers(table: &Table, intent: u64) -> std::result::Result<Vec<&Entry>, Option<u32>> {
        let mut dead = Vec::new();
        for e in table.entries() {
            if e.intent.load(Ordering::Acquire) != intent {
                continue;
            }
            // An entry with a non-zero intent is never reused, so this owner is the one that
            // stored the intent.
            let owner = e.owner.load(Ordering::Acquire);
            if table.holder_alive(owner) {
                return Err(Some(owner as u32));
            }
            dead.push(e);
        }
        if dead.is_empty() { Err(None) } else { Ok(dead) }
    }

    /// Skips position `pos` if it is claimed but unpublished and every producer that claims it
    /// is dead (see the module docs).
    pub(crate) fn recover_unpublished(&self, pos: u64) -> Recovery {
        let tail = self.header().tail.0.load(Ordering::Acquire);
        if !is_before(pos, tail) || self.seq(pos).load(Ordering::Acquire) != pos {
            return Recovery::NotStuck;
        }
        let want = pos.wrapping_add(1);
        let dead = match Self::dead_claimers(&self.producers, want) {
            Ok(dead) => dead,
            Err(pid) => return Recovery::Held { pid },
        };
        if self
            .seq(pos)
            .compare_exchange(pos, want | SKIP, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Recovery::NotStuck;
        }
        self.header()
            .counters
            .0
            .recovered
            .fetch_add(1, Ordering::Relaxed);
        for e in dead {
            let _ = e
                .intent
                .compare_exchange(want, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        // Other consumers may sleep waiting for this position.
        wake_all(&self.header().rx_wait.0);
        Recovery::Recovered
    }

    /// Frees the slot of `pos` if it still holds message `pos - capacity`, a consumer claimed
    /// that message, and every consumer that claims it is dead (see the module docs).
    pub(crate) fn recover_unreleased(&self, pos: u64) -> Recovery {
        let m = pos.wrapping_sub(self.capacity);
        let want = m.wrapping_add(1);
        let head = self.header().head.0.load(Ordering::Acquire);
        let seq = self.seq(pos).load(Ordering::Acquire);
        if !is_before(m, head) || (seq != want && seq != want | SKIP) {
            return Recovery::NotStuck;
        }
        let dead = match Self::dead_claimers(&self.consumers, want) {
            Ok(dead) => dead,
            Err(pid) => return Recovery::Held { pid },
        };
        if self
            .seq(pos)
            .compare_exchange(seq, pos, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Recovery::NotStuck;
        }
        if seq & SKIP == 0 {
            self.header()
                .counters
                .0
                .lost
                .fetch_add(1, Ordering::Relaxed);
        }
        for e in dead {
            let _ = e
                .intent
                .compare_exchange(want, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
        wake_all(&self.header().tx_wait.0);
        Recovery::Recovered
    }

    /// Whether a dead producer's `intent` names a position that needs no recovery any more:
    /// published or skipped (its slot's `seq` reached `intent`), or never claimed (`tail` has
    /// not passed it).
    pub(crate) fn producer_claim_finished(&self, intent: u64) -> bool {
        let pos = intent.wrapping_sub(1);
        let tail = self.header().tail.0.load(Ordering::Acquire);
        !is_before(pos, tail) || !is_before(self.seq(pos).load(Ordering::Acquire) & !SKIP, intent)
    }

    /// Whether a dead consumer's `intent` names a position that needs no recovery any more:
    /// released (its slot's `seq` reached the next lap), or never claimed.
    pub(crate) fn consumer_claim_finished(&self, intent: u64) -> bool {
        let pos = intent.wrapping_sub(1);
        let head = self.header().head.0.load(Ordering::Acquire);
        !is_before(pos, head)
            || !is_before(
                self.seq(pos).load(Ordering::Acquire) & !SKIP,
                pos.wrapping_add(self.capacity),
            )
    }

    /// Positions claimed by producers and not yet by consumers (an estimate under races).
    pub(crate) fn len_hint(&self) -> u64 {
        let head = self.header().head.0.load(Ordering::Relaxed);
        let tail = self.header().tail.0.load(Ordering::Relaxed);
        tail.wrapping_sub(head).min(self.capacity)
    }

    /// The recovery counters: (recovered, lost).
    pub(crate) fn counters(&self) -> (u64, u64) {
        let c = &self.header().counters.0;
        (
            c.recovered.load(Ordering::Relaxed),
            c.lost.load(Ordering::Relaxed),
        )
    }
}
