//! The channel's memory layout as atomics (the byte-level description, with its offsets
//! pinned, is `crate::format::rpc`), and the geometry every handle keeps privately.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::channel::layout::CacheLine;
use crate::format::rpc::{QUEUE_OFFSET, RPC_MAGIC, SLOT_REQUEST_OFFSET, TOKEN_SLOT_BITS};
use crate::mpmc::layout::{Geometry as QueueGeometry, MpmcHeader, corrupted};
use crate::sync::words::words_for;
use crate::{Error, Result, ShmSafe};

/// Client slots when the creator does not say.
pub(crate) const DEFAULT_MAX_CLIENTS: usize = 32;

/// The channel's constant description (see `format::rpc::RpcMeta`).
#[repr(C)]
pub(crate) struct Meta {
    pub(crate) magic: AtomicU64,
    pub(crate) capacity: AtomicU64,
    pub(crate) max_clients: AtomicU64,
    pub(crate) request_fingerprint: AtomicU64,
    pub(crate) response_fingerprint: AtomicU64,
    pub(crate) request_size: AtomicU64,
    pub(crate) response_size: AtomicU64,
    pub(crate) queue_offset: AtomicU64,
    pub(crate) queue_len: AtomicU64,
    pub(crate) slots_offset: AtomicU64,
    pub(crate) slot_stride: AtomicU64,
    pub(crate) _reserved: AtomicU64,
}

/// The counters (see `format::rpc::RpcCounters`).
#[repr(C)]
pub(crate) struct Counters {
    pub(crate) stale_requests: AtomicU64,
    pub(crate) dropped_replies: AtomicU64,
}

/// The fixed header before the queue. Only atomics: any bytes are valid.
#[repr(C)]
pub(crate) struct RpcHeader {
    pub(crate) meta: CacheLine<Meta>,
    pub(crate) counters: CacheLine<Counters>,
}

/// The fixed words of a client slot (see `format::rpc::ClientSlotHeader`).
#[repr(C)]
pub(crate) struct SlotHeader {
    pub(crate) request_call: AtomicU64,
    pub(crate) reply_call: AtomicU64,
    pub(crate) wait: AtomicU32,
    pub(crate) _pad: AtomicU32,
    pub(crate) _reserved: AtomicU64,
}

/// The shape of a channel for `Req` and `Resp`: computed by the creator, re-read and validated
/// by an opener, and kept privately by every handle (addresses come from this copy, so a
/// corrupted header can never move an access out of bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RpcGeometry {
    pub(crate) queue: QueueGeometry,
    pub(crate) max_clients: u64,
    pub(crate) request_fingerprint: u64,
    pub(crate) response_fingerprint: u64,
    pub(crate) request_size: u64,
    pub(crate) response_size: u64,
    pub(crate) queue_len: u64,
    pub(crate) slots_offset: u64,
    pub(crate) slot_stride: u64,
}

impl RpcGeometry {
    /// The geometry for a request queue of at least `capacity` tokens and `max_clients` client
    /// slots (1 to 4096).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a capacity of 0 or above 2^32, a client count outside
    /// 1..=4096, or a byte size that overflows.
    pub(crate) fn for_types<Req: ShmSafe, Resp: ShmSafe>(
        capacity: usize,
        max_clients: usize,
    ) -> Result<RpcGeometry> {
        let queue = QueueGeometry::for_type::<u64>(capacity, max_clients).map_err(|e| match e {
            Error::InvalidArgument { what } => Error::InvalidArgument {
                what: what
                    .replace("mpmc capacity", "rpc capacity")
                    .replace("mpmc max_holders", "rpc max_clients"),
            },
            other => other,
        })?;
        debug_assert!(queue.max_holders < 1 << TOKEN_SLOT_BITS);
        let overflow = || Error::InvalidArgument {
            what: format!(
                "an rpc channel of {max_clients} clients with {}-byte requests and {}-byte responses overflows the address space",
                size_of::<Req>(),
                size_of::<Resp>()
            ),
        };
        let queue_len = queue.total_len().ok_or_else(overflow)? as u64;
        let request_size = 8 * words_for::<Req>() as u64;
        let response_size = 8 * words_for::<Resp>() as u64;
        let slot_stride = (SLOT_REQUEST_OFFSET + request_size + response_size)
            .checked_next_multiple_of(128)
            .ok_or_else(overflow)?;
        let g = RpcGeometry {
            queue,
            max_clients: queue.max_holders,
            request_fingerprint: Req::FINGERPRINT,
            response_fingerprint: Resp::FINGERPRINT,
            request_size,
            response_size,
            queue_len,
            slots_offset: (QUEUE_OFFSET + queue_len).next_multiple_of(128),
            slot_stride,
        };
        g.total_len().ok_or_else(overflow)?;
        Ok(g)
    }

    /// Bytes of the whole payload, if that fits in an `isize`.
    pub(crate) fn total_len(&self) -> Option<usize> {
        let len = self
            .max_clients
            .checked_mul(self.slot_stride)?
            .checked_add(self.slots_offset)?;
        usize::try_from(len)
            .ok()
            .filter(|&l| l <= isize::MAX as usize)
    }

    /// Writes a fresh channel (empty queue, every slot at call 0) at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be 128-byte aligned and valid for writes of [`Self::total_len`] bytes, and no
    /// other process may use the channel yet.
    pub(crate) unsafe fn init(&self, base: *mut u8) {
        let len = self.total_len().unwrap_or(0);
        // SAFETY: the caller guarantees `base` is writable for `total_len` bytes; all-zero
        // bytes are a valid header, valid slots and (before `Geometry::init`) a valid queue.
        unsafe { std::ptr::write_bytes(base, 0, len) };
        // SAFETY: the queue lies at `QUEUE_OFFSET` (a multiple of 128) inside the payload, is
        // `queue_len` bytes long, and is not shared yet.
        unsafe { self.queue.init(base.add(QUEUE_OFFSET as usize)) };
        // SAFETY: just zeroed, aligned, and not yet shared.
        let meta = unsafe { &(*(base as *const RpcHeader)).meta.0 };
        let r = Ordering::Relaxed;
        meta.capacity.store(self.queue.capacity, r);
        meta.max_clients.store(self.max_clients, r);
        meta.request_fingerprint.store(self.request_fingerprint, r);
        meta.response_fingerprint
            .store(self.response_fingerprint, r);
        meta.request_size.store(self.request_size, r);
        meta.response_size.store(self.response_size, r);
        meta.queue_offset.store(QUEUE_OFFSET, r);
        meta.queue_len.store(self.queue_len, r);
        meta.slots_offset.store(self.slots_offset, r);
        meta.slot_stride.store(self.slot_stride, r);
        meta.magic.store(RPC_MAGIC, Ordering::Release);
    }

    /// Reads the geometry stored at `header` and checks it against the one `Req` and `Resp`
    /// need and the `len` bytes mapped from `header`; `type_name` names the request type in
    /// errors.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] if the response type differs; [`Error::Corrupted`] if any
    /// other word differs from what the types and `len` imply.
    pub(crate) fn validate<Req: ShmSafe, Resp: ShmSafe>(
        header: &RpcHeader,
        len: usize,
    ) -> Result<RpcGeometry> {
        let m = &header.meta.0;
        if m.magic.load(Ordering::Acquire) != RPC_MAGIC {
            return Err(corrupted("the rpc header has no magic number"));
        }
        let response = m.response_fingerprint.load(Ordering::Relaxed);
        if response != Resp::FINGERPRINT {
            return Err(Error::LayoutMismatch {
                expected: Resp::FINGERPRINT,
                found: response,
                expected_type: format!("{} (rpc response)", Resp::LAYOUT.type_name),
                found_type: "another rpc response type".into(),
            });
        }
        let capacity = m.capacity.load(Ordering::Relaxed);
        let max_clients = m.max_clients.load(Ordering::Relaxed);
        let expected = usize::try_from(capacity)
            .ok()
            .zip(usize::try_from(max_clients).ok())
            .and_then(|(c, n)| RpcGeometry::for_types::<Req, Resp>(c, n).ok())
            .filter(|g| g.queue.capacity == capacity)
            .ok_or_else(|| {
                corrupted(format!(
                    "rpc capacity {capacity} or client count {max_clients} is impossible"
                ))
            })?;
        let found = RpcGeometry {
            queue: expected.queue,
            max_clients,
            request_fingerprint: m.request_fingerprint.load(Ordering::Relaxed),
            response_fingerprint: response,
            request_size: m.request_size.load(Ordering::Relaxed),
            response_size: m.response_size.load(Ordering::Relaxed),
            queue_len: m.queue_len.load(Ordering::Relaxed),
            slots_offset: m.slots_offset.load(Ordering::Relaxed),
            slot_stride: m.slot_stride.load(Ordering::Relaxed),
        };
        if found != expected || m.queue_offset.load(Ordering::Relaxed) != QUEUE_OFFSET {
            return Err(corrupted(format!(
                "rpc geometry {found:?} does not match the message types' {expected:?}"
            )));
        }
        match expected.total_len() {
            Some(need) if need <= len => Ok(expected),
            _ => Err(corrupted(format!(
                "an rpc channel of {max_clients} clients needs more than the {len} mapped bytes"
            ))),
        }
    }

    /// Whether the constant words of `header` still hold this geometry (checked on slow paths).
    pub(crate) fn check_unchanged(&self, header: &RpcHeader) -> Result<()> {
        let m = &header.meta.0;
        let r = Ordering::Relaxed;
        if m.magic.load(r) == RPC_MAGIC
            && m.max_clients.load(r) == self.max_clients
            && m.slots_offset.load(r) == self.slots_offset
            && m.slot_stride.load(r) == self.slot_stride
        {
            Ok(())
        } else {
            Err(corrupted(
                "the rpc channel's client count, slot offset, stride or magic changed after it was opened",
            ))
        }
    }
}

/// The queue header inside a channel at `base` (a helper for `Geometry::validate`).
///
/// # Safety
///
/// `base` must be 128-aligned and mapped for at least `QUEUE_OFFSET + size_of::<MpmcHeader>()`
/// bytes for as long as the result is used.
pub(crate) unsafe fn queue_header<'a>(base: *const u8) -> &'a MpmcHeader {
    // SAFETY: forwarded to the caller; the header is atomics only, so any bytes are valid.
    unsafe { &*(base.add(QUEUE_OFFSET as usize) as *const MpmcHeader) }
}
