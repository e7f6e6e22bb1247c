//! Hostile bytes through every decoder: errors, never a panic, never an allocation larger than
//! the bytes given.

use super::liveness::SideState;
use super::ring::{RING_MAGIC, RingHeader, RingState};
use super::{ByteSource, DecodedHeader, HeaderState, header, seqlock};
use crate::format::layout;
use crate::{LockKind, SegmentKind, ShmSafe};
use std::time::Duration;

/// xorshift64: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.next() as u8;
        }
    }
}

/// A header as a channel or value of `[u64; 2]` with `payload_len` bytes at offset 256 would
/// have.
fn header_for(kind: SegmentKind, lock: LockKind, payload_len: u64, capacity: u64) -> DecodedHeader {
    DecodedHeader {
        version: header::VERSION,
        kind,
        lock_kind: lock,
        state: HeaderState::Ready,
        remove_when_unused: false,
        creator_pid: 1,
        creator_start_time: 1,
        fingerprint: <[u64; 2]>::FINGERPRINT,
        type_size: 16,
        type_align: 8,
        payload_off: 256,
        payload_len,
        total_len: 256 + payload_len,
        type_name: "array".into(),
        layout: layout::decode(&layout::encode(&<[u64; 2]>::LAYOUT)).expect("layout"),
        lock_path: None,
        capacity,
    }
}

#[test]
fn random_rings_decode_to_errors_or_bounded_states() {
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let ring_len = size_of::<RingHeader>() as u64 + 8 * 32;
    for round in 0..2000 {
        let mut b = vec![0u8; (256 + ring_len) as usize];
        noise.fill(&mut b);
        let h = header_for(SegmentKind::Channel, LockKind::None, ring_len, 8);
        if round % 2 == 0 {
            // Reach the checks behind the magic and capacity.
            b[256..264].copy_from_slice(&RING_MAGIC.to_ne_bytes());
            b[264..272].copy_from_slice(&8u64.to_ne_bytes());
            let slot = (noise.next() % 64).to_ne_bytes();
            b[272..280].copy_from_slice(&slot);
            let off = (noise.next() % 4096).to_ne_bytes();
            b[288..296].copy_from_slice(&off);
        }
        if let Ok(st) = RingState::read(&b, &h) {
            assert!(st.queued.is_none_or(|q| q <= st.meta.capacity));
            let msgs = st.peek(&b, &h, u64::MAX);
            assert!(msgs.len() as u64 <= st.meta.capacity);
            assert!(msgs.iter().all(|(_, m)| m.len() == 16));
        }
    }
}

#[test]
fn ring_decoding_rejects_payloads_too_small_and_indices_out_of_range() {
    let h = header_for(SegmentKind::Channel, LockKind::None, 64, 8);
    let b = vec![0u8; 4096];
    assert!(RingState::read(&b, &h).is_err());
    // A valid ring with head = 100, tail = 3: impossible, reported, never a panic.
    let ring_len = size_of::<RingHeader>() as u64 + 16 * 8;
    let h = header_for(SegmentKind::Channel, LockKind::None, ring_len, 8);
    let mut b = vec![0u8; (256 + ring_len) as usize];
    b[256..264].copy_from_slice(&RING_MAGIC.to_ne_bytes());
    b[264..272].copy_from_slice(&8u64.to_ne_bytes());
    b[272..280].copy_from_slice(&16u64.to_ne_bytes());
    b[288..296].copy_from_slice(&(size_of::<RingHeader>() as u64).to_ne_bytes());
    b[256 + 256..256 + 264].copy_from_slice(&100u64.to_ne_bytes());
    b[256 + 128..256 + 136].copy_from_slice(&3u64.to_ne_bytes());
    let st = RingState::read(&b, &h).expect("decodes");
    assert_eq!(st.queued, None);
    assert!(st.peek(&b, &h, 8).is_empty());
    // Free-running indices wrap: head = u64::MAX, tail = 3 is 4 queued messages.
    b[256 + 256..256 + 264].copy_from_slice(&u64::MAX.to_ne_bytes());
    let st = RingState::read(&b, &h).expect("decodes");
    assert_eq!(st.queued, Some(4));
    assert_eq!(st.peek(&b, &h, 8).len(), 4);
}

#[test]
fn random_seqlock_payloads_give_a_value_or_an_error() {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    for round in 0..500 {
        let len = if round % 3 == 0 { 100 } else { 1024 };
        let h = header_for(SegmentKind::Value, LockKind::SeqLock, len, 0);
        let mut b = vec![0u8; (256 + len) as usize];
        noise.fill(&mut b);
        // A copy of bytes cannot change under us: any sequence is stable, so a payload large
        // enough always yields the 16 bytes of one copy.
        match seqlock::read_snapshot(&b, &h, Duration::ZERO) {
            Ok(s) => assert_eq!(s.bytes.len(), 16),
            Err(e) => assert!(len < 512, "{e}"),
        }
    }
    let mut h = header_for(SegmentKind::Value, LockKind::SeqLock, 1024, 0);
    h.type_size = u64::MAX;
    assert!(seqlock::read_snapshot(&vec![0u8; 2048], &h, Duration::ZERO).is_err());
}

#[test]
fn random_side_tables_decode() {
    let mut noise = Noise(7);
    let mut b = vec![0u8; 600];
    for _ in 0..200 {
        noise.fill(&mut b);
        let s = SideState::read(&b, 0).expect("in bounds");
        assert!(s.holders.len() <= super::liveness::MAX_HOLDERS);
        assert!(SideState::read(&b, 100).is_err());
    }
}

#[test]
fn random_segments_never_pass_header_read() {
    let mut noise = Noise(99);
    for round in 0..500 {
        let mut b = vec![0u8; 1 + (noise.next() % 8192) as usize];
        noise.fill(&mut b);
        if round % 2 == 0 && b.len() >= 12 {
            b[..8].copy_from_slice(&header::MAGIC);
            b[8..12].copy_from_slice(&header::VERSION.to_ne_bytes());
        }
        assert!(header::read(&b).is_err());
        let raw = header::read_raw(&b);
        assert_eq!(raw.is_ok(), b.len() >= header::FIXED_LEN);
    }
}

#[test]
fn a_real_segment_decodes_through_the_format() {
    let seg = crate::Segment::anonymous_raw(64).expect("segment");
    let h = header::read(&seg).expect("valid");
    assert_eq!(h.kind, SegmentKind::Raw);
    let raw = header::read_raw(&seg).expect("raw");
    assert!(raw.has_magic());
    assert_eq!(raw.payload_off, h.payload_off);
    assert_eq!(seg.len_bytes(), seg.len() as u64);
}
