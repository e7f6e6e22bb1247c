//! What a creator puts in a new segment ([`SegmentSpec`]) and what an opener requires of an
//! existing one ([`Expect`]).

use super::header;
use super::{LockKind, SegmentKind};
use crate::error::{Error, Result};
use crate::shm_safe::Layout;
use crate::sys;
use std::path::Path;

/// What a creator puts in a new segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentSpec<'a> {
    /// What the segment holds.
    pub kind: SegmentKind,
    /// Which lock guards it.
    pub lock_kind: LockKind,
    /// The stored type (the message type for channels).
    pub layout: &'static Layout,
    /// Its `ShmSafe::FINGERPRINT`.
    pub fingerprint: u64,
    /// Bytes the caller needs after the header (lock words + data, or the ring).
    pub payload_len: usize,
    /// The fcntl lock file, recorded in the header.
    pub lock_path: Option<&'a Path>,
    /// Channel capacity (0 for values).
    pub capacity: u64,
    /// Permission bits for keyed segments (default 0o600).
    pub mode: u32,
}

impl<'a> SegmentSpec<'a> {
    /// A spec with no lock path, capacity 0 and mode 0o600.
    pub(crate) fn new(
        kind: SegmentKind,
        lock_kind: LockKind,
        layout: &'static Layout,
        fingerprint: u64,
        payload_len: usize,
    ) -> SegmentSpec<'a> {
        SegmentSpec {
            kind,
            lock_kind,
            layout,
            fingerprint,
            payload_len,
            lock_path: None,
            capacity: 0,
            mode: 0o600,
        }
    }

    /// What an opener of a segment made from this spec expects (including `payload_len`).
    // Only the unit tests use it today: typed openers build their `Expect` by hand.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn expect(&self) -> Expect {
        Expect {
            kind: self.kind,
            lock_kind: self.lock_kind,
            fingerprint: self.fingerprint,
            type_name: self.layout.type_name,
            payload_len: Some(self.payload_len),
        }
    }
}

/// What an opener requires of an existing segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect {
    /// Required kind (else `KindMismatch`).
    pub kind: SegmentKind,
    /// Required lock kind (else `KindMismatch`).
    pub lock_kind: LockKind,
    /// Required fingerprint (else `LayoutMismatch`).
    pub fingerprint: u64,
    /// The opener's type name, for the `LayoutMismatch` message.
    pub type_name: &'static str,
    /// Required payload length; `None` when the caller validates it itself (channels).
    pub payload_len: Option<usize>,
}

pub(super) fn check_expect(h: &super::DecodedHeader, e: &Expect) -> Result<()> {
    if h.kind != e.kind || h.lock_kind != e.lock_kind {
        return Err(Error::KindMismatch {
            expected: e.kind,
            expected_lock: e.lock_kind,
            found: h.kind,
            found_lock: h.lock_kind,
        });
    }
    if h.fingerprint != e.fingerprint {
        return Err(Error::LayoutMismatch {
            expected: e.fingerprint,
            found: h.fingerprint,
            expected_type: e.type_name.to_owned(),
            found_type: h.type_name.clone(),
        });
    }
    match e.payload_len {
        Some(n) if h.payload_len != n as u64 => Err(Error::Corrupted {
            what: format!(
                "the segment's payload is {} bytes, `{}` needs {n}",
                h.payload_len, e.type_name
            ),
        }),
        _ => Ok(()),
    }
}

pub(super) fn new_image(spec: &SegmentSpec<'_>) -> Result<header::Image> {
    let pid = sys::proc::pid();
    header::build_image(&header::NewHeader {
        kind: spec.kind,
        lock_kind: spec.lock_kind,
        creator_pid: pid,
        creator_start_time: sys::proc::process_start_time(pid).unwrap_or(0),
        fingerprint: spec.fingerprint,
        layout: spec.layout,
        payload_len: spec.payload_len,
        lock_path: spec.lock_path,
        capacity: spec.capacity,
    })
}
