//! Is this segment shmchan's, and what does its header say? Decodes a *copy* of the first bytes
//! of a segment and trusts none of them: every failure is a reason string, never a panic.

use serde_json::{Value as Json, json};
use shmchan::format::header::{FIXED_LEN, RawHeader, VERSION};
use shmchan::format::{ByteSource, DecodedHeader, HeaderState};
use shmchan::{LockKind, SegmentKind};

use crate::ty::Ty;

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
    /// The library's decoded header, for a valid one (what the payload decoders take).
    pub decoded: Option<Box<DecodedHeader>>,
}

impl Header {
    /// What the segment holds, when the kind is one this build knows.
    pub fn segment_kind(&self) -> Option<SegmentKind> {
        SegmentKind::try_from(self.kind).ok()
    }

    /// Which lock guards it, when known.
    pub fn lock(&self) -> Option<LockKind> {
        LockKind::try_from(self.lock_kind).ok()
    }

    /// `value`, `channel` or the raw number.
    pub fn kind_name(&self) -> String {
        match self.segment_kind() {
            Some(SegmentKind::Value) => "value".to_owned(),
            Some(SegmentKind::Channel) => "channel".to_owned(),
            Some(SegmentKind::Raw) => "raw".to_owned(),
            Some(SegmentKind::Mpmc) => "mpmc queue".to_owned(),
            Some(SegmentKind::Rpc) => "rpc".to_owned(),
            Some(SegmentKind::Broadcast) => "broadcast".to_owned(),
            _ => format!("kind {}", self.kind),
        }
    }

    /// `none`, `seqlock`, `fcntl` or the raw number.
    pub fn lock_name(&self) -> String {
        match self.lock() {
            Some(LockKind::None) => "none".to_owned(),
            Some(LockKind::SeqLock) => "seqlock".to_owned(),
            Some(LockKind::Fcntl) => "fcntl".to_owned(),
            _ => format!("lock {}", self.lock_kind),
        }
    }

    /// `uninitialised`, `initialising`, `ready`, `poisoned`.
    pub fn state_name(&self) -> String {
        match HeaderState::from(self.state) {
            HeaderState::Uninitialised => "uninitialised".to_owned(),
            HeaderState::Initialising => "initialising".to_owned(),
            HeaderState::Ready => "ready".to_owned(),
            HeaderState::Poisoned => "poisoned".to_owned(),
            _ => format!("state {}", self.state),
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

/// Reads and checks the header of `seg` with the library's validating decoder
/// ([`shmchan::format::header::read`]), keeping what a damaged header claims for display.
pub fn probe(seg: &dyn ByteSource) -> Probe {
    let seg_len = seg.len_bytes();
    let magic_len = shmchan::format::header::MAGIC.len() as u64;
    if seg_len < magic_len {
        return Probe::NotShmchan(format!("{seg_len} bytes: too small for a shmchan header"));
    }
    let first = match seg.read_vec(0, seg_len.min(FIXED_LEN as u64)) {
        Ok(b) => b,
        Err(e) => return Probe::Unreadable(format!("reading the header: {e}")),
    };
    let magic_ok = first.get(..magic_len as usize) == Some(&shmchan::format::header::MAGIC[..]);
    if !magic_ok {
        return Probe::NotShmchan(format!(
            "no shmchan magic (starts with {})",
            hex_prefix(&first)
        ));
    }
    let Some(raw) = RawHeader::decode(&first) else {
        return Probe::Corrupted {
            reason: format!(
                "truncated header: the segment has {seg_len} bytes, a header {FIXED_LEN}"
            ),
            header: None,
        };
    };
    let partial = from_raw(&raw);
    match shmchan::format::header::read(seg) {
        Ok(d) => {
            let h = from_decoded(&d);
            if let Some(e) = &h.layout_error {
                return Probe::Corrupted {
                    reason: format!("layout descriptor: {e}"),
                    header: Some(Box::new(h.clone())),
                };
            }
            Probe::Shmchan(Box::new(h))
        }
        // Past the magic, "not shmchan" from the decoder means an unknown format version: a
        // plausible one is a newer shmchan's segment; anything else is garbage behind our magic.
        Err(shmchan::Error::NotShmchan { reason, .. })
            if (VERSION + 1..=255).contains(&partial.version) =>
        {
            Probe::NotShmchan(format!("{reason}: made by a newer shmchan, use its tool"))
        }
        Err(shmchan::Error::NotShmchan { reason, .. }) => Probe::Corrupted {
            reason,
            header: Some(Box::new(partial)),
        },
        Err(shmchan::Error::Corrupted { what }) => Probe::Corrupted {
            reason: what
                .strip_prefix("segment header: ")
                .unwrap_or(&what)
                .to_owned(),
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

fn from_decoded(d: &DecodedHeader) -> Header {
    let (layout, layout_error) = match Ty::from_desc_owned(&d.layout) {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e)),
    };
    Header {
        version: d.version,
        kind: d.kind as u32,
        lock_kind: d.lock_kind as u32,
        state: d.state.into(),
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
        decoded: Some(Box::new(d.clone())),
    }
}

/// The fixed fields, unvalidated: shown for corrupted segments so the reader sees what the header
/// claims (its creator, its type size...).
fn from_raw(r: &RawHeader) -> Header {
    Header {
        version: r.version,
        kind: r.kind,
        lock_kind: r.lock_kind,
        state: r.state,
        creator_pid: r.creator_pid,
        remove_when_unused: r.remove_when_unused(),
        creator_start: r.creator_start_time,
        fingerprint: r.fingerprint,
        type_size: r.type_size,
        type_align: r.type_align,
        payload_off: r.payload_off,
        payload_len: r.payload_len,
        total_len: r.total_len,
        capacity: r.capacity,
        ..Header::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmchan::format::header::MAGIC;

    /// Segment bytes held in memory, for probing without a kernel object.
    struct Mem(Vec<u8>);

    impl std::ops::Deref for Mem {
        type Target = Vec<u8>;
        fn deref(&self) -> &Vec<u8> {
            &self.0
        }
    }

    fn with_magic(len: usize, fill: u8) -> Mem {
        let mut b = vec![fill; len];
        b[..8].copy_from_slice(&MAGIC);
        Mem(b)
    }

    #[test]
    fn segments_without_the_magic_are_not_shmchan() {
        assert_eq!(probe(&*Mem(vec![])).status(), "not shmchan");
        assert_eq!(probe(&*Mem(b"SHM".to_vec())).status(), "not shmchan");
        let p = probe(&*Mem(vec![0x41; 4096]));
        assert_eq!(p.status(), "not shmchan");
        assert!(p.reason().is_some_and(|r| r.contains("41 41")), "{p:?}");
    }

    #[test]
    fn magic_with_garbage_is_corrupted_and_keeps_the_claimed_fields() {
        assert_eq!(probe(&*with_magic(40, 0)).status(), "corrupted");
        for fill in [0x00, 0x01, 0x7f, 0xff] {
            let mut m = with_magic(4096, fill);
            // Version 1, so the parser looks further than the version check.
            m.0[8..12].copy_from_slice(&1u32.to_ne_bytes());
            let p = probe(&*m);
            assert_eq!(p.status(), "corrupted", "fill {fill:#x}: {p:?}");
            assert!(p.header().is_some());
            assert!(!p.reason().unwrap_or_default().is_empty());
        }
    }
}
