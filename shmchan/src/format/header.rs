//! The segment header: the fixed 128 bytes every shmchan segment starts with, then the
//! variable part (type name, lock file path, layout descriptor), then the payload.
//!
//! ```text
//! off  size  field
//!   0     8  magic "SHMCHAN\0"           (stored last, Release: "the fields below are set")
//!   8     4  version (1)
//!  12     4  kind (1 value, 2 channel, 3 raw bytes)
//!  16     4  lock kind (0 none, 1 seqlock, 2 fcntl)
//!  20     4  state (atomic: 0 uninitialised, 1 initialising, 2 ready, 3 poisoned)
//!  24     4  creator pid
//!  28     4  flags (atomic: bit 0 = the last handle to detach removes the segment)
//!  32     8  creator start time (clock ticks since boot, /proc/<pid>/stat field 22)
//!  40     8  fingerprint of the stored type
//!  48     8  type size          56  8  type align
//!  64     8  payload offset     72  8  payload length     80  8  total length
//!  88   4+4  layout descriptor offset, length
//!  96   4+4  type name offset, length
//! 104   4+4  lock file path offset, length (0, 0 when none)
//! 112     8  channel capacity (0 for values)
//! 120     8  checksum (FNV-1a 64 of bytes 8..payload offset, the atomic words counted as zero)
//! 128   ...  type name, lock path, layout descriptor; zero padding to a multiple of 128
//! ```
//!
//! [`RawHeader`] is that fixed part as a struct; [`DecodedHeader::parse`] validates all of it.

use super::DecodedHeader;
use super::source::ByteSource;
use crate::error::Result;
use core::mem::{offset_of, size_of};

/// `b"SHMCHAN\0"`, the first eight bytes of every shmchan segment.
pub const MAGIC: [u8; 8] = *b"SHMCHAN\0";
/// The header format version this crate writes and reads.
pub const VERSION: u32 = 1;
/// Bytes of the fixed part of the header (`size_of::<RawHeader>()`).
pub const FIXED_LEN: usize = size_of::<RawHeader>();
/// Alignment of the payload offset (two cache lines, against false sharing with the header).
pub const PAYLOAD_ALIGN: usize = 128;
/// The largest header (fixed + variable part) accepted.
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// The `flags` bit: whoever detaches last removes the segment (cleared by `persist`).
pub const FLAG_REMOVE_WHEN_UNUSED: u32 = 1;

/// Where a variable-length field of the header lies: `offset` from the segment start and
/// `len` bytes, both 0 when the field is absent.
///
/// # Examples
///
/// ```
/// let s = shmchan::format::header::Span { offset: 128, len: 4 };
/// assert_eq!(s.end(), 132);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Span {
    /// Offset from the start of the segment.
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Span {
    /// One past the last byte (never overflows: computed in `u64`).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::format::header::Span { offset: 200, len: u32::MAX };
    /// assert_eq!(s.end(), 200 + u64::from(u32::MAX));
    /// ```
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.len)
    }
}

/// The fixed part of a segment header, field by field, as stored (not validated).
///
/// The words `state` and `flags` change after creation and are accessed atomically in shared
/// memory; here they are plain copies. Use it to show what a damaged header claims;
/// [`DecodedHeader::parse`] is the validating decoder.
///
/// # Examples
///
/// ```
/// use shmchan::format::header::{RawHeader, FIXED_LEN};
///
/// let seg = shmchan::Segment::anonymous_raw(8)?;
/// let mut bytes = [0u8; FIXED_LEN];
/// seg.copy_out(0, &mut bytes)?;
/// let raw = RawHeader::decode(&bytes).expect("128 bytes");
/// assert_eq!(raw.creator_pid, std::process::id());
/// assert!(RawHeader::decode(&bytes[..100]).is_none());
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RawHeader {
    /// [`MAGIC`] once the segment is set up.
    pub magic: [u8; 8],
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// What the payload holds (`SegmentKind as u32`).
    pub kind: u32,
    /// Which lock guards it (`LockKind as u32`).
    pub lock_kind: u32,
    /// 0 uninitialised, 1 initialising, 2 ready, 3 poisoned.
    pub state: u32,
    /// The creating process.
    pub creator_pid: u32,
    /// Bit 0: [`FLAG_REMOVE_WHEN_UNUSED`].
    pub flags: u32,
    /// The creator's start time (clock ticks since boot).
    pub creator_start_time: u64,
    /// `ShmSafe::FINGERPRINT` of the stored type.
    pub fingerprint: u64,
    /// `size_of` the stored type.
    pub type_size: u64,
    /// `align_of` the stored type.
    pub type_align: u64,
    /// Where the payload starts (a multiple of [`PAYLOAD_ALIGN`]).
    pub payload_off: u64,
    /// Payload length.
    pub payload_len: u64,
    /// `payload_off + payload_len`.
    pub total_len: u64,
    /// The serialised layout descriptor.
    pub layout: Span,
    /// The stored type's name (UTF-8).
    pub type_name: Span,
    /// The fcntl lock file's path (`LockKind::Fcntl`).
    pub lock_path: Span,
    /// Channel capacity in messages (0 for values).
    pub capacity: u64,
    /// FNV-1a 64 over the header, see the module docs.
    pub checksum: u64,
}

// The format is this table; the struct must not drift from it.
const _: () = {
    assert!(size_of::<RawHeader>() == 128);
    assert!(offset_of!(RawHeader, version) == 8);
    assert!(offset_of!(RawHeader, kind) == 12);
    assert!(offset_of!(RawHeader, lock_kind) == 16);
    assert!(offset_of!(RawHeader, state) == 20);
    assert!(offset_of!(RawHeader, creator_pid) == 24);
    assert!(offset_of!(RawHeader, flags) == 28);
    assert!(offset_of!(RawHeader, creator_start_time) == 32);
    assert!(offset_of!(RawHeader, fingerprint) == 40);
    assert!(offset_of!(RawHeader, type_size) == 48);
    assert!(offset_of!(RawHeader, type_align) == 56);
    assert!(offset_of!(RawHeader, payload_off) == 64);
    assert!(offset_of!(RawHeader, payload_len) == 72);
    assert!(offset_of!(RawHeader, total_len) == 80);
    assert!(offset_of!(RawHeader, layout) == 88);
    assert!(offset_of!(RawHeader, type_name) == 96);
    assert!(offset_of!(RawHeader, lock_path) == 104);
    assert!(offset_of!(RawHeader, capacity) == 112);
    assert!(offset_of!(RawHeader, checksum) == 120);
    assert!(size_of::<Span>() == 8);
};

/// Offsets of the fixed header's fields, for code that works on the bytes.
pub(crate) mod off {
    use super::RawHeader;
    use core::mem::offset_of;

    pub(crate) const MAGIC: usize = offset_of!(RawHeader, magic);
    pub(crate) const VERSION: usize = offset_of!(RawHeader, version);
    pub(crate) const KIND: usize = offset_of!(RawHeader, kind);
    pub(crate) const LOCK_KIND: usize = offset_of!(RawHeader, lock_kind);
    pub(crate) const STATE: usize = offset_of!(RawHeader, state);
    pub(crate) const CREATOR_PID: usize = offset_of!(RawHeader, creator_pid);
    pub(crate) const FLAGS: usize = offset_of!(RawHeader, flags);
    pub(crate) const CREATOR_START: usize = offset_of!(RawHeader, creator_start_time);
    pub(crate) const FINGERPRINT: usize = offset_of!(RawHeader, fingerprint);
    pub(crate) const TYPE_SIZE: usize = offset_of!(RawHeader, type_size);
    pub(crate) const TYPE_ALIGN: usize = offset_of!(RawHeader, type_align);
    pub(crate) const PAYLOAD_OFF: usize = offset_of!(RawHeader, payload_off);
    pub(crate) const PAYLOAD_LEN: usize = offset_of!(RawHeader, payload_len);
    pub(crate) const TOTAL_LEN: usize = offset_of!(RawHeader, total_len);
    pub(crate) const LAYOUT: usize = offset_of!(RawHeader, layout);
    pub(crate) const TYPE_NAME: usize = offset_of!(RawHeader, type_name);
    pub(crate) const LOCK_PATH: usize = offset_of!(RawHeader, lock_path);
    pub(crate) const CAPACITY: usize = offset_of!(RawHeader, capacity);
    pub(crate) const CHECKSUM: usize = offset_of!(RawHeader, checksum);
}

/// Native-endian `u32` at `at`, `None` past the end.
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Native-endian `u64` at `at`, `None` past the end.
pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn span_at(b: &[u8], at: usize) -> Option<Span> {
    Some(Span {
        offset: u32_at(b, at)?,
        len: u32_at(b, at + 4)?,
    })
}

impl RawHeader {
    /// The fixed fields of `bytes` (at least [`FIXED_LEN`] of them), `None` if shorter.
    /// Nothing is validated, not even the magic.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::header::RawHeader;
    /// assert!(RawHeader::decode(&[0u8; 127]).is_none());
    /// let raw = RawHeader::decode(&[0u8; 128]).expect("long enough");
    /// assert!(!raw.has_magic());
    /// ```
    pub fn decode(bytes: &[u8]) -> Option<RawHeader> {
        let b = bytes.get(..FIXED_LEN)?;
        Some(RawHeader {
            magic: b.get(off::MAGIC..off::MAGIC + 8)?.try_into().ok()?,
            version: u32_at(b, off::VERSION)?,
            kind: u32_at(b, off::KIND)?,
            lock_kind: u32_at(b, off::LOCK_KIND)?,
            state: u32_at(b, off::STATE)?,
            creator_pid: u32_at(b, off::CREATOR_PID)?,
            flags: u32_at(b, off::FLAGS)?,
            creator_start_time: u64_at(b, off::CREATOR_START)?,
            fingerprint: u64_at(b, off::FINGERPRINT)?,
            type_size: u64_at(b, off::TYPE_SIZE)?,
            type_align: u64_at(b, off::TYPE_ALIGN)?,
            payload_off: u64_at(b, off::PAYLOAD_OFF)?,
            payload_len: u64_at(b, off::PAYLOAD_LEN)?,
            total_len: u64_at(b, off::TOTAL_LEN)?,
            layout: span_at(b, off::LAYOUT)?,
            type_name: span_at(b, off::TYPE_NAME)?,
            lock_path: span_at(b, off::LOCK_PATH)?,
            capacity: u64_at(b, off::CAPACITY)?,
            checksum: u64_at(b, off::CHECKSUM)?,
        })
    }

    /// Whether the magic is shmchan's.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::header::{RawHeader, MAGIC};
    /// let mut b = [0u8; 128];
    /// b[..8].copy_from_slice(&MAGIC);
    /// assert!(RawHeader::decode(&b).is_some_and(|r| r.has_magic()));
    /// ```
    pub fn has_magic(&self) -> bool {
        self.magic == MAGIC
    }

    /// How many bytes hold the whole header according to the payload offset it claims,
    /// clamped to `FIXED_LEN..=MAX_HEADER_LEN` (so a hostile value cannot make a reader copy
    /// more than a header may hold).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::header::{RawHeader, MAX_HEADER_LEN};
    /// let raw = RawHeader { payload_off: u64::MAX, ..RawHeader::default() };
    /// assert_eq!(raw.claimed_header_len(), MAX_HEADER_LEN as u64);
    /// ```
    pub fn claimed_header_len(&self) -> u64 {
        self.payload_off
            .clamp(FIXED_LEN as u64, MAX_HEADER_LEN as u64)
    }

    /// Whether the "remove when unused" flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::header::{RawHeader, FLAG_REMOVE_WHEN_UNUSED};
    /// let raw = RawHeader { flags: FLAG_REMOVE_WHEN_UNUSED, ..RawHeader::default() };
    /// assert!(raw.remove_when_unused());
    /// ```
    pub fn remove_when_unused(&self) -> bool {
        self.flags & FLAG_REMOVE_WHEN_UNUSED != 0
    }
}

/// Reads the fixed part of the header from `src` without validating it.
///
/// # Errors
///
/// [`Error::Corrupted`](crate::Error::Corrupted) if `src` is shorter than [`FIXED_LEN`], or the
/// read's error.
///
/// # Examples
///
/// ```
/// use shmchan::format::header;
///
/// let short: &[u8] = &[0u8; 10];
/// assert!(header::read_raw(short).is_err());
/// ```
pub fn read_raw(src: &(impl ByteSource + ?Sized)) -> Result<RawHeader> {
    let mut b = [0u8; FIXED_LEN];
    src.read_at(0, &mut b)?;
    // `b` holds exactly FIXED_LEN bytes, which `decode` always accepts.
    RawHeader::decode(&b).ok_or_else(|| super::source::outside(0, FIXED_LEN as u64, 0))
}

/// Reads and validates the whole header of `src` ([`DecodedHeader::parse`]), copying at most
/// [`MAX_HEADER_LEN`] bytes, and checks that `src` really holds the `total_len` bytes the
/// header claims.
///
/// # Errors
///
/// [`Error::NotShmchan`](crate::Error::NotShmchan) without the magic or with another version,
/// [`Error::Corrupted`](crate::Error::Corrupted) for any impossible field.
///
/// # Examples
///
/// ```
/// let seg = shmchan::Segment::anonymous_raw(8)?;
/// let h = shmchan::format::header::read(&seg)?;
/// assert_eq!(h.payload_len, 8);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub fn read(src: &(impl ByteSource + ?Sized)) -> Result<DecodedHeader> {
    let len = src.len_bytes();
    if len < FIXED_LEN as u64 {
        return Err(crate::Error::NotShmchan {
            target: crate::Target::Other {
                what: "the segment".into(),
            },
            reason: format!("{len} bytes is shorter than a header ({FIXED_LEN})"),
        });
    }
    let raw = read_raw(src)?;
    let want = raw.claimed_header_len().min(len);
    let bytes = src.read_vec(0, want)?;
    let h = DecodedHeader::parse(&bytes)?;
    if h.total_len > len {
        return Err(crate::Error::Corrupted {
            what: format!(
                "segment header: it claims {} bytes, the segment has {len}",
                h.total_len
            ),
        });
    }
    Ok(h)
}

impl From<u32> for crate::format::HeaderState {
    fn from(v: u32) -> Self {
        crate::format::HeaderState::from_raw(v)
    }
}

impl From<crate::format::HeaderState> for u32 {
    fn from(s: crate::format::HeaderState) -> u32 {
        use crate::format::HeaderState::*;
        match s {
            Uninitialised => 0,
            Initialising => 1,
            Ready => 2,
            Poisoned => 3,
            Unknown(v) => v,
        }
    }
}
