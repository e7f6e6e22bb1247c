//! The ring's memory layout: header, slots, and the geometry every handle keeps privately.
//!
//! Offsets from the ring's base, which is 128-byte aligned (see also `docs/channels.md`):
//!
//! ```text
//!    0  meta      magic, capacity, slot size/align, slots offset, message fingerprint (constant)
//!  128  tail      producer's index (written by the producer only)
//!  256  head      consumer's index (written by the consumer only)
//!  384  rx_wait   consumer's futex word: 1 while the consumer may be asleep
//!  512  tx_wait   producer's futex word: 1 while the producer may be asleep
//!  640  sender    the sending end's `Side` (below)
//! 1280  receiver  the receiving end's `Side`
//! 1920  padding   0 bytes for slots aligned to 128 or less, otherwise up to `slot_align - 128`
//! 1920+ slots     capacity x Slot<T> { value: T, stamp: u64 }, at `slots_offset` (meta word 4)
//! ```
//!
//! A `Side` (640 bytes, 536 used), offsets from its start:
//!
//! ```text
//!    0  state     u32: bit 0 closed, bits 1.. epoch (+1 per keyed open; futex word of
//!                 `wait_for_peer`)
//!    4  attached  u32: 1 once any process held the end
//!    8  untracked u32: 1 if a holder did not fit in the table
//!   12  (reserved u32)
//!   16  holders   32 x { pid u32 (bit 31: fork reservation by that pid), reserved u32,
//!                 start u64 (clock ticks since boot; ns since the epoch for a reservation) }
//!  528  role      u64: pid | start_time_low32 << 32 of the process using the end, 0 if none
//! ```
//!
//! `slots_offset` is the first offset from 1920 at which the slot's *address* is a multiple of
//! the slot's alignment. A mapping starts on a page boundary in every process and the ring sits
//! at the same offset in it, so for alignments up to [`MAX_MESSAGE_ALIGN`] (the smallest page
//! size) every process finds the slots aligned at the same offset; larger alignments are
//! refused. The segment reserves the worst-case padding, so its length depends only on the
//! capacity and the slot's size and alignment.
//!
//! Each hot word has its own 128-byte line (two 64-byte lines: adjacent-line prefetch pairs them)
//! so the producer's and the consumer's stores never contend for a line.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::liveness::Side;
use crate::{Error, Result, ShmSafe};

/// `b"SHMRING1"`: marks an initialised ring.
pub(crate) const RING_MAGIC: u64 = u64::from_le_bytes(*b"SHMRING1");

/// The largest capacity accepted (messages), after rounding up to a power of two.
pub(crate) const MAX_CAPACITY: u64 = 1 << 32;

/// The largest message alignment accepted: the smallest page size, the alignment every
/// process's mapping is guaranteed to have.
pub(crate) const MAX_MESSAGE_ALIGN: u64 = 4096;

/// The alignment of the ring's base (the segment's payload).
pub(crate) const BASE_ALIGN: u64 = 128;

/// Bytes of the ring header, where the slots (or their padding) start.
pub(crate) const HEADER_LEN: u64 = size_of::<RingHeader>() as u64;

/// One slot: the value and the stamp (`index + 1` of the message it holds, 0 before its first
/// use). Accessed only through raw pointers (`addr_of!`), never as a `&Slot<T>`.
///
/// The value comes first, so a tool that knows only the slot size and the message layout (the
/// `shmchan inspect` decoder) finds it at the start of each slot.
#[repr(C)]
pub(crate) struct Slot<T> {
    pub(crate) value: T,
    pub(crate) stamp: AtomicU64,
}

/// A value alone on a 128-byte line.
#[repr(C, align(128))]
pub(crate) struct CacheLine<T>(pub(crate) T);

/// The ring's constant description, written once by the creator.
#[repr(C)]
pub(crate) struct Meta {
    magic: AtomicU64,
    capacity: AtomicU64,
    slot_size: AtomicU64,
    slot_align: AtomicU64,
    slots_offset: AtomicU64,
    fingerprint: AtomicU64,
}

/// The ring header in shared memory. Only atomics: all-zero bytes are valid, and another
/// process may change any word at any time without making a reference to it unsound.
#[repr(C)]
pub(crate) struct RingHeader {
    pub(crate) meta: CacheLine<Meta>,
    pub(crate) tail: CacheLine<AtomicU64>,
    pub(crate) head: CacheLine<AtomicU64>,
    pub(crate) rx_wait: CacheLine<AtomicU32>,
    pub(crate) tx_wait: CacheLine<AtomicU32>,
    pub(crate) sender: CacheLine<Side>,
    pub(crate) receiver: CacheLine<Side>,
}

#[cfg(test)]
impl RingHeader {
    /// Plays a hostile process rewriting the capacity word.
    pub(crate) fn scribble_capacity(&self, capacity: u64) {
        self.meta.0.capacity.store(capacity, Ordering::Relaxed);
    }
}

/// The shape of a ring for message type `T`: computed by the creator, re-read and validated by
/// an opener, and kept privately by every handle (slot addresses come from this copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) capacity: u64,
    pub(crate) slot_size: u64,
    pub(crate) slot_align: u64,
    pub(crate) slots_offset: u64,
    pub(crate) fingerprint: u64,
}

/// An [`Error::Corrupted`] saying `what`.
pub(crate) fn corrupted(what: impl Into<String>) -> Error {
    Error::Corrupted { what: what.into() }
}

impl Geometry {
    /// The geometry for `requested` messages of type `T`, capacity rounded up to a power of two.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a capacity of 0, above [`MAX_CAPACITY`], or whose byte size
    /// overflows.
    pub(crate) fn for_type<T: ShmSafe>(requested: usize) -> Result<Geometry> {
        let invalid = |why: String| Error::InvalidArgument { what: why };
        if requested == 0 {
            return Err(invalid(
                "channel capacity 0: a channel needs at least one slot".into(),
            ));
        }
        let capacity = (requested as u64)
            .checked_next_power_of_two()
            .filter(|&c| c <= MAX_CAPACITY)
            .ok_or_else(|| {
                invalid(format!(
                    "channel capacity {requested} is above the limit of {MAX_CAPACITY} messages"
                ))
            })?;
        let slot_size = size_of::<Slot<T>>() as u64;
        let slot_align = align_of::<Slot<T>>() as u64;
        if slot_align > MAX_MESSAGE_ALIGN {
            return Err(invalid(format!(
                "message type {} is aligned to {slot_align} bytes; channel slots can be aligned \
                 to at most {MAX_MESSAGE_ALIGN} bytes (the page size): lower its `align`",
                T::LAYOUT.type_name
            )));
        }
        let g = Geometry {
            capacity,
            slot_size,
            slot_align,
            // Provisional: `placed_at` fixes it once the ring's address is known.
            slots_offset: HEADER_LEN,
            fingerprint: T::FINGERPRINT,
        };
        g.total_len().ok_or_else(|| {
            invalid(format!(
                "channel of {capacity} x {slot_size}-byte messages overflows the address space"
            ))
        })?;
        Ok(g)
    }

    /// The most padding between the header and the slots (the base is 128-aligned).
    fn max_padding(&self) -> u64 {
        self.slot_align.saturating_sub(BASE_ALIGN)
    }

    /// Bytes needed for the header, the worst-case padding and the slots, if that fits in an
    /// `isize`. Depends only on the capacity and the slot's size and alignment, not on where
    /// the ring is mapped.
    pub(crate) fn total_len(&self) -> Option<usize> {
        let len = self
            .capacity
            .checked_mul(self.slot_size)?
            .checked_add(HEADER_LEN)?
            .checked_add(self.max_padding())?;
        usize::try_from(len)
            .ok()
            .filter(|&l| l <= isize::MAX as usize)
    }

    /// This geometry with the slots placed for a ring at `base`: the first offset from the
    /// header's end at which the slots' address is aligned for them.
    pub(crate) fn placed_at(mut self, base: *const u8) -> Geometry {
        let addr = base as usize as u64;
        let misalign = addr.wrapping_add(HEADER_LEN) % self.slot_align;
        let padding = if misalign == 0 {
            0
        } else {
            self.slot_align - misalign
        };
        self.slots_offset = HEADER_LEN + padding;
        self
    }

    /// Writes a fresh ring header (indices 0, no waiter, no holder) at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be 128-byte aligned and valid for writes of [`Self::total_len`] bytes, `self`
    /// must be [`placed_at`](Self::placed_at) `base`, and no other process may use the ring yet.
    pub(crate) unsafe fn init(&self, base: *mut u8) {
        // SAFETY: the caller guarantees `base` is aligned and writable for the header, which is
        // smaller than `total_len`; all-zero bytes are a valid `RingHeader` (only atomics).
        unsafe { std::ptr::write_bytes(base, 0, size_of::<RingHeader>()) };
        // SAFETY: just initialised, aligned, and not yet shared.
        let meta = unsafe { &(*(base as *const RingHeader)).meta.0 };
        meta.capacity.store(self.capacity, Ordering::Relaxed);
        meta.slot_size.store(self.slot_size, Ordering::Relaxed);
        meta.slot_align.store(self.slot_align, Ordering::Relaxed);
        meta.slots_offset
            .store(self.slots_offset, Ordering::Relaxed);
        meta.fingerprint.store(self.fingerprint, Ordering::Relaxed);
        // Release: an opener that sees the magic sees the rest (the segment's READY state
        // already orders this; the ring does not rely on it).
        meta.magic.store(RING_MAGIC, Ordering::Release);
    }

    /// Reads the geometry stored in `header` (the ring at `base`) and checks it against the one
    /// `T` needs and the `len` bytes that are mapped.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if any word differs from what `T`, `base` and `len` imply.
    pub(crate) fn validate<T: ShmSafe>(
        header: &RingHeader,
        base: *const u8,
        len: usize,
    ) -> Result<Geometry> {
        let meta = &header.meta.0;
        if meta.magic.load(Ordering::Acquire) != RING_MAGIC {
            return Err(corrupted("the ring header has no magic number"));
        }
        let found = Geometry {
            capacity: meta.capacity.load(Ordering::Relaxed),
            slot_size: meta.slot_size.load(Ordering::Relaxed),
            slot_align: meta.slot_align.load(Ordering::Relaxed),
            slots_offset: meta.slots_offset.load(Ordering::Relaxed),
            fingerprint: meta.fingerprint.load(Ordering::Relaxed),
        };
        if found.capacity == 0 || !found.capacity.is_power_of_two() || found.capacity > MAX_CAPACITY
        {
            return Err(corrupted(format!(
                "ring capacity {} is not a power of two in 1..={MAX_CAPACITY}",
                found.capacity
            )));
        }
        let capacity = usize::try_from(found.capacity)
            .map_err(|_| corrupted("ring capacity does not fit in this process's address space"))?;
        let expected = Geometry::for_type::<T>(capacity)?.placed_at(base);
        if found != expected {
            return Err(corrupted(format!(
                "ring geometry {found:?} does not match the message type's {expected:?}"
            )));
        }
        match found.total_len() {
            Some(need) if need <= len => Ok(found),
            _ => Err(corrupted(format!(
                "ring of {} slots needs more than the {len} mapped bytes",
                found.capacity
            ))),
        }
    }

    /// Whether the constant words of `header` still hold this geometry (checked on slow paths:
    /// another process rewriting them is corruption).
    pub(crate) fn check_unchanged(&self, header: &RingHeader) -> Result<()> {
        let meta = &header.meta.0;
        let same = meta.magic.load(Ordering::Relaxed) == RING_MAGIC
            && meta.capacity.load(Ordering::Relaxed) == self.capacity
            && meta.slot_size.load(Ordering::Relaxed) == self.slot_size
            && meta.slot_align.load(Ordering::Relaxed) == self.slot_align
            && meta.slots_offset.load(Ordering::Relaxed) == self.slots_offset
            && meta.fingerprint.load(Ordering::Relaxed) == self.fingerprint;
        if same {
            Ok(())
        } else {
            Err(corrupted(
                "the ring's capacity, slot size, offsets or magic changed after it was opened",
            ))
        }
    }
}
