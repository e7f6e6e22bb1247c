//! Is this segment shmchan's, and what does its header say? Decodes a *copy* of the first bytes
//! of a segment and trusts none of them: every failure is a reason string, never a panic.

use serde_json::{Value as Json, json};

use crate::sys::SegmentBytes;
use crate::value::Ty;

/// The magic every shmchan segment starts with.
pub const MAGIC: &[u8; 8] = b"SHMCHAN\0";
/// The most header bytes copied: the header is at most one page.
pub const MAX_HEADER: u64 = 4096;

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
    /// 1 = value, 2 = channel.
    pub kind: u32,
    /// 0 = none, 1 = seqlock, 2 = fcntl.
    pub lock_kind: u32,
    /// 0 = uninitialised, 1 = initialising, 2 = ready, 3 = poisoned.
    pub state: u32,
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
}

impl Header {
    /// `value`, `channel` or the raw number.
    pub fn kind_name(&self) -> String {
        match self.kind {
            1 => "value".to_owned(),
            2 => "channel".to_owned(),
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
            "creator_pid": self.creator_pid,
            "creator_start_time": self.creator_start,
            "fingerprint": format!("{:016x}", self.fingerprint),
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

/// Reads and checks the header of `seg`.
pub fn probe(seg: &dyn SegmentBytes) -> Probe {
    let len = seg.len().min(MAX_HEADER);
    if len < MAGIC.len() as u64 {
        return Probe::NotShmchan(format!(
            "{} bytes: too small for a shmchan header",
            seg.len()
        ));
    }
    let bytes = match seg.read_vec(0, len as usize) {
        Ok(b) => b,
        Err(e) => return Probe::Unreadable(format!("reading the header: {e}")),
    };
    if &bytes[..8] != MAGIC {
        return Probe::NotShmchan(format!(
            "no shmchan magic (starts with {})",
            hex_prefix(&bytes)
        ));
    }
    parse_header(&bytes, seg.len())
}

fn hex_prefix(b: &[u8]) -> String {
    b.iter()
        .take(8)
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Little helper over the copied bytes: fixed-offset native-endian reads, `None` past the end.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(self.0.get(at..at + 4)?.try_into().ok()?))
    }
    fn u64(&self, at: usize) -> Option<u64> {
        Some(u64::from_ne_bytes(self.0.get(at..at + 8)?.try_into().ok()?))
    }
}

/// Decodes the fixed header fields (DESIGN §3 offsets) and validates them against the segment
/// size. Provisional: replaced by the library's public header parser once it is in main.
pub fn parse_header(bytes: &[u8], seg_len: u64) -> Probe {
    let c = Cursor(bytes);
    let fixed = (|| {
        Some(Header {
            version: c.u32(8)?,
            kind: c.u32(12)?,
            lock_kind: c.u32(16)?,
            state: c.u32(20)?,
            creator_pid: c.u32(24)?,
            creator_start: c.u64(32)?,
            fingerprint: c.u64(40)?,
            type_size: c.u64(48)?,
            type_align: c.u64(56)?,
            payload_off: c.u64(64)?,
            payload_len: c.u64(72)?,
            total_len: c.u64(80)?,
            ..Header::default()
        })
    })();
    let Some(h) = fixed else {
        return Probe::Corrupted {
            reason: format!("truncated header: {} bytes", bytes.len()),
            header: None,
        };
    };
    let bad = |reason: String, h: Header| Probe::Corrupted {
        reason,
        header: Some(Box::new(h)),
    };
    if h.version != 1 {
        return bad(
            format!("format version {} (this tool reads version 1)", h.version),
            h,
        );
    }
    if !matches!(h.kind, 1 | 2) {
        return bad(format!("unknown segment kind {}", h.kind), h);
    }
    if h.lock_kind > 2 {
        return bad(format!("unknown lock kind {}", h.lock_kind), h);
    }
    if h.total_len > seg_len {
        return bad(
            format!(
                "header claims {} bytes, the segment has {seg_len}",
                h.total_len
            ),
            h,
        );
    }
    if h.payload_off
        .checked_add(h.payload_len)
        .is_none_or(|e| e > h.total_len)
    {
        return bad(
            format!(
                "payload {}+{} lies outside the {}-byte segment",
                h.payload_off, h.payload_len, h.total_len
            ),
            h,
        );
    }
    Probe::Shmchan(Box::new(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut b = vec![0u8; 256];
        b[..8].copy_from_slice(MAGIC);
        let put32 =
            |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        let put64 =
            |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        put32(&mut b, 8, 1);
        put32(&mut b, 12, 1);
        put32(&mut b, 16, 1);
        put32(&mut b, 20, 2);
        put64(&mut b, 64, 128);
        put64(&mut b, 72, 64);
        put64(&mut b, 80, 256);
        f(&mut b);
        b
    }

    #[test]
    fn valid_header_parses() {
        let b = header_bytes(|_| {});
        assert!(matches!(parse_header(&b, 256), Probe::Shmchan(_)));
    }

    #[test]
    fn impossible_headers_are_corrupted_with_a_reason() {
        let b = header_bytes(|b| b[8] = 9);
        assert!(matches!(parse_header(&b, 256), Probe::Corrupted { .. }));
        let b = header_bytes(|b| b[72..80].copy_from_slice(&u64::MAX.to_ne_bytes()));
        let p = parse_header(&b, 256);
        assert_eq!(p.status(), "corrupted");
        assert!(p.reason().is_some_and(|r| r.contains("outside")));
        let b = header_bytes(|_| {});
        assert_eq!(parse_header(&b, 100).status(), "corrupted");
        assert_eq!(parse_header(&b[..40], 40).status(), "corrupted");
    }
}
