//! Where a ring's bytes live: the payload of a shmchan segment (anonymous, System V or POSIX).

use std::sync::OnceLock;

use super::layout::{Geometry, RingHeader};
use super::liveness::Probe;
use crate::segment::{Expect, Key, LockKind, Segment, SegmentKind, SegmentSpec};
use crate::{Result, ShmSafe};

/// The segment that holds one ring; shared by the handles of one process through an `Arc`, and
/// unmapped (and, for a keyed creator, possibly removed: see `segment`) when the last drops.
pub(crate) struct RingMemory {
    segment: Segment,
    /// Found on first need (a slow path): it reads `/proc/self/maps`.
    probe: OnceLock<Probe>,
}

fn spec<T: ShmSafe>(geometry: &Geometry, len: usize) -> SegmentSpec<'static> {
    let mut spec = SegmentSpec::new(
        SegmentKind::Channel,
        LockKind::None,
        &T::LAYOUT,
        T::FINGERPRINT,
        len,
    );
    spec.capacity = geometry.capacity;
    spec
}

fn total_len(geometry: &Geometry) -> Result<usize> {
    geometry
        .total_len()
        .ok_or_else(|| crate::Error::InvalidArgument {
            what: format!(
                "a channel of {} messages does not fit in the address space",
                geometry.capacity
            ),
        })
}

impl RingMemory {
    /// A fresh anonymous shared mapping holding an initialised ring (shared with children
    /// forked afterwards), and the geometry with its slots placed.
    pub(crate) fn anonymous<T: ShmSafe>(geometry: &Geometry) -> Result<(RingMemory, Geometry)> {
        let len = total_len(geometry)?;
        let mut placed = *geometry;
        let segment = Segment::anonymous(&spec::<T>(geometry, len), |base| {
            placed = geometry.placed_at(base);
            // SAFETY: the payload is 128-aligned, `len` bytes (room for the worst-case slot
            // padding), placed for `base`, and not yet visible to anyone.
            unsafe { placed.init(base) }
        })?;
        Ok((RingMemory::new(segment), placed))
    }

    /// Creates the keyed segment exclusively, holding an initialised ring on which `creator`
    /// has run (it records the creating end) before any opener can see it, and returns it with
    /// the geometry with its slots placed.
    pub(crate) fn create<T: ShmSafe>(
        key: Key,
        geometry: &Geometry,
        creator: impl FnOnce(&RingHeader),
    ) -> Result<(RingMemory, Geometry)> {
        let len = total_len(geometry)?;
        let mut placed = *geometry;
        let segment = Segment::create(key, &spec::<T>(geometry, len), |base| {
            placed = geometry.placed_at(base);
            // SAFETY: the payload is 128-aligned, `len` bytes (room for the worst-case slot
            // padding), placed for `base`, and not yet READY for openers.
            unsafe { placed.init(base) };
            // SAFETY: just initialised, 128-aligned; a header is only atomics.
            creator(unsafe { &*(base as *const RingHeader) });
        })?;
        Ok((RingMemory::new(segment), placed))
    }

    fn new(segment: Segment) -> RingMemory {
        RingMemory {
            segment,
            probe: OnceLock::new(),
        }
    }

    /// How to tell whether a process recorded in this ring still maps it.
    pub(crate) fn probe(&self) -> Probe {
        *self
            .probe
            .get_or_init(|| Probe::for_mapping(self.segment.payload_ptr()))
    }

    /// Opens an existing keyed channel segment for `T` and validates its ring.
    pub(crate) fn open<T: ShmSafe>(key: Key) -> Result<(RingMemory, Geometry)> {
        let expect = Expect {
            kind: SegmentKind::Channel,
            lock_kind: LockKind::None,
            fingerprint: T::FINGERPRINT,
            type_name: T::LAYOUT.type_name,
            payload_len: None,
        };
        let segment = Segment::open(key, &expect, false)?;
        let memory = RingMemory::new(segment);
        if memory.len() < size_of::<RingHeader>() {
            return Err(crate::Error::Corrupted {
                what: format!(
                    "the channel segment's payload ({} bytes) is smaller than a ring header",
                    memory.len()
                ),
            });
        }
        let geometry = Geometry::validate::<T>(memory.ring_header(), memory.base(), memory.len())?;
        Ok((memory, geometry))
    }

    /// The ring header at the start of the payload.
    pub(crate) fn ring_header(&self) -> &RingHeader {
        // SAFETY: the payload is 128-aligned and at least a header long (anonymous and created
        // rings are sized by their geometry; opened ones are checked in `open`). The header is
        // only atomics, so any bytes another process wrote there are valid.
        unsafe { &*(self.base() as *const RingHeader) }
    }

    /// The ring's base address (128-byte aligned).
    pub(crate) fn base(&self) -> *mut u8 {
        self.segment.payload_ptr()
    }

    /// Mapped bytes from [`Self::base`].
    pub(crate) fn len(&self) -> usize {
        self.segment.payload_len()
    }
}
