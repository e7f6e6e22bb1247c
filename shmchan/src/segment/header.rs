//! How a creator builds a segment header (the image written before the payload), the inverse
//! of [`crate::format::DecodedHeader::parse`]. The format itself is described once, in
//! [`crate::format::header`].

use super::{LockKind, SegmentKind};
use crate::error::{Error, Result};
pub(crate) use crate::format::decoded::{
    MAGIC, STATE_INITIALISING, STATE_POISONED, STATE_READY, STATE_UNINIT, checksum,
};
use crate::format::layout;
#[cfg(test)]
use crate::format::{DecodedHeader, HeaderState};

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) use crate::format::header::FLAG_REMOVE_WHEN_UNUSED;
use crate::format::header::off;
pub(crate) use crate::format::header::{FIXED_LEN, MAX_HEADER_LEN, PAYLOAD_ALIGN, VERSION};

pub(crate) const OFF_MAGIC: usize = off::MAGIC;
pub(crate) const OFF_STATE: usize = off::STATE;
pub(crate) const OFF_FLAGS: usize = off::FLAGS;

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
    let layout = layout::encode(h.layout);
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
    put_u32(&mut b, off::VERSION, VERSION);
    put_u32(&mut b, off::KIND, h.kind as u32);
    put_u32(&mut b, off::LOCK_KIND, h.lock_kind as u32);
    put_u32(&mut b, off::CREATOR_PID, h.creator_pid);
    put_u64(&mut b, off::CREATOR_START, h.creator_start_time);
    put_u64(&mut b, off::FINGERPRINT, h.fingerprint);
    put_u64(&mut b, off::TYPE_SIZE, h.layout.size as u64);
    put_u64(&mut b, off::TYPE_ALIGN, h.layout.align as u64);
    put_u64(&mut b, off::PAYLOAD_OFF, payload_off as u64);
    put_u64(&mut b, off::PAYLOAD_LEN, h.payload_len as u64);
    put_u64(&mut b, off::TOTAL_LEN, total_len as u64);
    put_u64(&mut b, off::CAPACITY, h.capacity);

    let mut at = FIXED_LEN;
    let mut place = |b: &mut Vec<u8>, field: usize, data: &[u8]| {
        if !data.is_empty() {
            b[at..at + data.len()].copy_from_slice(data);
            put_u32(b, field, at as u32);
            put_u32(b, field + 4, data.len() as u32);
            at += data.len();
        }
    };
    place(&mut b, off::TYPE_NAME, name);
    place(&mut b, off::LOCK_PATH, path);
    place(&mut b, off::LAYOUT, &layout);
    let sum = checksum(&b);
    put_u64(&mut b, off::CHECKSUM, sum);
    Ok(Image {
        bytes: b,
        payload_off,
        total_len,
    })
}

/// How many bytes of the segment hold the header, read from the fixed part (at least
/// [`FIXED_LEN`], at most [`MAX_HEADER_LEN`]); `fixed` must hold the first `FIXED_LEN` bytes.
pub(crate) fn header_len(fixed: &[u8]) -> usize {
    if fixed.len() < FIXED_LEN {
        return FIXED_LEN;
    }
    let off = get_u64(fixed, off::PAYLOAD_OFF);
    (off.clamp(FIXED_LEN as u64, MAX_HEADER_LEN as u64)) as usize
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
    put_u64(img, off::CHECKSUM, sum);
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
                put_u32(&mut b, off::VERSION, VERSION);
            }
            assert!(DecodedHeader::parse(&b).is_err());
        }
    }

    #[test]
    fn hostile_offsets_past_the_end_are_rejected_even_with_a_valid_checksum() {
        let cases: [(usize, u64); 5] = [
            (off::PAYLOAD_OFF, u64::MAX),
            (off::PAYLOAD_OFF, 1 << 20),
            (off::PAYLOAD_LEN, u64::MAX),
            (off::LAYOUT, (u64::from(u32::MAX) << 32) | 200),
            (off::TYPE_NAME, (16u64 << 32) | u64::from(u32::MAX - 4)),
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
