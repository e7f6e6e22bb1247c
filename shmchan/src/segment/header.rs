//! The segment header: its byte layout, how the creator builds it, and
//! [`DecodedHeader::parse`], the validating decoder used both when opening a segment and by
//! tools that only have the bytes.
//!
//! ```text
//! off  size  field
//!   0     8  magic "SHMCHAN\0"           (written last, Release: "the fields below are set")
//!   8     4  version (1)
//!  12     4  kind (1 value, 2 channel)
//!  16     4  lock kind (0 none, 1 seqlock, 2 fcntl)
//!  20     4  state (atomic: 0 uninit, 1 initialising, 2 ready (Release), 3 poisoned)
//!  24     4  creator pid
//!  28     4  flags (atomic: bit 0 = remove when the last handle detaches)
//!  32     8  creator start time (/proc/<pid>/stat field 22)
//!  40     8  fingerprint of the stored type
//!  48     8  type size          56  8  type align
//!  64     8  payload offset     72  8  payload length     80  8  total length
//!  88   4+4  layout descriptor offset, length
//!  96   4+4  type name offset, length
//! 104   4+4  lock file path offset, length (0, 0 when none)
//! 112     8  channel capacity (0 for values)
//! 120     8  checksum (FNV-1a 64 of bytes 8..payload offset, atomic words zeroed)
//! 128   ...  type name, lock path, layout descriptor; zero padding to a multiple of 128
//! payload offset: the caller's bytes (lock words, value or ring), 128-aligned
//! ```
//!
//! All integers are in native byte order: a segment is only shared on one machine.

use super::layout_codec::{self, LayoutDesc};
use super::{LockKind, SegmentKind};
use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `b"SHMCHAN\0"` as a native-endian word, so it can be stored atomically.
pub(crate) const MAGIC: u64 = u64::from_ne_bytes(crate::format::header::MAGIC);
pub(crate) use crate::format::header::FLAG_REMOVE_WHEN_UNUSED;
use crate::format::header::off;
pub use crate::format::header::{FIXED_LEN, MAX_HEADER_LEN, PAYLOAD_ALIGN, VERSION};

pub(crate) const OFF_MAGIC: usize = off::MAGIC;
const OFF_VERSION: usize = off::VERSION;
const OFF_KIND: usize = off::KIND;
const OFF_LOCK_KIND: usize = off::LOCK_KIND;
pub(crate) const OFF_STATE: usize = off::STATE;
const OFF_CREATOR_PID: usize = off::CREATOR_PID;
pub(crate) const OFF_FLAGS: usize = off::FLAGS;
const OFF_CREATOR_START: usize = off::CREATOR_START;
const OFF_FINGERPRINT: usize = off::FINGERPRINT;
const OFF_TYPE_SIZE: usize = off::TYPE_SIZE;
const OFF_TYPE_ALIGN: usize = off::TYPE_ALIGN;
const OFF_PAYLOAD_OFF: usize = off::PAYLOAD_OFF;
const OFF_PAYLOAD_LEN: usize = off::PAYLOAD_LEN;
const OFF_TOTAL_LEN: usize = off::TOTAL_LEN;
const OFF_LAYOUT: usize = off::LAYOUT;
const OFF_TYPE_NAME: usize = off::TYPE_NAME;
const OFF_LOCK_PATH: usize = off::LOCK_PATH;
const OFF_CAPACITY: usize = off::CAPACITY;
const OFF_CHECKSUM: usize = off::CHECKSUM;

pub(crate) const STATE_UNINIT: u32 = 0;
pub(crate) const STATE_INITIALISING: u32 = 1;
pub(crate) const STATE_READY: u32 = 2;
pub(crate) const STATE_POISONED: u32 = 3;

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

/// What the creator writes; the owned inputs of [`build_image`].
pub(crate) struct NewHeader<'a> {
    pub kind: SegmentKind,
    pub lock_kind: LockKind,
    pub creator_pid: u32,
    pub creator_start_time: u64,
    pub fingerprint: u64,
    pub layout: &'a crate::shm_safe::Layout,
    pub payload_len: usize,
    pub lock_path: Option<&'a Path>,
    pub capacity: u64,
}

/// The header image (everything up to the payload offset), with magic, state and flags zero:
/// the creator writes the image, then sets those words atomically.
pub(crate) struct Image {
    pub bytes: Vec<u8>,
    pub payload_off: usize,
    pub total_len: usize,
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(w)
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(w)
}

/// Rounds `n` up to a multiple of [`PAYLOAD_ALIGN`], `None` on overflow.
pub(crate) fn align_up(n: usize) -> Option<usize> {
    n.checked_add(PAYLOAD_ALIGN - 1)
        .map(|v| v & !(PAYLOAD_ALIGN - 1))
}

/// Builds the header image for a new segment.
pub(crate) fn build_image(h: &NewHeader<'_>) -> Result<Image> {
    let layout = layout_codec::encode(h.layout);
    let name = h.layout.type_name.as_bytes();
    let path = h.lock_path.map_or(&[][..], |p| p.as_os_str().as_bytes());
    let var_len = name.len() + path.len() + layout.len();
    let payload_off = align_up(FIXED_LEN + var_len)
        .filter(|&o| o <= MAX_HEADER_LEN)
        .ok_or_else(|| Error::InvalidArgument {
            what: format!(
                "the layout descriptor of `{}` and the lock path need {} bytes, more than the {} a header may hold",
                h.layout.type_name,
                FIXED_LEN + var_len,
                MAX_HEADER_LEN
            ),
        })?;
    let total_len = payload_off
        .checked_add(h.payload_len)
        .ok_or_else(|| Error::InvalidSize {
            call: "size check",
            target: crate::error::Target::Other {
                what: "new segment".into(),
            },
            requested: h.payload_len as u64,
            reason: "the payload length overflows".into(),
        })?;

    let mut b = vec![0u8; payload_off];
    put_u32(&mut b, OFF_VERSION, VERSION);
    put_u32(&mut b, OFF_KIND, h.kind as u32);
    put_u32(&mut b, OFF_LOCK_KIND, h.lock_kind as u32);
    put_u32(&mut b, OFF_CREATOR_PID, h.creator_pid);
    put_u64(&mut b, OFF_CREATOR_START, h.creator_start_time);
    put_u64(&mut b, OFF_FINGERPRINT, h.fingerprint);
    put_u64(&mut b, OFF_TYPE_SIZE, h.layout.size as u64);
    put_u64(&mut b, OFF_TYPE_ALIGN, h.layout.align as u64);
    put_u64(&mut b, OFF_PAYLOAD_OFF, payload_off as u64);
    put_u64(&mut b, OFF_PAYLOAD_LEN, h.payload_len as u64);
    put_u64(&mut b, OFF_TOTAL_LEN, total_len as u64);
    put_u64(&mut b, OFF_CAPACITY, h.capacity);

    let mut at = FIXED_LEN;
    let mut place = |b: &mut Vec<u8>, field: usize, data: &[u8]| {
        if !data.is_empty() {
            b[at..at + data.len()].copy_from_slice(data);
            put_u32(b, field, at as u32);
            put_u32(b, field + 4, data.len() as u32);
            at += data.len();
        }
    };
    place(&mut b, OFF_TYPE_NAME, name);
    place(&mut b, OFF_LOCK_PATH, path);
    place(&mut b, OFF_LAYOUT, &layout);
    let sum = checksum(&b);
    put_u64(&mut b, OFF_CHECKSUM, sum);
    Ok(Image {
        bytes: b,
        payload_off,
        total_len,
    })
}

/// FNV-1a 64 over the header bytes with the words that change after creation (magic, state,
/// flags) and the checksum itself zeroed.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, &x) in bytes.iter().enumerate() {
        let skip = i < 8
            || (OFF_STATE..OFF_STATE + 4).contains(&i)
            || (OFF_FLAGS..OFF_FLAGS + 4).contains(&i)
            || (OFF_CHECKSUM..OFF_CHECKSUM + 8).contains(&i);
        h ^= if skip { 0 } else { u64::from(x) };
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// How many bytes of the segment hold the header, read from the fixed part (at least
/// [`FIXED_LEN`], at most [`MAX_HEADER_LEN`]); `fixed` must hold the first `FIXED_LEN` bytes.
pub(crate) fn header_len(fixed: &[u8]) -> usize {
    if fixed.len() < FIXED_LEN {
        return FIXED_LEN;
    }
    let off = get_u64(fixed, OFF_PAYLOAD_OFF);
    (off.clamp(FIXED_LEN as u64, MAX_HEADER_LEN as u64)) as usize
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
        if get_u64(bytes, OFF_MAGIC) != MAGIC {
            return Err(not_shmchan("no SHMCHAN magic at offset 0"));
        }
        let version = get_u32(bytes, OFF_VERSION);
        if version != VERSION {
            return Err(not_shmchan(format!(
                "header version {version}, this build reads version {VERSION}"
            )));
        }
        let kind = SegmentKind::try_from(get_u32(bytes, OFF_KIND))?;
        let lock_kind = LockKind::try_from(get_u32(bytes, OFF_LOCK_KIND))?;
        let payload_off = get_u64(bytes, OFF_PAYLOAD_OFF);
        let payload_len = get_u64(bytes, OFF_PAYLOAD_LEN);
        let total_len = get_u64(bytes, OFF_TOTAL_LEN);
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
        let stored_sum = get_u64(bytes, OFF_CHECKSUM);
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
        let type_name = String::from_utf8(area(OFF_TYPE_NAME, "type name")?.to_vec())
            .map_err(|_| corrupted("type name is not UTF-8"))?;
        let path = area(OFF_LOCK_PATH, "lock path")?;
        let lock_path = (!path.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(path)));
        let layout = layout_codec::decode(area(OFF_LAYOUT, "layout descriptor")?)?;
        let type_size = get_u64(bytes, OFF_TYPE_SIZE);
        let type_align = get_u64(bytes, OFF_TYPE_ALIGN);
        if layout.size != type_size || layout.align != type_align {
            return Err(corrupted(format!(
                "layout descriptor says size {} align {}, header says {type_size} {type_align}",
                layout.size, layout.align
            )));
        }
        if !type_align.is_power_of_two() {
            return Err(corrupted(format!("type alignment {type_align}")));
        }
        let flags = get_u32(bytes, OFF_FLAGS);
        Ok(DecodedHeader {
            version,
            kind,
            lock_kind,
            state: HeaderState::from_raw(get_u32(bytes, OFF_STATE)),
            remove_when_unused: flags & FLAG_REMOVE_WHEN_UNUSED != 0,
            creator_pid: get_u32(bytes, OFF_CREATOR_PID),
            creator_start_time: get_u64(bytes, OFF_CREATOR_START),
            fingerprint: get_u64(bytes, OFF_FINGERPRINT),
            type_size,
            type_align,
            payload_off,
            payload_len,
            total_len,
            type_name,
            layout,
            lock_path,
            capacity: get_u64(bytes, OFF_CAPACITY),
        })
    }
}

/// Fills in the atomic words of an image so it parses as a ready header (tests only).
#[cfg(test)]
pub(crate) fn finish_for_test(img: &mut [u8]) {
    put_u64(img, OFF_MAGIC, MAGIC);
    put_u32(img, OFF_STATE, STATE_READY);
}

/// Recomputes the checksum of a modified image (tests only: lets hostile-header tests reach the
/// checks behind the checksum).
#[cfg(test)]
pub(crate) fn reseal_for_test(img: &mut [u8]) {
    let end = header_len(img).min(img.len());
    let sum = checksum(&img[..end]);
    put_u64(img, OFF_CHECKSUM, sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm_safe::ShmSafe;

    fn image() -> Vec<u8> {
        let img = build_image(&NewHeader {
            kind: SegmentKind::Value,
            lock_kind: LockKind::SeqLock,
            creator_pid: 42,
            creator_start_time: 7,
            fingerprint: <[u64; 3]>::FINGERPRINT,
            layout: &<[u64; 3]>::LAYOUT,
            payload_len: 1000,
            lock_path: Some(Path::new("/tmp/x.lock")),
            capacity: 0,
        })
        .expect("builds");
        let mut b = img.bytes;
        finish_for_test(&mut b);
        b
    }

    #[test]
    fn built_header_parses_back() {
        let b = image();
        assert_eq!(b.len() % PAYLOAD_ALIGN, 0);
        let h = DecodedHeader::parse(&b).expect("parses");
        assert_eq!(h.kind, SegmentKind::Value);
        assert_eq!(h.lock_kind, LockKind::SeqLock);
        assert_eq!(h.state, HeaderState::Ready);
        assert_eq!((h.creator_pid, h.creator_start_time), (42, 7));
        assert_eq!(h.payload_off as usize, b.len());
        assert_eq!(h.total_len, h.payload_off + 1000);
        assert_eq!(h.type_name, "array");
        assert_eq!(h.lock_path.as_deref(), Some(Path::new("/tmp/x.lock")));
        assert_eq!(h.layout.fingerprint(), h.fingerprint);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = image();
        for n in 0..b.len() {
            assert!(DecodedHeader::parse(&b[..n]).is_err(), "accepted {n} bytes");
        }
    }

    #[test]
    fn random_bytes_are_never_accepted() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut b = vec![0u8; 4096];
        for round in 0..500 {
            for x in b.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *x = seed as u8;
            }
            if round % 2 == 0 {
                // Give half of them the right magic and version, to reach the deeper checks.
                put_u64(&mut b, OFF_MAGIC, MAGIC);
                put_u32(&mut b, OFF_VERSION, VERSION);
            }
            assert!(DecodedHeader::parse(&b).is_err());
        }
    }

    #[test]
    fn hostile_offsets_past_the_end_are_rejected_even_with_a_valid_checksum() {
        let cases: [(usize, u64); 5] = [
            (OFF_PAYLOAD_OFF, u64::MAX),
            (OFF_PAYLOAD_OFF, 1 << 20),
            (OFF_PAYLOAD_LEN, u64::MAX),
            (OFF_LAYOUT, (u64::from(u32::MAX) << 32) | 200),
            (OFF_TYPE_NAME, (16u64 << 32) | u64::from(u32::MAX - 4)),
        ];
        for (field, value) in cases {
            let mut b = image();
            put_u64(&mut b, field, value);
            reseal_for_test(&mut b);
            let r = DecodedHeader::parse(&b);
            assert!(
                matches!(r, Err(Error::Corrupted { .. })),
                "field {field} = {value:#x}: {r:?}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_is_caught() {
        let good = image();
        for i in 8..good.len() {
            if (OFF_STATE..OFF_STATE + 4).contains(&i) || (OFF_FLAGS..OFF_FLAGS + 4).contains(&i) {
                continue;
            }
            let mut b = good.clone();
            b[i] ^= 0x5a;
            assert!(DecodedHeader::parse(&b).is_err(), "flip at {i} accepted");
        }
    }
}
