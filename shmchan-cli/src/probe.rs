//! Is this segment shmchan's, and what does its header say? Decodes a *copy* of the first bytes
//! of a segment and trusts none of them: every failure is a reason string, never a panic.

use serde_json::{Value as Json, json};

use crate::sys::SegmentBytes;
use crate::ty::Ty;

/// The magic every shmchan segment starts with.
pub const MAGIC: &[u8; 8] = b"SHMCHAN\0";
/// The fixed part of a header.
const FIXED_LEN: usize = shmchan::segment::header::FIXED_LEN;
/// The most header bytes copied (fixed part, names, layout descriptor).
const MAX_HEADER: usize = shmchan::segment::header::MAX_HEADER_LEN;

/// What a segment's first bytes say.
#[derive(Debug, Clone)]
pub enum Probe {
    /// Not a shmchan segment (another program's, or empty).
    NotShmchan(String),
    /// Starts with shmchan's magic but something in the header is impossible.
    Corrupted {
        /// What is wrong.
        reason: String,
        /// The fixed part of the header, when it could be read.
        header: Option<Box<Header>>,
    },
    /// A valid shmchan header.
    Shmchan(Box<Header>),
    /// The bytes could not be read (permissions, segment gone).
    Unreadable(String),
}

impl Probe {
    /// The decoded header, valid or not.
    pub fn header(&self) -> Option<&Header> {
        match self {
            Probe::Shmchan(h) => Some(h),
            Probe::Corrupted { header, .. } => header.as_deref(),
            _ => None,
        }
    }

    /// `shmchan`, `not shmchan`, `corrupted`, `unreadable`.
    pub fn status(&self) -> &'static str {
        match self {
            Probe::NotShmchan(_) => "not shmchan",
            Probe::Corrupted { .. } => "corrupted",
            Probe::Shmchan(_) => "shmchan",
            Probe::Unreadable(_) => "unreadable",
        }
    }

    /// Why it is not a valid shmchan segment.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Probe::NotShmchan(r) | Probe::Unreadable(r) | Probe::Corrupted { reason: r, .. } => {
                Some(r)
            }
            Probe::Shmchan(_) => None,
        }
    }
}

/// A shmchan header as read from a segment.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// 1 = value, 2 = channel, 3 = raw bytes.
    pub kind: u32,
    /// 0 = none, 1 = seqlock, 2 = fcntl.
    pub lock_kind: u32,
    /// 0 = uninitialised, 1 = initialising, 2 = ready, 3 = poisoned.
    pub state: u32,
    /// Whoever detaches last removes the segment (cleared by `persist()`).
    pub remove_when_unused: bool,
    /// The creating process.
    pub creator_pid: u32,
    /// Its start time (clock ticks since boot, `/proc/<pid>/stat` field 22).
    pub creator_start: u64,
    /// Fingerprint of the stored type.
    pub fingerprint: u64,
    /// Size of the stored type.
    pub type_size: u64,
    /// Alignment of the stored type.
    pub type_align: u64,
    /// Where the payload starts.
    pub payload_off: u64,
    /// Payload length.
    pub payload_len: u64,
    /// Total segment length the creator wrote.
    pub total_len: u64,
    /// The stored type's name.
    pub type_name: String,
    /// The stored type's layout, if it decoded.
    pub layout: Option<Ty>,
    /// Why the layout did not decode.
    pub layout_error: Option<String>,
    /// FcntlLock's lock file.
    pub lock_path: Option<String>,
    /// Channel capacity in messages (0 for values).
    pub capacity: u64,
    /// Whether the stored fingerprint is the hash of the stored layout descriptor (a mismatch
    /// means the descriptor does not describe what the writers use).
    pub fingerprint_matches: bool,
}

impl Header {
    /// `value`, `channel` or the raw number.
    pub fn kind_name(&self) -> String {
        match self.kind {
            1 => "value".to_owned(),
            2 => "channel".to_owned(),
            3 => "raw".to_owned(),
            k => format!("kind {k}"),
        }
    }

    /// `none`, `seqlock`, `fcntl` or the raw number.
    pub fn lock_name(&self) -> String {
        match self.lock_kind {
            0 => "none".to_owned(),
            1 => "seqlock".to_owned(),
            2 => "fcntl".to_owned(),
            k => format!("lock {k}"),
        }
    }

    /// `uninitialised`, `initialising`, `ready`, `poisoned`.
    pub fn state_name(&self) -> String {
        match self.state {
            0 => "uninitialised".to_owned(),
            1 => "initialising".to_owned(),
            2 => "ready".to_owned(),
            3 => "poisoned".to_owned(),
            s => format!("state {s}"),
        }
    }

    /// The header as JSON.
    pub fn to_json(&self) -> Json {
        json!({
            "version": self.version,
            "kind": self.kind_name(),
            "lock": self.lock_name(),
            "state": self.state_name(),
            "remove_when_unused": self.remove_when_unused,
            "creator_pid": self.creator_pid,
            "creator_start_time": self.creator_start,
            "fingerprint": format!("{:016x}", self.fingerprint),
            "fingerprint_matches_layout": self.fingerprint_matches,
            "type_name": self.type_name,
            "type_size": self.type_size,
            "type_align": self.type_align,
            "payload_offset": self.payload_off,
            "payload_len": self.payload_len,
            "total_len": self.total_len,
            "lock_path": self.lock_path,
            "capacity": self.capacity,
            "layout_error": self.layout_error,
        })
    }
}

/// Reads and checks the header of `seg` with the library's validating parser
/// ([`shmchan::segment::DecodedHeader::parse`]), adding the one check it cannot make from the
/// bytes alone: that the segment really is as long as its header claims.
pub fn probe(seg: &dyn SegmentBytes) -> Probe {
    let seg_len = seg.len();
    if seg_len < MAGIC.len() as u64 {
        return Probe::NotShmchan(format!("{seg_len} bytes: too small for a shmchan header"));
    }
    let first = (seg_len as usize).min(FIXED_LEN);
    let fixed = match seg.read_vec(0, first) {
        Ok(b) => b,
        Err(e) => return Probe::Unreadable(format!("reading the header: {e}")),
    };
    if &fixed[..8] != MAGIC {
        return Probe::NotShmchan(format!(
            "no shmchan magic (starts with {})",
            hex_prefix(&fixed)
        ));
    }
    let Some(partial) = parse_fixed(&fixed) else {
        return Probe::Corrupted {
            reason: format!(
                "truncated header: the segment has {seg_len} bytes, a header {FIXED_LEN}"
            ),
            header: None,
        };
    };
    // Copy the whole header: up to the payload offset it claims, bounded by the format's maximum
    // and by the segment (the parser reports an offset past the end).
    let want = usize::try_from(partial.payload_off)
        .unwrap_or(MAX_HEADER)
        .clamp(FIXED_LEN, MAX_HEADER)
        .min(seg_len as usize);
    let bytes = match seg.read_vec(0, want) {
        Ok(b) => b,
        Err(e) => return Probe::Unreadable(format!("reading the header: {e}")),
    };
    match shmchan::segment::DecodedHeader::parse(&bytes) {
        Ok(d) => {
            let h = from_decoded(&d);
            if let Some(e) = &h.layout_error {
                return Probe::Corrupted {
                    reason: format!("layout descriptor: {e}"),
                    header: Some(Box::new(h.clone())),
                };
            }
            if h.total_len > seg_len {
                return Probe::Corrupted {
                    reason: format!(
                        "header claims {} bytes, the segment has {seg_len}",
                        h.total_len
                    ),
                    header: Some(Box::new(h)),
                };
            }
            Probe::Shmchan(Box::new(h))
        }
        // Past the magic, "not shmchan" from the parser means an unknown format version: a
        // plausible one is a newer shmchan's segment; anything else is garbage behind our magic.
        Err(shmchan::Error::NotShmchan { reason, .. }) if (2..=255).contains(&partial.version) => {
            Probe::NotShmchan(format!("{reason}: made by a newer shmchan, use its tool"))
        }
        Err(shmchan::Error::NotShmchan { reason, .. }) => Probe::Corrupted {
            reason,
            header: Some(Box::new(partial)),
        },
        Err(shmchan::Error::Corrupted { what }) => Probe::Corrupted {
            reason: what,
            header: Some(Box::new(partial)),
        },
        Err(e) => Probe::Corrupted {
            reason: e.to_string(),
            header: Some(Box::new(partial)),
        },
    }
}

fn hex_prefix(b: &[u8]) -> String {
    b.iter()
        .take(8)
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn from_decoded(d: &shmchan::segment::DecodedHeader) -> Header {
    use shmchan::segment::HeaderState;
    use shmchan::{LockKind, SegmentKind};
    let (layout, layout_error) = match Ty::from_desc_owned(&d.layout) {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e)),
    };
    Header {
        version: d.version,
        kind: match d.kind {
            SegmentKind::Value => 1,
            SegmentKind::Channel => 2,
            SegmentKind::Raw => 3,
            _ => 0,
        },
        lock_kind: match d.lock_kind {
            LockKind::None => 0,
            LockKind::SeqLock => 1,
            LockKind::Fcntl => 2,
            _ => u32::MAX,
        },
        state: match d.state {
            HeaderState::Uninitialised => 0,
            HeaderState::Initialising => 1,
            HeaderState::Ready => 2,
            HeaderState::Poisoned => 3,
            HeaderState::Unknown(v) => v,
            _ => u32::MAX,
        },
        remove_when_unused: d.remove_when_unused,
        creator_pid: d.creator_pid,
        creator_start: d.creator_start_time,
        fingerprint: d.fingerprint,
        type_size: d.type_size,
        type_align: d.type_align,
        payload_off: d.payload_off,
        payload_len: d.payload_len,
        total_len: d.total_len,
        type_name: d.type_name.clone(),
        layout,
        layout_error,
        lock_path: d.lock_path.as_ref().map(|p| p.display().to_string()),
        capacity: d.capacity,
        fingerprint_matches: d.layout.fingerprint() == d.fingerprint,
    }
}

/// Fixed-offset native-endian reads over the copied bytes, `None` past the end.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(self.0.get(at..at + 4)?.try_into().ok()?))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        Some(u64::from_ne_bytes(self.0.get(at..at + 8)?.try_into().ok()?))
    }
}

/// The fixed fields, unvalidated: shown for corrupted segments so the reader sees what the header
/// claims (its creator, its type size...). Offsets as in `shmchan/src/segment/header.rs`.
fn parse_fixed(bytes: &[u8]) -> Option<Header> {
    let c = Cursor(bytes);
    if bytes.len() < FIXED_LEN {
        return None;
    }
    Some(Header {
        version: c.u32(8)?,
        kind: c.u32(12)?,
        lock_kind: c.u32(16)?,
        state: c.u32(20)?,
        creator_pid: c.u32(24)?,
        remove_when_unused: c.u32(28)? & 1 != 0,
        creator_start: c.u64(32)?,
        fingerprint: c.u64(40)?,
        type_size: c.u64(48)?,
        type_align: c.u64(56)?,
        payload_off: c.u64(64)?,
        payload_len: c.u64(72)?,
        total_len: c.u64(80)?,
        capacity: c.u64(112)?,
        ..Header::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    /// Segment bytes held in memory, for probing without a kernel object.
    struct Mem(Vec<u8>);

    impl SegmentBytes for Mem {
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let src = usize::try_from(offset)
                .ok()
                .and_then(|o| self.0.get(o..o.checked_add(buf.len())?))
                .ok_or(io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn wipe(&self) -> io::Result<()> {
            Err(io::ErrorKind::PermissionDenied.into())
        }
        fn load_u64_acquire(&self, offset: u64) -> io::Result<u64> {
            let mut b = [0; 8];
            self.read_at(offset, &mut b)?;
            Ok(u64::from_ne_bytes(b))
        }
    }

    fn with_magic(len: usize, fill: u8) -> Mem {
        let mut b = vec![fill; len];
        b[..8].copy_from_slice(MAGIC);
        Mem(b)
    }

    #[test]
    fn segments_without_the_magic_are_not_shmchan() {
        assert_eq!(probe(&Mem(vec![])).status(), "not shmchan");
        assert_eq!(probe(&Mem(b"SHM".to_vec())).status(), "not shmchan");
        let p = probe(&Mem(vec![0x41; 4096]));
        assert_eq!(p.status(), "not shmchan");
        assert!(p.reason().is_some_and(|r| r.contains("41 41")), "{p:?}");
    }

    #[test]
    fn magic_with_garbage_is_corrupted_and_keeps_the_claimed_fields() {
        assert_eq!(probe(&with_magic(40, 0)).status(), "corrupted");
        for fill in [0x00, 0x01, 0x7f, 0xff] {
            let mut m = with_magic(4096, fill);
            // Version 1, so the parser looks further than the version check.
            m.0[8..12].copy_from_slice(&1u32.to_ne_bytes());
            let p = probe(&m);
            assert_eq!(p.status(), "corrupted", "fill {fill:#x}: {p:?}");
            assert!(p.header().is_some());
            assert!(!p.reason().unwrap_or_default().is_empty());
        }
    }
}
