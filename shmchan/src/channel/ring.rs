//! The single-producer single-consumer ring algorithm, over raw memory laid out as in
//! [`super::layout`].
//!
//! Indices are free-running `u64`s; slot `i` lives at `i & mask`. All index arithmetic wraps
//! (never panics, whatever another process wrote), and an end that attaches accepts only
//! indices below [`INDEX_LIMIT`] (2^63: 292 years at a billion messages a second), so that
//! no index comes near `u64::MAX`, whose stamp `index + 1` would read as a never-used slot.
//! The producer owns slots `tail..head + cap`, the consumer slots `head..tail`: ownership passes
//! with the Release store of an index and the Acquire load that observes it, which is why slots
//! are written and read with plain copies (see [`Producer::try_push`]). Each side keeps a private
//! copy of the other's index and reads the shared one only when the copy says full (producer)
//! or empty (consumer).
//!
//! Each slot also carries a *stamp*: the producer stores `index + 1` (Release) after writing the
//! value. A consumer whose cached `tail` says empty first looks at the stamp of slot `head`: if
//! it reads `head + 1` (Acquire) the value is complete and on the same cache line, so a message
//! crosses between cores as one line transfer instead of two (`tail`'s line, then the slot's).
//! Stamps of the previous lap differ by `cap`, so a stale slot never looks ready. Only when the
//! stamp is not ready does the consumer read (and validate) `tail`. A single `push` stores the
//! stamp *before* `tail`: the stamp's line is the one a waiting consumer polls, and x86 commits
//! stores in order, so a `tail` line the consumer happened to read cannot delay the message. A
//! consumer may therefore take message `t` before `tail` says `t + 1`: `tail` may lag `head` by
//! one, which validation accepts. A batch stores `tail` once, then the stamps.
//!
//! Every index read from shared memory is validated: `tail - head` must lie in `0..=cap`, and a
//! side's own shared index must equal its private copy (otherwise a second producer or consumer,
//! or a scribbler, moved it). A side takes its private copies from the shared indices when it
//! claims its role ([`Producer::resync`], [`Consumer::resync`]), validating them. Slot addresses are computed from the *private* capacity, so a
//! corrupted header can produce an error or a wrong message, never an out-of-bounds access.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;

use super::layout::{Geometry, RingHeader, Slot, corrupted};
use crate::{Error, Result, ShmSafe};

/// Why a push did not happen.
#[derive(Debug)]
pub(crate) enum PushError<T> {
    /// No free slot; the message is handed back.
    Full(T),
    /// An impossible index was read.
    Corrupted(Error),
}

/// The producing half: a private copy of `tail` (its own index) and of the last `head` seen.
pub(crate) struct Producer<T> {
    header: *const RingHeader,
    slots: *mut Slot<T>,
    mask: u64,
    capacity: u64,
    tail: Cell<u64>,
    head_cache: Cell<u64>,
    _marker: PhantomData<T>,
}

/// The consuming half: a private copy of `head` (its own index) and of the last `tail` seen.
pub(crate) struct Consumer<T> {
    header: *const RingHeader,
    slots: *mut Slot<T>,
    mask: u64,
    capacity: u64,
    head: Cell<u64>,
    tail_cache: Cell<u64>,
    _marker: PhantomData<T>,
}

/// Indices an attaching end accepts are below this.
pub(crate) const INDEX_LIMIT: u64 = 1 << 63;

/// The indices an end finds when it attaches, validated: both below [`INDEX_LIMIT`], and
/// `tail - head` in `0..=cap`, or `head == tail + 1` (the consumer took message `tail` by its
/// stamp before the producer published `tail + 1`). Returns `(tail, head)`.
fn attach_indices(header: &RingHeader, capacity: u64) -> Result<(u64, u64)> {
    // Acquire: the previous holder's slot accesses happen before ours.
    let tail = header.tail.0.load(Ordering::Acquire);
    let head = header.head.0.load(Ordering::Acquire);
    if tail >= INDEX_LIMIT || head >= INDEX_LIMIT {
        return Err(corrupted(format!(
            "ring indices tail={tail} head={head}: at least one is at or above 2^63, which no ring reaches"
        )));
    }
    if head != tail.wrapping_add(1) {
        check_distance(tail, head, capacity)?;
    }
    Ok((tail, head))
}

/// Checks `0 <= tail - head <= cap` and returns `tail - head`.
fn check_distance(tail: u64, head: u64, capacity: u64) -> Result<u64> {
    let used = tail.wrapping_sub(head);
    if used > capacity {
        Err(corrupted(format!(
            "ring indices tail={tail} head={head} are {used} apart, more than the capacity {capacity}"
        )))
    } else {
        Ok(used)
    }
}

impl<T: ShmSafe> Producer<T> {
    /// The producing half of the ring at `base`.
    ///
    /// # Safety
    ///
    /// `base` must point to a ring initialised for `geometry` (with [`Geometry::init`] or checked
    /// with [`Geometry::validate`]), mapped for [`Geometry::total_len`] bytes for as long as the
    /// result lives, and no other producer may use the ring meanwhile.
    pub(crate) unsafe fn new(base: *mut u8, geometry: &Geometry) -> Producer<T> {
        let header = base as *const RingHeader;
        // SAFETY: the caller guarantees `base` holds a ring header.
        let tail = unsafe { &*header }.tail.0.load(Ordering::Relaxed);
        // SAFETY: `slots_offset` is within the mapped length (validated geometry).
        let slots = unsafe { base.add(geometry.slots_offset as usize) } as *mut Slot<T>;
        Producer {
            header,
            slots,
            mask: geometry.capacity - 1,
            capacity: geometry.capacity,
            tail: Cell::new(tail),
            head_cache: Cell::new(tail),
            _marker: PhantomData,
        }
    }

    pub(crate) fn header(&self) -> &RingHeader {
        // SAFETY: `new`'s contract keeps the header mapped while `self` lives.
        unsafe { &*self.header }
    }

    /// Takes the private copies from the shared indices (validated), after claiming the
    /// producer role. If the previous producer died between stamping a message and publishing
    /// `tail` (the consumer took it by its stamp: `head == tail + 1`), `tail` catches up.
    pub(crate) fn resync(&self) -> Result<()> {
        let (mut tail, head) = attach_indices(self.header(), self.capacity)?;
        if head == tail.wrapping_add(1) {
            tail = head;
            self.header().tail.0.store(tail, Ordering::Release);
        }
        self.tail.set(tail);
        self.head_cache.set(head);
        Ok(())
    }

    /// Checks that nobody else moved `tail`.
    #[inline]
    fn own_index(&self) -> Result<u64> {
        let tail = self.tail.get();
        let shared = self.header().tail.0.load(Ordering::Relaxed);
        if shared != tail {
            return Err(corrupted(format!(
                "the ring's tail moved to {shared} behind the sender's back (it wrote {tail}): a second sender or a scribbler"
            )));
        }
        Ok(tail)
    }

    /// Free slots, refreshing the cached `head` when the cache says fewer than `want` are free.
    #[inline]
    fn free_slots(&self, tail: u64, want: u64) -> Result<u64> {
        // `tail - head_cache <= cap` holds (both private, `head_cache` validated).
        let free = self
            .capacity
            .saturating_sub(tail.wrapping_sub(self.head_cache.get()));
        if free >= want {
            return Ok(free);
        }
        // Acquire: the consumer's reads of the slots it released happen before our writes.
        let head = self.header().head.0.load(Ordering::Acquire);
        let used = check_distance(tail, head, self.capacity)?;
        self.head_cache.set(head);
        Ok(self.capacity.saturating_sub(used))
    }

    /// Pushes one message, or hands it back if the ring is full. Returns the message's index.
    #[inline]
    pub(crate) fn try_push(&self, value: T) -> Result<u64, PushError<T>> {
        let tail = self.own_index().map_err(PushError::Corrupted)?;
        if self.free_slots(tail, 1).map_err(PushError::Corrupted)? == 0 {
            return Err(PushError::Full(value));
        }
        // SAFETY: the slot is ours, see `write_slot`.
        unsafe { self.write_slot(tail, value) };
        self.stamp(tail);
        self.publish(tail.wrapping_add(1));
        Ok(tail)
    }

    /// Reserves the next free slot for a loan: its index (the current `tail`), or `None` if the
    /// ring is full. Nothing changes in shared memory: until [`Self::commit`] the slot is the
    /// producer's (`tail - head < cap`), and a loan given up leaves the ring as it was.
    #[inline]
    pub(crate) fn try_reserve(&self) -> Result<Option<u64>> {
        let tail = self.own_index()?;
        if self.free_slots(tail, 1)? == 0 {
            return Ok(None);
        }
        Ok(Some(tail))
    }

    /// The value of the slot of `index`, for a loan's views. In bounds (`index & mask <
    /// capacity`, private geometry); the pointer is only dereferenced by the loan, through
    /// raw-pointer views, while the slot is the producer's.
    #[inline]
    pub(crate) fn value_ptr(&self, index: u64) -> *mut T {
        let slot = self.slots.wrapping_add((index & self.mask) as usize);
        // SAFETY: `slot` is in bounds of the mapping (above); `addr_of_mut!` forms no reference.
        unsafe { std::ptr::addr_of_mut!((*slot).value) }
    }

    /// Publishes the slot reserved by [`Self::try_reserve`] as message `index` (stamp, then
    /// `tail`, as [`Self::try_push`] does), after the loan wrote it in place.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the shared `tail` is no longer `index` (a second producer or a
    /// scribbler moved it): nothing is published then.
    #[inline]
    pub(crate) fn commit(&self, index: u64) -> Result<()> {
        let tail = self.own_index()?;
        if tail != index {
            return Err(corrupted(format!(
                "the sender's loaned slot is message {index} but its tail is now {tail}"
            )));
        }
        // The slot's writes (the loan's views, program order before this call) happen before
        // the Release stores below, exactly as `write_slot` in `try_push`.
        self.stamp(index);
        self.publish(index.wrapping_add(1));
        Ok(())
    }

    /// Pushes as many of `values` as fit (possibly none), with one `tail` update. Returns how
    /// many, and the index of the first.
    pub(crate) fn try_push_slice(&self, values: &[T]) -> Result<(usize, u64)> {
        let tail = self.own_index()?;
        let free = self.free_slots(tail, values.len() as u64)?;
        let n = (values.len() as u64).min(free) as usize;
        for (i, v) in values[..n].iter().enumerate() {
            let index = tail.wrapping_add(i as u64);
            // SAFETY: owned by the producer since `index - head < cap` for every
            // `index < tail + free`.
            unsafe { self.write_slot(index, *v) };
        }
        if n > 0 {
            self.publish(tail.wrapping_add(n as u64));
            for i in 0..n as u64 {
                self.stamp(tail.wrapping_add(i));
            }
        }
        Ok((n, tail))
    }

    /// Writes `value` into the slot of `index`.
    ///
    /// # Safety
    ///
    /// The slot must be the producer's: `index - head < cap` for a `head` observed with Acquire.
    /// The consumer has then released it (Release store of `head`) and will not read the value
    /// before our Release store of `tail` (and of its stamp, after that). A plain write is therefore race-free
    /// under the protocol; a peer that breaks the protocol can at worst read a torn message,
    /// which is still a valid `T` (`ShmSafe`: every bit pattern is valid).
    #[inline]
    unsafe fn write_slot(&self, index: u64, value: T) {
        // In bounds: `index & mask < capacity`, and the mapping holds `capacity` slots (private
        // geometry, validated against the mapped length).
        let slot = self.slots.wrapping_add((index & self.mask) as usize);
        // SAFETY: in bounds and owned (caller); `addr_of_mut!` forms no reference to the slot.
        unsafe { std::ptr::addr_of_mut!((*slot).value).write(value) };
    }

    /// Marks the slot of `index` as holding message `index` (its value written).
    #[inline]
    fn stamp(&self, index: u64) {
        let slot = self.slots.wrapping_add((index & self.mask) as usize);
        // SAFETY: in bounds (mask, validated geometry); the stamp is an atomic, so a shared
        // reference to it is sound.
        let stamp = unsafe { &*std::ptr::addr_of!((*slot).stamp) };
        // Release: the value write happens before a consumer's Acquire load that reads this
        // stamp.
        stamp.store(index.wrapping_add(1), Ordering::Release);
    }

    /// Whether a free slot is visible now (a cheap probe for spinning; no validation).
    #[inline]
    pub(crate) fn probe_space(&self) -> bool {
        let head = self.header().head.0.load(Ordering::Relaxed);
        self.tail.get().wrapping_sub(head) < self.capacity
    }

    #[inline]
    fn publish(&self, tail: u64) {
        // Release: the slot writes above happen before the consumer's Acquire load of `tail`.
        self.header().tail.0.store(tail, Ordering::Release);
        self.tail.set(tail);
    }

    /// Messages in the ring as last seen by the producer (an upper bound).
    pub(crate) fn len_hint(&self) -> u64 {
        self.tail.get().wrapping_sub(self.head_cache.get())
    }

    /// The capacity in messages.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

impl<T: ShmSafe> Consumer<T> {
    /// The consuming half of the ring at `base`.
    ///
    /// # Safety
    ///
    /// As for [`Producer::new`], with "consumer" for "producer".
    pub(crate) unsafe fn new(base: *mut u8, geometry: &Geometry) -> Consumer<T> {
        let header = base as *const RingHeader;
        // SAFETY: the caller guarantees `base` holds a ring header.
        let head = unsafe { &*header }.head.0.load(Ordering::Relaxed);
        // SAFETY: `slots_offset` is within the mapped length (validated geometry).
        let slots = unsafe { base.add(geometry.slots_offset as usize) } as *mut Slot<T>;
        Consumer {
            header,
            slots,
            mask: geometry.capacity - 1,
            capacity: geometry.capacity,
            head: Cell::new(head),
            tail_cache: Cell::new(head),
            _marker: PhantomData,
        }
    }

    pub(crate) fn header(&self) -> &RingHeader {
        // SAFETY: `new`'s contract keeps the header mapped while `self` lives.
        unsafe { &*self.header }
    }

    /// Takes the private copies from the shared indices (validated), after claiming the
    /// consumer role.
    pub(crate) fn resync(&self) -> Result<()> {
        let (_, head) = attach_indices(self.header(), self.capacity)?;
        self.head.set(head);
        // Refreshed (and validated) on the next look at an empty cache.
        self.tail_cache.set(head);
        Ok(())
    }

    #[inline]
    fn own_index(&self) -> Result<u64> {
        let head = self.head.get();
        let shared = self.header().head.0.load(Ordering::Relaxed);
        if shared != head {
            return Err(corrupted(format!(
                "the ring's head moved to {shared} behind the receiver's back (it wrote {head}): a second receiver or a scribbler"
            )));
        }
        Ok(head)
    }

    /// Messages available, refreshing the cached `tail` when the cache says fewer than `want`.
    #[inline]
    fn available(&self, head: u64, want: u64) -> Result<u64> {
        let avail = self.tail_cache.get().wrapping_sub(head);
        if avail >= want {
            return Ok(avail);
        }
        // Acquire: the producer's slot writes happen before our reads.
        let tail = self.header().tail.0.load(Ordering::Acquire);
        if tail.wrapping_add(1) == head {
            // We took message `tail` by its stamp before the producer published `tail + 1`.
            return Ok(0);
        }
        let avail = check_distance(tail, head, self.capacity)?;
        self.tail_cache.set(tail);
        Ok(avail)
    }

    /// The slot of `index` (in bounds: `index & mask < capacity`).
    #[inline]
    fn slot(&self, index: u64) -> *mut Slot<T> {
        self.slots.wrapping_add((index & self.mask) as usize)
    }

    /// Whether the slot of `index` holds message `index` (Acquire on its stamp).
    #[inline]
    fn stamped(&self, index: u64) -> bool {
        // SAFETY: in bounds (mask, validated geometry); the stamp is an atomic.
        let stamp = unsafe { &*std::ptr::addr_of!((*self.slot(index)).stamp) };
        stamp.load(Ordering::Acquire) == index.wrapping_add(1)
    }

    /// Whether a message is visible now (a cheap probe for spinning; no validation).
    #[inline]
    pub(crate) fn probe_message(&self) -> bool {
        let head = self.head.get();
        self.tail_cache.get() != head || self.stamped(head)
    }

    /// Reads the value of the slot of `index`.
    ///
    /// # Safety
    ///
    /// The slot must be the consumer's: `index < tail` for a `tail` observed with Acquire, or
    /// its stamp observed equal to `index + 1` with Acquire. Either ordered the producer's write
    /// before this read, and the producer will not write the slot again before our Release
    /// store of `head`. `T` is `ShmSafe`, so even bytes written by a misbehaving peer form a
    /// valid `T`.
    #[inline]
    unsafe fn read_slot(&self, index: u64) -> T {
        // SAFETY: in bounds and owned (caller); `addr_of!` forms no reference to the slot.
        unsafe { std::ptr::addr_of!((*self.slot(index)).value).read() }
    }

    /// The index of the next message if one is ready (`head`), or `None` if the ring is
    /// empty. Nothing changes in shared memory: the slot stays the consumer's until
    /// [`Self::release_one`] (or a pop) moves `head` past it.
    #[inline]
    pub(crate) fn try_peek(&self) -> Result<Option<u64>> {
        let head = self.own_index()?;
        // Cached `tail` says empty: the slot's stamp is the cheap check (one line), `tail` the
        // validated one.
        if self.tail_cache.get() == head {
            if self.stamped(head) {
                // Keep the invariant `tail_cache >= head` for the next pop.
                self.tail_cache.set(head.wrapping_add(1));
            } else if self.available(head, 1)? == 0 {
                return Ok(None);
            }
        }
        Ok(Some(head))
    }

    /// Pops one message, or `None` if the ring is empty.
    #[inline]
    pub(crate) fn try_pop(&self) -> Result<Option<T>> {
        let Some(head) = self.try_peek()? else {
            return Ok(None);
        };
        // SAFETY: ours: the cached or freshly loaded `tail` (Acquire) is beyond `head`, or the
        // stamp said so (Acquire).
        let value = unsafe { self.read_slot(head) };
        self.release(head.wrapping_add(1));
        Ok(Some(value))
    }

    /// The value of the slot of `index`, for a received guard's view. In bounds (mask, private
    /// geometry); dereferenced only through raw-pointer views while the slot is the consumer's.
    #[inline]
    pub(crate) fn value_ptr(&self, index: u64) -> *const T {
        // SAFETY: `slot` is in bounds (mask); `addr_of!` forms no reference.
        unsafe { std::ptr::addr_of!((*self.slot(index)).value) }
    }

    /// Copies the value of message `index`.
    ///
    /// # Safety
    ///
    /// `index` was returned by [`Self::try_peek`] and not released since: the slot is ours.
    #[inline]
    pub(crate) unsafe fn read_peeked(&self, index: u64) -> T {
        // SAFETY: forwarded: the slot is the consumer's (see `read_slot`).
        unsafe { self.read_slot(index) }
    }

    /// Releases message `index` (peeked with [`Self::try_peek`]) to the producer. Returns
    /// `false`, releasing nothing, if the shared `head` is no longer `index` (a second consumer
    /// or a scribbler moved it; the next operation reports it).
    #[inline]
    pub(crate) fn release_one(&self, index: u64) -> bool {
        match self.own_index() {
            Ok(head) if head == index => {
                self.release(index.wrapping_add(1));
                true
            }
            _ => false,
        }
    }

    /// Pops up to `max` messages into `out`, with one `head` update; returns how many.
    pub(crate) fn try_pop_into(&self, out: &mut Vec<T>, max: usize) -> Result<usize> {
        let head = self.own_index()?;
        let avail = self.available(head, max as u64)?;
        let n = avail.min(max as u64) as usize;
        out.reserve(n);
        for i in 0..n as u64 {
            let index = head.wrapping_add(i);
            // SAFETY: ours: `index < head + avail <= tail`, `tail` loaded with Acquire.
            out.push(unsafe { self.read_slot(index) });
        }
        if n > 0 {
            self.release(head.wrapping_add(n as u64));
        }
        Ok(n)
    }

    #[inline]
    fn release(&self, head: u64) {
        // Release: our slot reads happen before the producer's Acquire load of `head` lets it
        // overwrite them.
        self.header().head.0.store(head, Ordering::Release);
        self.head.set(head);
    }

    /// Reads the shared `tail` and returns how many messages are ready (validated).
    pub(crate) fn ready(&self) -> Result<u64> {
        let head = self.own_index()?;
        self.available(head, u64::MAX)
    }

    /// The capacity in messages.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
