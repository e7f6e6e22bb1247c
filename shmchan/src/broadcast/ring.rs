//! The ring of stamped slots, over raw memory laid out as in [`super::layout`]: the
//! publisher's write, a subscriber's checked copy, and the publisher's view of the cursors.
//!
//! **Writing** position `p` (publisher only): `stamp = (p + 1) | WRITING` (Relaxed), a Release
//! fence, the message as atomic words, `stamp = p + 1` (Release), then `tail = p + 1`
//! (Release). **Reading** position `c` (a subscriber, after seeing `tail > c` with Acquire):
//! `s1 = stamp` (Acquire), the words (Relaxed atomic loads), an Acquire fence, `s2 = stamp`.
//! The copy is the message `c` iff `s1 == s2 == c + 1`: the stamp of a later lap differs, and
//! a write that overlapped the copy changed the stamp before its first word store and its
//! Release fence (the seqlock argument). Every access is atomic, so an overlap yields a
//! rejected copy, never a data race; a rejected copy is a lap, reported as `Lagged`, never
//! returned.
//!
//! **Cursors.** In `Block` mode the publisher may write position `p` only if every joined,
//! live subscriber's cursor `c` has `p < c + capacity` (the slot of `p` holds `p - capacity`,
//! already read). A subscriber joining stores its cursor, issues a SeqCst fence, and re-reads
//! `tail`; the publisher issues a SeqCst fence before scanning cursors. So either the scan
//! sees the joiner, or the joiner's re-read sees the tail `S` the publisher had when it
//! scanned; the publisher then only overwrites positions below `S`, and the joiner starts at
//! the re-read tail, `>= S`.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::layout::{BroadcastHeader, Geometry};
use super::memory::ChannelMemory;
use crate::ShmSafe;
use crate::format::broadcast::{
    PUBLISHER_ENTRIES, PUBLISHER_OFFSET, SLOT_VALUE_OFFSET, SUBSCRIBERS_OFFSET, WRITING,
};
use crate::mpmc::holders::Table;
use crate::mpmc::layout::Entry;
use crate::sync::words::{load_words, load_words_into, store_words};

/// What a subscriber's copy of one slot found.
pub(crate) enum Read<T> {
    /// The message at the position asked for.
    Message(T),
    /// The publisher had overwritten (or was overwriting) the slot: a later lap.
    Lapped,
    /// The stamp names an earlier position although `tail` says it was published: impossible
    /// on a sound channel.
    Stale,
}

/// A handle's view of one channel: the mapping, kept alive by the `Arc`, and the private
/// geometry every address is computed from.
pub(crate) struct Ring<T: ShmSafe> {
    geometry: Geometry,
    mask: u64,
    publisher: Table,
    subscribers: Table,
    memory: Arc<ChannelMemory>,
    _marker: PhantomData<T>,
}

impl<T: ShmSafe> Ring<T> {
    /// The mapping, for the async notifier to keep while a future waits on its words.
    #[cfg(feature = "async")]
    pub(crate) fn memory(&self) -> &Arc<ChannelMemory> {
        &self.memory
    }

    /// A view of `memory`, whose channel was initialised or validated for `geometry`.
    pub(crate) fn new(memory: Arc<ChannelMemory>, geometry: Geometry) -> Ring<T> {
        let base = memory.base();
        let header = memory.header();
        let counters = &header.counters.0;
        // SAFETY: the `PUBLISHER_ENTRIES` publisher entries and `max_subscribers` subscriber entries lie between the
        // header and `slots_offset`, inside the mapping that `memory` keeps alive for as long
        // as this ring (and the tables copied from it: every holder is dropped before its
        // ring, by field order) is used; so does the probe, inside `memory`. Entries are only atomics, 8-aligned.
        let (publisher, subscribers) = unsafe {
            (
                Table::new(
                    base.add(PUBLISHER_OFFSET as usize).cast::<Entry>(),
                    PUBLISHER_ENTRIES as usize,
                    &counters.publisher_attached,
                    &counters.publisher_departed,
                    memory.probe(),
                )
                .with_successors(),
                Table::new(
                    base.add(SUBSCRIBERS_OFFSET as usize).cast::<Entry>(),
                    geometry.max_subscribers as usize,
                    &counters.subscribers_attached,
                    &counters.subscribers_departed,
                    memory.probe(),
                ),
            )
        };
        Ring {
            geometry,
            mask: geometry.capacity - 1,
            publisher,
            subscribers,
            memory,
            _marker: PhantomData,
        }
    }

    /// Another view of the same mapping.
    pub(crate) fn duplicate(&self) -> Ring<T> {
        Ring::new(Arc::clone(&self.memory), self.geometry)
    }

    pub(crate) fn header(&self) -> &BroadcastHeader {
        self.memory.header()
    }

    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.geometry.capacity
    }

    pub(crate) fn publisher_table(&self) -> &Table {
        &self.publisher
    }

    pub(crate) fn subscriber_table(&self) -> &Table {
        &self.subscribers
    }

    /// The publisher's cursor (Acquire: the slots below it are written).
    #[inline]
    pub(crate) fn tail(&self) -> u64 {
        self.header().tail.0.load(Ordering::Acquire)
    }

    /// The stamp and the message words of the slot of `pos` (in bounds: `pos & mask <
    /// capacity`, and the mapping holds `capacity` slots by the private geometry).
    #[inline]
    fn slot(&self, pos: u64) -> (&AtomicU64, *mut u64) {
        let at = self.geometry.slots_offset + (pos & self.mask) * self.geometry.slot_size;
        // SAFETY: in bounds as above; slots are 8-aligned (128-aligned base, offsets and slot
        // sizes multiples of 8) and only accessed atomically by every process.
        unsafe {
            let p = self.memory.base().add(at as usize);
            (
                AtomicU64::from_ptr(p.cast()),
                p.add(SLOT_VALUE_OFFSET as usize).cast(),
            )
        }
    }

    /// The stamp and words of a slot, for tests that rewrite them as another process could.
    #[cfg(test)]
    pub(crate) fn slot_for_tests(&self, pos: u64) -> (&AtomicU64, *mut u64) {
        self.slot(pos)
    }

    /// Writes `value` as position `pos` and publishes it (publisher only).
    #[inline]
    pub(crate) fn write(&self, pos: u64, value: &T) {
        let (stamp, words) = self.slot(pos);
        stamp.store(pos.wrapping_add(1) | WRITING, Ordering::Relaxed);
        fence(Ordering::Release);
        // SAFETY: the slot's words lie in the mapping (see `slot`) and every access to them
        // is atomic.
        unsafe { store_words(words, value) };
        stamp.store(pos.wrapping_add(1) & !WRITING, Ordering::Release);
        self.header()
            .tail
            .0
            .store(pos.wrapping_add(1), Ordering::Release);
    }

    /// The message of the slot of `pos`, as a typed pointer (8-aligned: for a `T` aligned to
    /// at most 8, aligned for `T`).
    #[inline]
    pub(crate) fn value_ptr(&self, pos: u64) -> *mut T {
        self.slot(pos).1.cast()
    }

    /// Marks the slot of `pos` as being written as position `pos` (a loan of it, publisher
    /// only): a subscriber that copies it meanwhile rejects its copy. The stores that follow
    /// are ordered after the mark by the Release fence, as in `write`.
    #[inline]
    pub(crate) fn begin_write(&self, pos: u64) {
        let (stamp, _) = self.slot(pos);
        stamp.store(pos.wrapping_add(1) | WRITING, Ordering::Relaxed);
        fence(Ordering::Release);
    }

    /// Stores `value` into the slot of `pos` as atomic words, without touching its stamp
    /// (between [`begin_write`](Self::begin_write) and [`commit`](Self::commit)).
    #[inline]
    pub(crate) fn store_value(&self, pos: u64, value: &T) {
        // SAFETY: the slot's words lie in the mapping (see `slot`) and every access to them
        // is atomic.
        unsafe { store_words(self.slot(pos).1, value) };
    }

    /// Copies the message of the slot of `pos` into `out` as atomic words, without checking
    /// its stamp (a slot the caller knows is not being written, or checks afterwards).
    #[inline]
    pub(crate) fn load_value_into(&self, pos: u64, out: &mut MaybeUninit<T>) {
        // SAFETY: as in `store_value`.
        unsafe { load_words_into(self.slot(pos).1, out) };
    }

    /// Publishes position `pos`, written since [`begin_write`](Self::begin_write): the stamp,
    /// then the cursor, as `write` ends.
    #[inline]
    pub(crate) fn commit(&self, pos: u64) {
        let (stamp, _) = self.slot(pos);
        stamp.store(pos.wrapping_add(1) & !WRITING, Ordering::Release);
        self.header()
            .tail
            .0
            .store(pos.wrapping_add(1), Ordering::Release);
    }

    /// What the stamp of the slot of `pos` says now (Acquire: if `Message`, the message's
    /// words written before it are visible), without copying the message.
    #[inline]
    pub(crate) fn stamp_check(&self, pos: u64) -> Read<()> {
        let (stamp, _) = self.slot(pos);
        let want = pos.wrapping_add(1) & !WRITING;
        let s = stamp.load(Ordering::Acquire);
        if s == want {
            Read::Message(())
        } else if (s & !WRITING) > want || s & WRITING != 0 {
            Read::Lapped
        } else {
            Read::Stale
        }
    }

    /// Copies position `pos` into a new heap allocation, checking its stamp before and after
    /// (no copy of the message on the stack, whatever its size).
    pub(crate) fn read_boxed(&self, pos: u64) -> Read<Box<T>> {
        match self.stamp_check(pos) {
            Read::Message(()) => {}
            Read::Lapped => return Read::Lapped,
            Read::Stale => return Read::Stale,
        }
        let mut out = Box::<T>::new_uninit();
        self.load_value_into(pos, &mut out);
        fence(Ordering::Acquire);
        if self.slot(pos).0.load(Ordering::Relaxed) != pos.wrapping_add(1) & !WRITING {
            return Read::Lapped;
        }
        // SAFETY: `load_value_into` initialised every byte, and any bits are a valid `T`
        // (`ShmSafe`).
        Read::Message(unsafe { out.assume_init() })
    }

    /// Copies position `pos` out, checking its stamp before and after.
    #[inline]
    pub(crate) fn read(&self, pos: u64) -> Read<T> {
        let (stamp, words) = self.slot(pos);
        let want = pos.wrapping_add(1) & !WRITING;
        let s1 = stamp.load(Ordering::Acquire);
        if s1 != want {
            return if (s1 & !WRITING) > want || s1 & WRITING != 0 {
                Read::Lapped
            } else {
                Read::Stale
            };
        }
        // SAFETY: as in `write`.
        let value = unsafe { load_words::<T>(words) };
        fence(Ordering::Acquire);
        if stamp.load(Ordering::Relaxed) == s1 {
            Read::Message(value)
        } else {
            Read::Lapped
        }
    }

    /// The lowest cursor of the joined subscribers that count (`counts(index, owner)`), capped
    /// at `tail`; `tail` when none does. A SeqCst fence first (see the module docs).
    pub(crate) fn slowest_cursor(&self, tail: u64, counts: impl Fn(usize, u64) -> bool) -> u64 {
        fence(Ordering::SeqCst);
        let mut min = tail;
        for (i, e) in self.subscribers.entries().iter().enumerate() {
            let owner = e.owner.load(Ordering::Acquire);
            if owner == 0 {
                continue;
            }
            let Some(c) = e.inherited.load(Ordering::Acquire).checked_sub(1) else {
                continue;
            };
            // A cursor ahead of the publisher, or more than a lap behind it, cannot be a live
            // subscriber's (it would have been told it lagged): a hostile or stale word.
            if c >= min || tail.wrapping_sub(c) > self.capacity() {
                continue;
            }
            if counts(i, owner) {
                min = c;
            }
        }
        min
    }
}
