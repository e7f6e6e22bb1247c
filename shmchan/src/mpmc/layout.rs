//! The queue's memory layout as atomics (the byte-level description, with its offsets pinned,
//! is `crate::format::mpmc`), and the geometry every handle keeps privately.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::channel::layout::CacheLine;
use crate::format::mpmc::{
    HolderEntry, MAX_CAPACITY, MAX_HOLDERS_LIMIT, MPMC_MAGIC, SLOT_VALUE_OFFSET,
};
use crate::sync::words::words_for;
use crate::{Error, Result, ShmSafe};

/// Holder entries per side when the creator does not say.
pub(crate) const DEFAULT_MAX_HOLDERS: usize = 32;

/// The queue's constant description (see `format::mpmc::MpmcMeta`).
#[repr(C)]
pub(crate) struct Meta {
    pub(crate) magic: AtomicU64,
    pub(crate) capacity: AtomicU64,
    pub(crate) slot_size: AtomicU64,
    pub(crate) slots_offset: AtomicU64,
    pub(crate) fingerprint: AtomicU64,
    pub(crate) max_holders: AtomicU64,
    pub(crate) producers_offset: AtomicU64,
    pub(crate) consumers_offset: AtomicU64,
}

/// Recovery counters and per-side flags (see `format::mpmc::MpmcCounters`).
#[repr(C)]
pub(crate) struct Counters {
    pub(crate) recovered: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) producers_departed: AtomicU32,
    pub(crate) consumers_departed: AtomicU32,
    pub(crate) producers_attached: AtomicU32,
    pub(crate) consumers_attached: AtomicU32,
}

/// The fixed queue header in shared memory. Only atomics: all-zero bytes are valid, and another
/// process may change any word at any time without making a reference to it unsound.
#[repr(C)]
pub(crate) struct MpmcHeader {
    pub(crate) meta: CacheLine<Meta>,
    pub(crate) tail: CacheLine<AtomicU64>,
    pub(crate) head: CacheLine<AtomicU64>,
    pub(crate) counters: CacheLine<Counters>,
    pub(crate) rx_wait: CacheLine<AtomicU32>,
    pub(crate) tx_wait: CacheLine<AtomicU32>,
}

/// One holder entry (see `format::mpmc::HolderEntry`).
#[repr(C)]
pub(crate) struct Entry {
    pub(crate) owner: AtomicU64,
    pub(crate) intent: AtomicU64,
    pub(crate) start_time: AtomicU64,
    /// Unused by mpmc (0). Broadcast keeps a subscriber's cursor here: it is cleared when an
    /// entry is taken or freed, and copied from the parent's entry into a forked child's.
    pub(crate) inherited: AtomicU64,
}

/// The shape of a queue for message type `T`: computed by the creator, re-read and validated by
/// an opener, and kept privately by every handle (addresses come from this copy, so a corrupted
/// header can never move an access out of bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) capacity: u64,
    pub(crate) slot_size: u64,
    pub(crate) slots_offset: u64,
    pub(crate) fingerprint: u64,
    pub(crate) max_holders: u64,
    pub(crate) producers_offset: u64,
    pub(crate) consumers_offset: u64,
}

/// An [`Error::Corrupted`] saying `what`.
pub(crate) fn corrupted(what: impl Into<String>) -> Error {
    Error::Corrupted { what: what.into() }
}

impl Geometry {
    /// The geometry for `requested` messages of type `T` (rounded up to a power of two) and
    /// `max_holders` entries per side.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a capacity of 0 or above 2^32, a table size of 0 or above
    /// 4096, or a byte size that overflows.
    pub(crate) fn for_type<T: ShmSafe>(requested: usize, max_holders: usize) -> Result<Geometry> {
        let invalid = |what: String| Error::InvalidArgument { what };
        if requested == 0 {
            return Err(invalid(
                "mpmc capacity 0: a queue needs at least one slot".into(),
            ));
        }
        // At least 2: with one slot, a published message's sequence number (`p + 1`) would
        // equal the next lap's "free" value (`p + capacity`).
        let capacity = (requested as u64)
            .max(2)
            .checked_next_power_of_two()
            .filter(|&c| c <= MAX_CAPACITY)
            .ok_or_else(|| {
                invalid(format!(
                    "mpmc capacity {requested} is above the limit of {MAX_CAPACITY} messages"
                ))
            })?;
        let n = max_holders as u64;
        if n == 0 || n > MAX_HOLDERS_LIMIT {
            return Err(invalid(format!(
                "mpmc max_holders {max_holders} is outside 1..={MAX_HOLDERS_LIMIT}"
            )));
        }
        let header = size_of::<MpmcHeader>() as u64;
        let table = n * size_of::<HolderEntry>() as u64;
        let g = Geometry {
            capacity,
            slot_size: SLOT_VALUE_OFFSET + 8 * words_for::<T>() as u64,
            slots_offset: (header + 2 * table).next_multiple_of(128),
            fingerprint: T::FINGERPRINT,
            max_holders: n,
            producers_offset: header,
            consumers_offset: header + table,
        };
        g.total_len().ok_or_else(|| {
            invalid(format!(
                "mpmc queue of {capacity} x {}-byte slots overflows the address space",
                g.slot_size
            ))
        })?;
        Ok(g)
    }

    /// Bytes needed for the header, the tables and the slots, if that fits in an `isize`.
    pub(crate) fn total_len(&self) -> Option<usize> {
        let len = self
            .capacity
            .checked_mul(self.slot_size)?
            .checked_add(self.slots_offset)?;
        usize::try_from(len)
            .ok()
            .filter(|&l| l <= isize::MAX as usize)
    }

    /// Writes a fresh queue (indices 0, no holder, slot `i` with `seq = i`) at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be 128-byte aligned and valid for writes of [`Self::total_len`] bytes, and no
    /// other process may use the queue yet.
    pub(crate) unsafe fn init(&self, base: *mut u8) {
        // SAFETY: the caller guarantees `base` is writable for `total_len >= slots_offset`
        // bytes; all-zero bytes are a valid header and valid tables (only atomics).
        unsafe { std::ptr::write_bytes(base, 0, self.slots_offset as usize) };
        for i in 0..self.capacity {
            let at = self.slots_offset + i * self.slot_size;
            // SAFETY: slot `i < capacity` lies inside `total_len`, is 8-aligned (base 128-aligned,
            // offsets multiples of 8), and is not shared yet.
            let seq = unsafe { AtomicU64::from_ptr(base.add(at as usize).cast()) };
            seq.store(i, Ordering::Relaxed);
        }
        // SAFETY: just initialised, aligned, and not yet shared.
        let meta = unsafe { &(*(base as *const MpmcHeader)).meta.0 };
        meta.capacity.store(self.capacity, Ordering::Relaxed);
        meta.slot_size.store(self.slot_size, Ordering::Relaxed);
        meta.slots_offset
            .store(self.slots_offset, Ordering::Relaxed);
        meta.fingerprint.store(self.fingerprint, Ordering::Relaxed);
        meta.max_holders.store(self.max_holders, Ordering::Relaxed);
        meta.producers_offset
            .store(self.producers_offset, Ordering::Relaxed);
        meta.consumers_offset
            .store(self.consumers_offset, Ordering::Relaxed);
        // Release: an opener that sees the magic sees the rest (the segment's READY state
        // already orders this).
        meta.magic.store(MPMC_MAGIC, Ordering::Release);
    }

    fn stored(header: &MpmcHeader) -> Geometry {
        let m = &header.meta.0;
        Geometry {
            capacity: m.capacity.load(Ordering::Relaxed),
            slot_size: m.slot_size.load(Ordering::Relaxed),
            slots_offset: m.slots_offset.load(Ordering::Relaxed),
            fingerprint: m.fingerprint.load(Ordering::Relaxed),
            max_holders: m.max_holders.load(Ordering::Relaxed),
            producers_offset: m.producers_offset.load(Ordering::Relaxed),
            consumers_offset: m.consumers_offset.load(Ordering::Relaxed),
        }
    }

    /// Reads the geometry stored in `header` and checks it against the one `T` needs and the
    /// `len` bytes that are mapped.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if any word differs from what `T` and `len` imply.
    pub(crate) fn validate<T: ShmSafe>(header: &MpmcHeader, len: usize) -> Result<Geometry> {
        if header.meta.0.magic.load(Ordering::Acquire) != MPMC_MAGIC {
            return Err(corrupted("the mpmc header has no magic number"));
        }
        let found = Geometry::stored(header);
        if !found.capacity.is_power_of_two() || found.capacity > MAX_CAPACITY {
            return Err(corrupted(format!(
                "mpmc capacity {} is not a power of two in 1..={MAX_CAPACITY}",
                found.capacity
            )));
        }
        if found.max_holders == 0 || found.max_holders > MAX_HOLDERS_LIMIT {
            return Err(corrupted(format!(
                "mpmc holder table size {} is outside 1..={MAX_HOLDERS_LIMIT}",
                found.max_holders
            )));
        }
        let expected =
            Geometry::for_type::<T>(found.capacity as usize, found.max_holders as usize)?;
        if found != expected {
            return Err(corrupted(format!(
                "mpmc geometry {found:?} does not match the message type's {expected:?}"
            )));
        }
        match found.total_len() {
            Some(need) if need <= len => Ok(found),
            _ => Err(corrupted(format!(
                "mpmc queue of {} slots needs more than the {len} mapped bytes",
                found.capacity
            ))),
        }
    }

    /// Whether the constant words of `header` still hold this geometry (checked on slow paths:
    /// another process rewriting them is corruption).
    pub(crate) fn check_unchanged(&self, header: &MpmcHeader) -> Result<()> {
        if header.meta.0.magic.load(Ordering::Relaxed) == MPMC_MAGIC
            && Geometry::stored(header) == *self
        {
            Ok(())
        } else {
            Err(corrupted(
                "the mpmc queue's capacity, slot size, offsets or magic changed after it was opened",
            ))
        }
    }
}
