//! The channel's memory layout as atomics (the byte-level description, with its offsets pinned,
//! is `crate::format::broadcast`), and the geometry every handle keeps privately.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::Overflow;
use crate::channel::layout::CacheLine;
use crate::format::broadcast::{
    BROADCAST_MAGIC, MAX_CAPACITY, MAX_SUBSCRIBERS_LIMIT, OVERFLOW_BLOCK, OVERFLOW_DROP_OLDEST,
    SLOT_VALUE_OFFSET, SUBSCRIBERS_OFFSET, SubscriberEntry,
};
use crate::mpmc::layout::corrupted;
use crate::sync::words::words_for;
use crate::{Error, Result, ShmSafe};

/// Subscriber entries when the creator does not say.
pub(crate) const DEFAULT_MAX_SUBSCRIBERS: usize = 32;

/// The channel's constant description (see `format::broadcast::BroadcastMeta`).
#[repr(C)]
pub(crate) struct Meta {
    pub(crate) magic: AtomicU64,
    pub(crate) capacity: AtomicU64,
    pub(crate) slot_size: AtomicU64,
    pub(crate) slots_offset: AtomicU64,
    pub(crate) fingerprint: AtomicU64,
    pub(crate) max_subscribers: AtomicU64,
    pub(crate) subscribers_offset: AtomicU64,
    pub(crate) overflow: AtomicU64,
}

/// Counters and per-side flags (see `format::broadcast::BroadcastCounters`).
#[repr(C)]
pub(crate) struct Counters {
    pub(crate) missed: AtomicU64,
    pub(crate) publisher_departed: AtomicU32,
    pub(crate) subscribers_departed: AtomicU32,
    pub(crate) publisher_attached: AtomicU32,
    pub(crate) subscribers_attached: AtomicU32,
}

/// The fixed channel header in shared memory. Only atomics: all-zero bytes are valid, and
/// another process may change any word at any time without making a reference to it unsound.
#[repr(C)]
pub(crate) struct BroadcastHeader {
    pub(crate) meta: CacheLine<Meta>,
    pub(crate) tail: CacheLine<AtomicU64>,
    pub(crate) counters: CacheLine<Counters>,
    pub(crate) sub_wait: CacheLine<AtomicU32>,
    pub(crate) pub_wait: CacheLine<AtomicU32>,
}

/// The shape of a channel for message type `T`: computed by the creator, re-read and validated
/// by an opener, and kept privately by every handle (addresses come from this copy, so a
/// corrupted header can never move an access out of bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) capacity: u64,
    pub(crate) slot_size: u64,
    pub(crate) slots_offset: u64,
    pub(crate) fingerprint: u64,
    pub(crate) max_subscribers: u64,
    pub(crate) overflow: u64,
}

impl Geometry {
    /// The geometry for `requested` messages of type `T` (rounded up to a power of two, at
    /// least 2) and `max_subscribers` subscriber entries.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a capacity of 0 or above 2^32, a table size of 0 or above
    /// 4096, or a byte size that overflows.
    pub(crate) fn for_type<T: ShmSafe>(
        requested: usize,
        max_subscribers: usize,
        overflow: Overflow,
    ) -> Result<Geometry> {
        let invalid = |what: String| Error::InvalidArgument { what };
        if requested == 0 {
            return Err(invalid(
                "broadcast capacity 0: a channel needs at least one slot".into(),
            ));
        }
        let capacity = (requested as u64)
            .max(2)
            .checked_next_power_of_two()
            .filter(|&c| c <= MAX_CAPACITY)
            .ok_or_else(|| {
                invalid(format!(
                    "broadcast capacity {requested} is above the limit of {MAX_CAPACITY} messages"
                ))
            })?;
        let n = max_subscribers as u64;
        if n == 0 || n > MAX_SUBSCRIBERS_LIMIT {
            return Err(invalid(format!(
                "broadcast max_subscribers {max_subscribers} is outside 1..={MAX_SUBSCRIBERS_LIMIT}"
            )));
        }
        let table = n * size_of::<SubscriberEntry>() as u64;
        let g = Geometry {
            capacity,
            slot_size: SLOT_VALUE_OFFSET + 8 * words_for::<T>() as u64,
            slots_offset: (SUBSCRIBERS_OFFSET + table).next_multiple_of(128),
            fingerprint: T::FINGERPRINT,
            max_subscribers: n,
            overflow: match overflow {
                Overflow::Block => OVERFLOW_BLOCK,
                Overflow::DropOldest => OVERFLOW_DROP_OLDEST,
            },
        };
        g.total_len().ok_or_else(|| {
            invalid(format!(
                "broadcast channel of {capacity} x {}-byte slots overflows the address space",
                g.slot_size
            ))
        })?;
        Ok(g)
    }

    /// The overflow mode.
    pub(crate) fn overflow(&self) -> Overflow {
        if self.overflow == OVERFLOW_DROP_OLDEST {
            Overflow::DropOldest
        } else {
            Overflow::Block
        }
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

    /// Writes a fresh channel (cursor 0, no holder, every stamp 0) at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be 128-byte aligned and valid for writes of [`Self::total_len`] bytes, and no
    /// other process may use the channel yet.
    pub(crate) unsafe fn init(&self, base: *mut u8) {
        let len = self.total_len().unwrap_or(self.slots_offset as usize);
        // SAFETY: the caller guarantees `base` is writable for `total_len` bytes; all-zero
        // bytes are a valid header, valid tables and never-written slots (only atomics).
        unsafe { std::ptr::write_bytes(base, 0, len) };
        // SAFETY: just initialised, aligned, and not yet shared.
        let meta = unsafe { &(*(base as *const BroadcastHeader)).meta.0 };
        meta.capacity.store(self.capacity, Ordering::Relaxed);
        meta.slot_size.store(self.slot_size, Ordering::Relaxed);
        meta.slots_offset
            .store(self.slots_offset, Ordering::Relaxed);
        meta.fingerprint.store(self.fingerprint, Ordering::Relaxed);
        meta.max_subscribers
            .store(self.max_subscribers, Ordering::Relaxed);
        meta.subscribers_offset
            .store(SUBSCRIBERS_OFFSET, Ordering::Relaxed);
        meta.overflow.store(self.overflow, Ordering::Relaxed);
        // Release: an opener that sees the magic sees the rest (the segment's READY state
        // already orders this).
        meta.magic.store(BROADCAST_MAGIC, Ordering::Release);
    }

    fn stored(header: &BroadcastHeader) -> (Geometry, u64) {
        let m = &header.meta.0;
        let g = Geometry {
            capacity: m.capacity.load(Ordering::Relaxed),
            slot_size: m.slot_size.load(Ordering::Relaxed),
            slots_offset: m.slots_offset.load(Ordering::Relaxed),
            fingerprint: m.fingerprint.load(Ordering::Relaxed),
            max_subscribers: m.max_subscribers.load(Ordering::Relaxed),
            overflow: m.overflow.load(Ordering::Relaxed),
        };
        (g, m.subscribers_offset.load(Ordering::Relaxed))
    }

    /// Reads the geometry stored in `header` and checks it against the one `T` needs and the
    /// `len` bytes that are mapped.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if any word differs from what `T` and `len` imply.
    pub(crate) fn validate<T: ShmSafe>(header: &BroadcastHeader, len: usize) -> Result<Geometry> {
        if header.meta.0.magic.load(Ordering::Acquire) != BROADCAST_MAGIC {
            return Err(corrupted("the broadcast header has no magic number"));
        }
        let (found, table_at) = Geometry::stored(header);
        if !found.capacity.is_power_of_two() || found.capacity > MAX_CAPACITY {
            return Err(corrupted(format!(
                "broadcast capacity {} is not a power of two in 2..={MAX_CAPACITY}",
                found.capacity
            )));
        }
        if found.max_subscribers == 0 || found.max_subscribers > MAX_SUBSCRIBERS_LIMIT {
            return Err(corrupted(format!(
                "broadcast subscriber table size {} is outside 1..={MAX_SUBSCRIBERS_LIMIT}",
                found.max_subscribers
            )));
        }
        let overflow = match found.overflow {
            OVERFLOW_BLOCK => Overflow::Block,
            OVERFLOW_DROP_OLDEST => Overflow::DropOldest,
            other => {
                return Err(corrupted(format!(
                    "unknown broadcast overflow mode {other}"
                )));
            }
        };
        let expected = Geometry::for_type::<T>(
            found.capacity as usize,
            found.max_subscribers as usize,
            overflow,
        )?;
        if found != expected || table_at != SUBSCRIBERS_OFFSET {
            return Err(corrupted(format!(
                "broadcast geometry {found:?} does not match the message type's {expected:?}"
            )));
        }
        match found.total_len() {
            Some(need) if need <= len => Ok(found),
            _ => Err(corrupted(format!(
                "broadcast channel of {} slots needs more than the {len} mapped bytes",
                found.capacity
            ))),
        }
    }

    /// Whether the constant words of `header` still hold this geometry (checked on slow paths:
    /// another process rewriting them is corruption).
    pub(crate) fn check_unchanged(&self, header: &BroadcastHeader) -> Result<()> {
        if header.meta.0.magic.load(Ordering::Relaxed) == BROADCAST_MAGIC
            && Geometry::stored(header) == (*self, SUBSCRIBERS_OFFSET)
        {
            Ok(())
        } else {
            Err(corrupted(
                "the broadcast channel's capacity, slot size, offsets or mode changed after it was opened",
            ))
        }
    }
}
