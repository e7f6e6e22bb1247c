//! Where a queue's bytes live: the payload of a shmchan segment (anonymous, System V or POSIX).

use std::sync::OnceLock;

use super::layout::{Geometry, MpmcHeader};
use crate::channel::liveness::Probe;
use crate::segment::{Expect, Key, LockKind, Segment, SegmentKind, SegmentSpec};
use crate::{Error, Result, ShmSafe};

/// The segment that holds one queue; shared by the handles of one process through an `Arc`,
/// and unmapped (and, for a keyed creator, possibly removed) when the last drops.
pub(crate) struct QueueMemory {
    segment: Segment,
    /// Whether a holder's process still maps the segment (found on first need: it reads
    /// `/proc/self/maps`).
    probe: OnceLock<Probe>,
    /// Where the queue starts in the payload (0, or a multiple of 128 for a queue embedded in
    /// another kind's segment, such as an rpc channel's request queue).
    offset: usize,
}

fn spec<T: ShmSafe>(geometry: &Geometry, len: usize) -> SegmentSpec<'static> {
    let mut spec = SegmentSpec::new(
        SegmentKind::Mpmc,
        LockKind::None,
        &T::LAYOUT,
        T::FINGERPRINT,
        len,
    );
    spec.capacity = geometry.capacity;
    spec
}

fn total_len(geometry: &Geometry) -> Result<usize> {
    geometry.total_len().ok_or_else(|| Error::InvalidArgument {
        what: format!(
            "an mpmc queue of {} messages does not fit in the address space",
            geometry.capacity
        ),
    })
}

impl QueueMemory {
    /// A fresh anonymous shared mapping holding an initialised queue (shared with children
    /// forked afterwards).
    pub(crate) fn anonymous<T: ShmSafe>(geometry: &Geometry) -> Result<QueueMemory> {
        let len = total_len(geometry)?;
        let segment = Segment::anonymous(&spec::<T>(geometry, len), |base| {
            // SAFETY: the payload is 128-aligned, `len` bytes, and not yet visible to anyone.
            unsafe { geometry.init(base) }
        })?;
        Ok(QueueMemory::new(segment, 0))
    }

    /// Creates the keyed segment exclusively, holding an initialised queue.
    pub(crate) fn create<T: ShmSafe>(key: Key, geometry: &Geometry) -> Result<QueueMemory> {
        let len = total_len(geometry)?;
        let segment = Segment::create(key, &spec::<T>(geometry, len), |base| {
            // SAFETY: the payload is 128-aligned, `len` bytes, and not yet READY for openers.
            unsafe { geometry.init(base) }
        })?;
        Ok(QueueMemory::new(segment, 0))
    }

    /// Opens an existing keyed mpmc segment for `T` and validates its queue.
    pub(crate) fn open<T: ShmSafe>(key: Key) -> Result<(QueueMemory, Geometry)> {
        let expect = Expect {
            kind: SegmentKind::Mpmc,
            lock_kind: LockKind::None,
            fingerprint: T::FINGERPRINT,
            type_name: T::LAYOUT.type_name,
            payload_len: None,
        };
        let segment = Segment::open(key, &expect, false)?;
        let memory = QueueMemory::new(segment, 0);
        if memory.len() < size_of::<MpmcHeader>() {
            return Err(Error::Corrupted {
                what: format!(
                    "the mpmc segment's payload ({} bytes) is smaller than a queue header",
                    memory.len()
                ),
            });
        }
        let geometry = Geometry::validate::<T>(memory.header(), memory.len())?;
        Ok((memory, geometry))
    }

    /// A queue embedded `offset` bytes into `segment`'s payload.
    ///
    /// # Safety
    ///
    /// `offset` must be a multiple of 128, and the payload must hold at least an mpmc header
    /// from `offset` on (the caller initialised or validated a queue there): [`Self::header`]
    /// relies on it.
    pub(crate) unsafe fn embedded(segment: Segment, offset: usize) -> QueueMemory {
        QueueMemory::new(segment, offset)
    }

    fn new(segment: Segment, offset: usize) -> QueueMemory {
        QueueMemory {
            segment,
            probe: OnceLock::new(),
            offset,
        }
    }

    /// The liveness probe of this mapping's holder tables.
    pub(crate) fn probe(&self) -> &OnceLock<Probe> {
        &self.probe
    }

    /// The whole segment (an embedding kind reaches its own structures through it).
    pub(crate) fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The queue header at the start of the queue.
    pub(crate) fn header(&self) -> &MpmcHeader {
        // SAFETY: the queue's base is 128-aligned and at least a header long (anonymous and
        // created queues are sized by their geometry; opened ones are checked in `open`,
        // embedded ones by their embedder). The header is only atomics, so any bytes another
        // process wrote there are valid.
        unsafe { &*(self.base() as *const MpmcHeader) }
    }

    /// The queue's base address (128-byte aligned).
    pub(crate) fn base(&self) -> *mut u8 {
        self.segment.payload_ptr().wrapping_add(self.offset)
    }

    /// Mapped bytes from [`Self::base`].
    pub(crate) fn len(&self) -> usize {
        self.segment.payload_len().saturating_sub(self.offset)
    }
}
