//! Where a channel's bytes live: the payload of a shmchan segment (anonymous, System V or
//! POSIX), holding the rpc header, the request queue (kept as an embedded mpmc queue) and the
//! client slots.

use std::sync::Arc;

use super::layout::{RpcGeometry, RpcHeader, queue_header};
use crate::format::rpc::QUEUE_OFFSET;
use crate::mpmc::layout::Geometry as QueueGeometry;
use crate::mpmc::memory::QueueMemory;
use crate::segment::{Expect, Key, LockKind, Segment, SegmentKind, SegmentSpec};
use crate::{Error, Result, ShmSafe};

fn total_len(geometry: &RpcGeometry) -> Result<usize> {
    geometry.total_len().ok_or_else(|| Error::InvalidArgument {
        what: format!(
            "an rpc channel of {} clients does not fit in the address space",
            geometry.max_clients
        ),
    })
}

/// The segment spec: the header records the request type (tools decode requests with it);
/// the response type's fingerprint is in the rpc header.
fn spec<Req: ShmSafe>(geometry: &RpcGeometry, len: usize, mode: u32) -> SegmentSpec<'static> {
    let mut spec = SegmentSpec::new(
        SegmentKind::Rpc,
        LockKind::None,
        &Req::LAYOUT,
        Req::FINGERPRINT,
        len,
    );
    spec.capacity = geometry.queue.capacity;
    spec.mode = mode;
    spec
}

/// The request queue of a channel initialised or validated in `segment`.
///
/// # Safety
///
/// The payload must hold an rpc channel initialised by `RpcGeometry::init` or checked by
/// `RpcGeometry::validate` and `Geometry::validate` (so an mpmc header lies at `QUEUE_OFFSET`,
/// a multiple of 128).
unsafe fn embed(segment: Segment) -> Arc<QueueMemory> {
    // SAFETY: forwarded to the caller.
    Arc::new(unsafe { QueueMemory::embedded(segment, QUEUE_OFFSET as usize) })
}

/// A fresh anonymous channel (shared with children forked afterwards).
pub(crate) fn anonymous<Req: ShmSafe>(geometry: &RpcGeometry) -> Result<Arc<QueueMemory>> {
    let len = total_len(geometry)?;
    let segment = Segment::anonymous(&spec::<Req>(geometry, len, 0o600), |base| {
        // SAFETY: the payload is 128-aligned, `len` bytes, and not yet visible to anyone.
        unsafe { geometry.init(base) }
    })?;
    // SAFETY: just initialised for `geometry` (a payload of its `total_len`).
    Ok(unsafe { embed(segment) })
}

/// Creates the keyed channel exclusively.
pub(crate) fn create<Req: ShmSafe>(
    key: Key,
    geometry: &RpcGeometry,
    mode: u32,
) -> Result<Arc<QueueMemory>> {
    let len = total_len(geometry)?;
    let segment = Segment::create(key, &spec::<Req>(geometry, len, mode), |base| {
        // SAFETY: the payload is 128-aligned, `len` bytes, and not yet READY for openers.
        unsafe { geometry.init(base) }
    })?;
    // SAFETY: just initialised for `geometry` (a payload of its `total_len`).
    Ok(unsafe { embed(segment) })
}

/// Opens an existing keyed rpc channel for `Req` and `Resp` and validates it (its header, its
/// queue and its slots).
pub(crate) fn open<Req: ShmSafe, Resp: ShmSafe>(
    key: Key,
) -> Result<(Arc<QueueMemory>, RpcGeometry)> {
    let expect = Expect {
        kind: SegmentKind::Rpc,
        lock_kind: LockKind::None,
        fingerprint: Req::FINGERPRINT,
        type_name: Req::LAYOUT.type_name,
        payload_len: None,
    };
    let segment = Segment::open(key, &expect, false)?;
    let len = segment.payload_len();
    let need = QUEUE_OFFSET as usize + size_of::<crate::mpmc::layout::MpmcHeader>();
    if len < need {
        return Err(Error::Corrupted {
            what: format!("the rpc segment's payload ({len} bytes) is smaller than its headers"),
        });
    }
    let base = segment.payload_ptr();
    // SAFETY: the payload is 128-aligned and at least an rpc header long (checked above); the
    // header is atomics only.
    let header = unsafe { &*(base as *const RpcHeader) };
    let geometry = RpcGeometry::validate::<Req, Resp>(header, len)?;
    // SAFETY: 128-aligned, and the queue header lies inside the payload (checked above).
    let queue = unsafe { queue_header(base) };
    let found = QueueGeometry::validate::<u64>(queue, len - QUEUE_OFFSET as usize)?;
    if found != geometry.queue {
        return Err(Error::Corrupted {
            what: format!(
                "the rpc request queue {found:?} does not match the channel's {:?}",
                geometry.queue
            ),
        });
    }
    // SAFETY: both the rpc geometry and the queue's were validated against the mapped length.
    Ok((unsafe { embed(segment) }, geometry))
}
