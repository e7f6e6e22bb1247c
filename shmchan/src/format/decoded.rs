//! [`DecodedHeader`]: everything a segment header says, decoded and validated from copied
//! bytes by [`DecodedHeader::parse`], the decoder used both when opening a segment and by tools
//! that only have the bytes.

use super::header::{FIXED_LEN, MAX_HEADER_LEN, PAYLOAD_ALIGN, VERSION, off, u32_at, u64_at};
use super::layout::{self, LayoutDesc};
use crate::error::{Error, Result};
use crate::{LockKind, SegmentKind};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub(crate) const MAGIC: u64 = u64::from_ne_bytes(super::header::MAGIC);
pub(crate) const STATE_UNINIT: u32 = 0;
pub(crate) const STATE_INITIALISING: u32 = 1;
pub(crate) const STATE_READY: u32 = 2;
pub(crate) const STATE_POISONED: u32 = 3;
use super::header::FLAG_REMOVE_WHEN_UNUSED;

// Callers check the length first (`bytes.len() >= FIXED_LEN` or the span checks): these never
// see an out-of-range offset, and answer 0 if one ever slipped through.
fn get_u32(b: &[u8], at: usize) -> u32 {
    u32_at(b, at).unwrap_or(0)
}

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64_at(b, at).unwrap_or(0)
}

/// The `state` word of a header.
///
/// # Examples
///
/// ```
/// let seg = shmchan::Segment::anonymous_raw(8)?;
/// assert_eq!(seg.header().state, shmchan::segment::HeaderState::Ready);
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderState {
    /// Nothing written yet.
    Uninitialised,
    /// The creator is writing the header and initial value.
    Initialising,
    /// Fully initialised and published.
    Ready,
    /// Marked unusable (e.g. removed, or a creator failed half-way).
    Poisoned,
    /// A value this version does not know.
    Unknown(u32),
}

impl HeaderState {
    pub(crate) fn from_raw(v: u32) -> HeaderState {
        match v {
            STATE_UNINIT => HeaderState::Uninitialised,
            STATE_INITIALISING => HeaderState::Initialising,
            STATE_READY => HeaderState::Ready,
            STATE_POISONED => HeaderState::Poisoned,
            other => HeaderState::Unknown(other),
        }
    }
}

/// Everything a segment header says, decoded and validated.
///
/// Obtain it from an open segment (`Segment::header`) or from raw bytes copied out of any
/// mapping with [`DecodedHeader::parse`].
///
/// # Examples
///
/// ```
/// use shmchan::segment::DecodedHeader;
///
/// // Bytes that are not a shmchan header give an error, never a panic.
/// assert!(DecodedHeader::parse(&[0u8; 4096]).is_err());
/// assert!(DecodedHeader::parse(b"SHMCHAN\0").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedHeader {
    /// Format version.
    pub version: u32,
    /// What the segment holds.
    pub kind: SegmentKind,
    /// Which lock guards the payload.
    pub lock_kind: LockKind,
    /// The state word when the bytes were read.
    pub state: HeaderState,
    /// Whether the last handle to detach removes the segment (System V; see `persist`).
    pub remove_when_unused: bool,
    /// The creating process.
    pub creator_pid: u32,
    /// Its start time (clock ticks since boot), to tell it from a later process with the same id.
    pub creator_start_time: u64,
    /// `ShmSafe::FINGERPRINT` of the stored type.
    pub fingerprint: u64,
    /// `size_of` the stored type.
    pub type_size: u64,
    /// `align_of` the stored type.
    pub type_align: u64,
    /// Offset of the payload from the start of the segment (a multiple of 128).
    pub payload_off: u64,
    /// Length of the payload in bytes.
    pub payload_len: u64,
    /// `payload_off + payload_len`: the bytes the segment must at least have.
    pub total_len: u64,
    /// The stored type's name.
    pub type_name: String,
    /// The stored type's layout, to decode fields without the Rust type.
    pub layout: LayoutDesc,
    /// The fcntl lock file, for `LockKind::Fcntl`.
    pub lock_path: Option<PathBuf>,
    /// Channel capacity in messages (0 for values).
    pub capacity: u64,
}

/// FNV-1a 64 over the header bytes with the words that change after creation (magic, state,
/// flags) and the checksum itself zeroed.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, &x) in bytes.iter().enumerate() {
        let skip = i < 8
            || (off::STATE..off::STATE + 4).contains(&i)
            || (off::FLAGS..off::FLAGS + 4).contains(&i)
            || (off::CHECKSUM..off::CHECKSUM + 8).contains(&i);
        h ^= if skip { 0 } else { u64::from(x) };
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn not_shmchan(reason: impl Into<String>) -> Error {
    Error::NotShmchan {
        target: crate::error::Target::Other {
            what: "the segment".into(),
        },
        reason: reason.into(),
    }
}

fn corrupted(what: impl Into<String>) -> Error {
    Error::Corrupted {
        what: format!("segment header: {}", what.into()),
    }
}

impl DecodedHeader {
    /// Decodes and validates a header from bytes copied out of a segment (at least its first
    /// `payload_off` bytes; the whole segment is fine too).
    ///
    /// Checks the magic and version, the kind and lock kind values, that every offset and length
    /// lies inside the header, that the payload offset is 128-aligned, that
    /// `total_len == payload_off + payload_len`, that the names are UTF-8, that the layout
    /// descriptor decodes and agrees with the stored size and alignment, and the checksum.
    /// It does not check the state word (it is reported in [`state`](Self::state)) nor that the
    /// segment is `total_len` bytes long: compare with the mapping size yourself.
    ///
    /// # Errors
    ///
    /// [`Error::NotShmchan`] when the magic or version is wrong or the bytes are too short,
    /// [`Error::Corrupted`] when a field is impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::segment::DecodedHeader;
    ///
    /// let err = DecodedHeader::parse(&[0xff; 256]).unwrap_err();
    /// assert!(matches!(err, shmchan::Error::NotShmchan { .. }));
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<DecodedHeader> {
        if bytes.len() < FIXED_LEN {
            return Err(not_shmchan(format!(
                "{} bytes is shorter than a header ({FIXED_LEN})",
                bytes.len()
            )));
        }
        if get_u64(bytes, off::MAGIC) != MAGIC {
            return Err(not_shmchan("no SHMCHAN magic at offset 0"));
        }
        let version = get_u32(bytes, off::VERSION);
        if version != VERSION {
            return Err(not_shmchan(format!(
                "header version {version}, this build reads version {VERSION}"
            )));
        }
        let kind = SegmentKind::try_from(get_u32(bytes, off::KIND))?;
        let lock_kind = LockKind::try_from(get_u32(bytes, off::LOCK_KIND))?;
        let payload_off = get_u64(bytes, off::PAYLOAD_OFF);
        let payload_len = get_u64(bytes, off::PAYLOAD_LEN);
        let total_len = get_u64(bytes, off::TOTAL_LEN);
        if payload_off < FIXED_LEN as u64
            || payload_off > MAX_HEADER_LEN as u64
            || payload_off % PAYLOAD_ALIGN as u64 != 0
        {
            return Err(corrupted(format!("payload offset {payload_off}")));
        }
        let header_end = payload_off as usize;
        if header_end > bytes.len() {
            return Err(corrupted(format!(
                "payload offset {payload_off} is past the {} bytes available",
                bytes.len()
            )));
        }
        if payload_off.checked_add(payload_len) != Some(total_len) {
            return Err(corrupted(format!(
                "total length {total_len} is not payload offset {payload_off} + payload length {payload_len}"
            )));
        }
        let stored_sum = get_u64(bytes, off::CHECKSUM);
        if checksum(&bytes[..header_end]) != stored_sum {
            return Err(corrupted("checksum mismatch (the header was overwritten)"));
        }
        // Variable-length fields: each must lie between the fixed part and the payload.
        let area = |field: usize, what: &str| -> Result<&[u8]> {
            let off = get_u32(bytes, field) as usize;
            let len = get_u32(bytes, field + 4) as usize;
            if len == 0 {
                return Ok(&[]);
            }
            match off.checked_add(len) {
                Some(end) if off >= FIXED_LEN && end <= header_end => Ok(&bytes[off..end]),
                _ => Err(corrupted(format!(
                    "{what} at {off}+{len} lies outside the header (128..{header_end})"
                ))),
            }
        };
        let type_name = String::from_utf8(area(off::TYPE_NAME, "type name")?.to_vec())
            .map_err(|_| corrupted("type name is not UTF-8"))?;
        let path = area(off::LOCK_PATH, "lock path")?;
        let lock_path = (!path.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(path)));
        let layout = layout::decode(area(off::LAYOUT, "layout descriptor")?)?;
        let type_size = get_u64(bytes, off::TYPE_SIZE);
        let type_align = get_u64(bytes, off::TYPE_ALIGN);
        if layout.size != type_size || layout.align != type_align {
            return Err(corrupted(format!(
                "layout descriptor says size {} align {}, header says {type_size} {type_align}",
                layout.size, layout.align
            )));
        }
        if !type_align.is_power_of_two() {
            return Err(corrupted(format!("type alignment {type_align}")));
        }
        let flags = get_u32(bytes, off::FLAGS);
        Ok(DecodedHeader {
            version,
            kind,
            lock_kind,
            state: HeaderState::from_raw(get_u32(bytes, off::STATE)),
            remove_when_unused: flags & FLAG_REMOVE_WHEN_UNUSED != 0,
            creator_pid: get_u32(bytes, off::CREATOR_PID),
            creator_start_time: get_u64(bytes, off::CREATOR_START),
            fingerprint: get_u64(bytes, off::FINGERPRINT),
            type_size,
            type_align,
            payload_off,
            payload_len,
            total_len,
            type_name,
            layout,
            lock_path,
            capacity: get_u64(bytes, off::CAPACITY),
        })
    }
}
