//! Where a channel's bytes live: the payload of a shmchan segment (anonymous, System V or
//! POSIX).

use std::sync::OnceLock;

use super::layout::{BroadcastHeader, Geometry};
use crate::channel::liveness::Probe;
use crate::segment::{Expect, Key, LockKind, Segment, SegmentKind, SegmentSpec};
use crate::{Error, Result, ShmSafe};

/// The segment that holds one channel; shared by the handles of one process through an `Arc`,
/// and unmapped (and, for a keyed creator, possibly removed) when the last drops.
pub(crate) struct ChannelMemory {
    segment: Segment,
    /// Whether a holder's process still maps the segment (found on first need: it reads
    /// `/proc/self/maps`).
    probe: OnceLock<Probe>,
}

fn spec<T: ShmSafe>(geometry: &Geometry, len: usize) -> SegmentSpec<'static> {
    let mut spec = SegmentSpec::new(
        SegmentKind::Broadcast,
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
            "a broadcast channel of {} messages does not fit in the address space",
            geometry.capacity
        ),
    })
}

impl ChannelMemory {
    fn new(segment: Segment) -> ChannelMemory {
        ChannelMemory {
            segment,
            probe: OnceLock::new(),
        }
    }

    /// The liveness probe of this mapping's holder tables.
    pub(crate) fn probe(&self) -> &OnceLock<Probe> {
        &self.probe
    }

    /// A fresh anonymous shared mapping holding an initialised channel (shared with children
    /// forked afterwards).
    pub(crate) fn anonymous<T: ShmSafe>(geometry: &Geometry) -> Result<ChannelMemory> {
        let len = total_len(geometry)?;
        let segment = Segment::anonymous(&spec::<T>(geometry, len), |base| {
            // SAFETY: the payload is 128-aligned, `len` bytes, and not yet visible to anyone.
            unsafe { geometry.init(base) }
        })?;
        Ok(ChannelMemory::new(segment))
    }

    /// Creates the keyed segment exclusively, holding an initialised channel.
    pub(crate) fn create<T: ShmSafe>(key: Key, geometry: &Geometry) -> Result<ChannelMemory> {
        let len = total_len(geometry)?;
        let segment = Segment::create(key, &spec::<T>(geometry, len), |base| {
            // SAFETY: the payload is 128-aligned, `len` bytes, and not yet READY for openers.
            unsafe { geometry.init(base) }
        })?;
        Ok(ChannelMemory::new(segment))
    }

    /// Opens an existing keyed broadcast segment for `T` and validates its channel.
    pub(crate) fn open<T: ShmSafe>(key: Key) -> Result<(ChannelMemory, Geometry)> {
        let expect = Expect {
            kind: SegmentKind::Broadcast,
            lock_kind: LockKind::None,
            fingerprint: T::FINGERPRINT,
            type_name: T::LAYOUT.type_name,
            payload_len: None,
        };
        let segment = Segment::open(key, &expect, false)?;
        let memory = ChannelMemory::new(segment);
        if memory.len() < size_of::<BroadcastHeader>() {
            return Err(Error::Corrupted {
                what: format!(
                    "the broadcast segment's payload ({} bytes) is smaller than a channel header",
                    memory.len()
                ),
            });
        }
        let geometry = Geometry::validate::<T>(memory.header(), memory.len())?;
        Ok((memory, geometry))
    }

    /// The channel header at the start of the payload.
    pub(crate) fn header(&self) -> &BroadcastHeader {
        // SAFETY: the payload is 128-aligned and at least a header long (anonymous and created
        // channels are sized by their geometry; opened ones are checked in `open`). The header
        // is only atomics, so any bytes another process wrote there are valid.
        unsafe { &*(self.base() as *const BroadcastHeader) }
    }

    /// The channel's base address (128-byte aligned).
    pub(crate) fn base(&self) -> *mut u8 {
        self.segment.payload_ptr()
    }

    /// Mapped bytes from [`Self::base`].
    pub(crate) fn len(&self) -> usize {
        self.segment.payload_len()
    }
}
