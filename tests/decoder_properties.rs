//! Property tests of the decoders of bytes another process wrote (`shmchan::format`): the
//! segment header, the layout descriptor, the seqlock block, the ring header and the liveness
//! tables, and attaching to a whole segment (value or channel). Random bytes, every truncation
//! and single-byte mutations of valid images give `Err` (or, where the mutated byte is not
//! covered by a check, a valid result), never a panic.
//!
//! These run on stable in `cargo test`; the same decoders are fuzzed under `fuzz/` with
//! cargo-fuzz (nightly). This file also writes the fuzzers' seed corpus:
//! `SHMCHAN_WRITE_FUZZ_CORPUS=1 cargo test --test decoder_properties fuzz_seed_corpus` rewrites
//! `fuzz/corpus/*/valid-*` from segments created by this build (run it after a format change);
//! without the variable the test checks that the committed valid seeds still decode.
//!
//! The cases come from a small deterministic generator (SplitMix64): a failure prints the seed,
//! and `SHMCHAN_PROPTEST_SEED=<seed>` replays it. `SHMCHAN_PROPTEST_CASES` scales the number of
//! random cases (default 1).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use shmchan::format::broadcast::BroadcastState;
use shmchan::format::header::{self, FIXED_LEN, RawHeader};
use shmchan::format::liveness::SideState;
use shmchan::format::ring::{PEEK_MAX, RingState};
use shmchan::format::seqlock::{read_owner, read_snapshot};
use shmchan::format::{DecodedHeader, HeaderState, layout as layout_codec};
use shmchan::{Error, FcntlLock, Key, Receiver, Segment, Sender, SeqLock, Shared, ShmSafe};

/// The same definition as in `fuzz/fuzz_targets/attach.rs`, so the seed corpus written here
/// carries the fingerprint the fuzz target opens with.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Tick {
    /// A sequence number.
    pub seq: u64,
    /// A price.
    pub price: f64,
    /// Some levels.
    pub levels: [u32; 4],
}

/// Nested structs and arrays of arrays, for a longer layout descriptor.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Book {
    /// Nested structs in an array.
    pub bids: [Tick; 2],
    /// An array of arrays.
    pub names: [[u8; 8]; 3],
    /// A small integer.
    pub flags: u16,
    /// Explicit padding.
    pub _pad: [u8; 6],
}

/// SplitMix64: a tiny, good-enough generator of test cases (no crate needed).
struct Rng(u64);

impl Rng {
    fn from_env() -> (Rng, u64) {
        let seed = std::env::var("SHMCHAN_PROPTEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5348_4d43_4841_4e00);
        (Rng(seed), seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

fn cases(base: usize) -> usize {
    let scale = std::env::var("SHMCHAN_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1usize);
    base.saturating_mul(scale.max(1))
}

/// Runs `f`, turning a panic into a test failure that names the case and the seed.
fn no_panic<R>(what: &str, seed: u64, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => panic!("{what} panicked (replay with SHMCHAN_PROPTEST_SEED={seed})"),
    }
}

/// The values 8 single-byte mutations of `x` take: bit flips at both ends, the extremes, and
/// neighbours (off-by-one lengths and offsets).
fn mutations(x: u8, rng: &mut Rng) -> [u8; 8] {
    [
        x ^ 0x01,
        x ^ 0x80,
        0x00,
        0xff,
        x.wrapping_add(1),
        x.wrapping_sub(1),
        x ^ 0x40,
        rng.byte(),
    ]
}

fn unique_name(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "/shmchan-suite-props-{}-{what}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn dev_shm(name: &str) -> PathBuf {
    Path::new("/dev/shm").join(name.trim_start_matches('/'))
}

/// Whole segments as a creator leaves them: a SeqLock value, a keyed channel with two
/// messages in flight, an FcntlLock value (its header names a lock file), a raw segment.
/// Each is copied out of a live segment created by this build, so the bytes follow the current
/// format exactly.
fn valid_segments() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    let name = unique_name("value");
    let key = Key::name(&name).expect("name");
    let value = Shared::<Tick, SeqLock>::create_with(
        key,
        Tick {
            seq: 7,
            price: 1.5,
            levels: [1, 2, 3, 4],
        },
    )
    .expect("create a SeqLock value");
    out.push((
        "seqlock-value",
        std::fs::read(dev_shm(&name)).expect("read /dev/shm"),
    ));
    drop(value);

    let name = unique_name("book");
    let key = Key::name(&name).expect("name");
    let book = Shared::<Book, SeqLock>::create(key).expect("create a nested value");
    out.push((
        "seqlock-nested",
        std::fs::read(dev_shm(&name)).expect("read /dev/shm"),
    ));
    drop(book);

    let name = unique_name("channel");
    let key = Key::name(&name).expect("name");
    let rx = Receiver::<Tick>::create(key, 4).expect("create a channel");
    let tx = Sender::<Tick>::open(key).expect("open its sender");
    tx.send(Tick::default()).expect("send");
    tx.send(Tick {
        seq: 1,
        ..Tick::default()
    })
    .expect("send");
    assert_eq!(rx.try_recv().expect("recv").map(|t| t.seq), Some(0));
    out.push((
        "channel",
        std::fs::read(dev_shm(&name)).expect("read /dev/shm"),
    ));
    drop((tx, rx));

    let name = unique_name("mpmc");
    let key = Key::name(&name).expect("name");
    let rx = shmchan::mpmc::Receiver::<Tick>::create(key, 4).expect("create an mpmc queue");
    let tx = shmchan::mpmc::Sender::<Tick>::open(key).expect("open a producer");
    tx.send(Tick::default()).expect("send");
    tx.send(Tick {
        seq: 1,
        ..Tick::default()
    })
    .expect("send");
    assert_eq!(rx.try_recv().expect("recv").map(|t| t.seq), Some(0));
    out.push((
        "mpmc",
        std::fs::read(dev_shm(&name)).expect("read /dev/shm"),
    ));
    drop((tx, rx));

    // A broadcast channel with a publisher, a fork successor's worth of entries, two
    // subscribers at different cursors and a message each has not read.
    let name = unique_name("broadcast");
    let key = Key::name(&name).expect("name");
    let tx = shmchan::broadcast::Publisher::<Tick>::options()
        .capacity(2)
        .max_subscribers(2)
        .create(key)
        .expect("create a broadcast channel");
    let fast = shmchan::broadcast::Subscriber::<Tick>::open(key).expect("subscribe");
    let slow = shmchan::broadcast::Subscriber::<Tick>::open(key).expect("subscribe");
    tx.send(Tick::default()).expect("send");
    assert_eq!(fast.try_recv().expect("recv").map(|t| t.seq), Some(0));
    out.push((
        "broadcast",
        std::fs::read(dev_shm(&name)).expect("read /dev/shm"),
    ));
    drop((fast, slow, tx));

    let fcntl = Shared::<u64, FcntlLock>::anonymous(5).expect("an fcntl value");
    let seg = fcntl.segment();
    let mut bytes = vec![0u8; seg.header().total_len as usize];
    seg.copy_out(0, &mut bytes).expect("copy out");
    out.push(("fcntl-value", bytes));

    let raw = Segment::anonymous_raw(64).expect("a raw segment");
    let mut bytes = vec![0u8; raw.header().total_len as usize];
    raw.copy_out(0, &mut bytes).expect("copy out");
    out.push(("raw", bytes));
    out
}

/// The header part of a segment image (everything before the payload).
fn header_of(segment: &[u8]) -> Vec<u8> {
    let h = DecodedHeader::parse(segment).expect("a valid segment parses");
    segment[..h.payload_off as usize].to_vec()
}

fn valid_layouts() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("u64", layout_codec::encode(&<u64 as ShmSafe>::LAYOUT)),
        (
            "array",
            layout_codec::encode(&<[u16; 3] as ShmSafe>::LAYOUT),
        ),
        ("tick", layout_codec::encode(&Tick::LAYOUT)),
        ("nested", layout_codec::encode(&Book::LAYOUT)),
    ]
}

/// What a successfully decoded header promises its users.
fn check_decoded(h: &DecodedHeader, input_len: usize) {
    assert_eq!(h.payload_off.checked_add(h.payload_len), Some(h.total_len));
    assert!(h.payload_off as usize <= input_len);
    assert!(h.type_align.is_power_of_two());
    assert_eq!((h.layout.size, h.layout.align), (h.type_size, h.type_align));
}

/// Every `shmchan::format` decoder over one image, as a tool reading a segment without its
/// Rust type does (the `shmchan` command): the fixed header, the whole header, then the seqlock
/// block, the ring header with its queued messages and the liveness tables, whatever the kind
/// (each decoder must be total for any decoded header, not only for its own kind).
fn decode_all(bytes: &[u8]) {
    if let Some(raw) = RawHeader::decode(bytes) {
        let _ = (
            raw.has_magic(),
            raw.claimed_header_len(),
            raw.remove_when_unused(),
        );
    }
    let _ = header::read_raw(bytes);
    let Ok(h) = header::read(bytes) else {
        return;
    };
    check_decoded(&h, bytes.len());
    assert!(
        h.total_len <= bytes.len() as u64,
        "header::read checks the length"
    );
    if let Ok(st) = RingState::read(bytes, &h) {
        let msgs = st.peek(bytes, &h, u64::MAX);
        assert!(msgs.len() as u64 <= PEEK_MAX.min(st.meta.capacity));
        for (_, m) in &msgs {
            assert_eq!(m.len() as u64, h.type_size);
        }
        let _ = (st.sender.all_holders_dead(), st.receiver.all_holders_dead());
    }
    if let Ok(snap) = read_snapshot(bytes, &h, Duration::ZERO) {
        assert_eq!(snap.bytes.len() as u64, h.type_size);
    }
    if let Ok(st) = BroadcastState::read(bytes, &h) {
        assert!(st.subscribers.len() as u64 <= st.meta.max_subscribers);
        assert!(st.successors.len() < 4);
        for sub in &st.subscribers {
            if let (Some(c), Some(lag)) = (sub.cursor, sub.lag) {
                assert_eq!(c + lag, st.tail);
            }
        }
    }
    let _ = read_owner(bytes, h.payload_off);
    for at in [0, h.payload_off, h.total_len.saturating_sub(1), u64::MAX] {
        let _ = SideState::read(bytes, at);
    }
}

#[test]
fn format_decoders_survive_every_single_byte_mutation_of_valid_segments() {
    let (mut rng, seed) = Rng::from_env();
    for (what, segment) in valid_segments() {
        no_panic("decoding a valid segment", seed, || decode_all(&segment));
        for i in 0..segment.len() {
            for v in mutations(segment[i], &mut rng) {
                let mut bytes = segment.clone();
                bytes[i] = v;
                no_panic(
                    &format!("decoding {what} with byte {i} = {v:#04x}"),
                    seed,
                    || decode_all(&bytes),
                );
            }
        }
    }
}

#[test]
fn format_decoders_survive_random_payloads_and_truncations() {
    let (mut rng, seed) = Rng::from_env();
    for (what, segment) in valid_segments() {
        let header_len = header_of(&segment).len();
        // A valid header over a payload of random words: every payload structure is garbage.
        for _ in 0..cases(200) {
            let mut bytes = segment.clone();
            for b in &mut bytes[header_len..] {
                *b = rng.byte();
            }
            no_panic(
                &format!("decoding {what} with a random payload"),
                seed,
                || decode_all(&bytes),
            );
        }
        for len in 0..segment.len() {
            let cut = &segment[..len];
            no_panic(&format!("decoding {what} cut to {len} bytes"), seed, || {
                decode_all(cut)
            });
            assert!(
                header::read(cut).is_err(),
                "{what} cut to {len} bytes decoded"
            );
        }
    }
}

#[test]
fn random_bytes_are_never_a_header() {
    let (mut rng, seed) = Rng::from_env();
    let prefix = header_of(&valid_segments()[0].1);
    for case in 0..cases(3000) {
        let len = rng.below(1024);
        let mut bytes = rng.bytes(len);
        // Half the cases start like a real header (magic and version), to get past the first
        // checks into the offsets, lengths and checksum.
        if case % 2 == 1 {
            let n = len.min(12);
            bytes[..n].copy_from_slice(&prefix[..n]);
        }
        let r = no_panic("DecodedHeader::parse of random bytes", seed, || {
            DecodedHeader::parse(&bytes)
        });
        assert!(
            r.is_err(),
            "random bytes decoded as a header (seed {seed}, case {case})"
        );
    }
}

#[test]
fn every_truncation_of_a_valid_header_is_an_error() {
    for (what, segment) in valid_segments() {
        let header = header_of(&segment);
        for len in 0..header.len() {
            let r = no_panic("DecodedHeader::parse of a truncation", 0, || {
                DecodedHeader::parse(&header[..len])
            });
            match r {
                Err(Error::NotShmchan { .. } | Error::Corrupted { .. }) => {}
                other => panic!("{what} header cut to {len} bytes: {other:?}"),
            }
        }
    }
}

#[test]
fn single_byte_mutations_of_valid_headers_give_errors_or_valid_headers() {
    let (mut rng, seed) = Rng::from_env();
    for (what, segment) in valid_segments() {
        let header = header_of(&segment);
        let original = DecodedHeader::parse(&header).expect("valid");
        let mut accepted = 0usize;
        for i in 0..header.len() {
            for v in mutations(header[i], &mut rng) {
                if v == header[i] {
                    continue;
                }
                let mut bytes = header.clone();
                bytes[i] = v;
                let r = no_panic("DecodedHeader::parse of a mutated header", seed, || {
                    DecodedHeader::parse(&bytes)
                });
                if let Ok(h) = r {
                    check_decoded(&h, bytes.len());
                    accepted += 1;
                    // Only the words the checksum leaves out (they change while the segment
                    // lives) may differ; everything else must be caught.
                    assert_eq!(
                        (&h.type_name, &h.layout, h.fingerprint, h.total_len),
                        (
                            &original.type_name,
                            &original.layout,
                            original.fingerprint,
                            original.total_len
                        ),
                        "{what}: byte {i} = {v:#04x} changed the header unnoticed"
                    );
                }
            }
        }
        // The state and flag words are the only unchecked ones: a handful of bytes.
        assert!(
            accepted <= 16 * 8,
            "{what}: {accepted} mutations went unnoticed"
        );
    }
}

#[test]
fn layout_descriptors_survive_random_bytes_truncation_and_mutation() {
    let (mut rng, seed) = Rng::from_env();
    for _ in 0..cases(3000) {
        let len = rng.below(512);
        let bytes = rng.bytes(len);
        no_panic("layout_codec::decode of random bytes", seed, || {
            let _ = layout_codec::decode(&bytes);
        });
    }
    for (what, bytes) in valid_layouts() {
        let original = layout_codec::decode(&bytes).expect("valid");
        for len in 0..bytes.len() {
            let r = no_panic("layout_codec::decode of a truncation", seed, || {
                layout_codec::decode(&bytes[..len])
            });
            assert!(r.is_err(), "{what} layout cut to {len} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            layout_codec::decode(&longer).is_err(),
            "{what}: trailing byte"
        );
        for i in 0..bytes.len() {
            for v in mutations(bytes[i], &mut rng) {
                let mut m = bytes.clone();
                m[i] = v;
                let r = no_panic("layout_codec::decode of a mutation", seed, || {
                    layout_codec::decode(&m)
                });
                if let Ok(desc) = r {
                    // A mutation may yield another valid descriptor; reading it must not panic.
                    let _ = (desc.fingerprint(), format!("{desc:?}"));
                    for f in &desc.fields {
                        let _ = (f.ty.to_string(), f.ty.size());
                    }
                    if m == bytes {
                        assert_eq!(desc, original);
                    }
                }
            }
        }
    }
}

/// Opens `bytes` as a POSIX object every way the library offers and uses each handle a little,
/// with short bounds: what a process attaching to a segment another process scribbled does.
/// `FcntlLock` opens are left out: they act on the lock-file path the header names.
fn attach_all(bytes: &[u8], seed: u64) {
    /// Unlinks the object even when the attach panics.
    struct Unlink(PathBuf);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let name = unique_name("attach");
    let object = Unlink(dev_shm(&name));
    std::fs::write(&object.0, bytes).expect("write /dev/shm");
    let key = Key::name(&name).expect("name");
    let short = Duration::from_millis(1);
    no_panic("attaching to a mutated segment", seed, || {
        if let Ok(seg) = Segment::open_any(key, true) {
            let mut copy = vec![0u8; seg.len().min(1 << 20)];
            let _ = seg.copy_out(0, &mut copy);
        }
        if let Ok(s) = Shared::<Tick, SeqLock>::open(key) {
            let _ = s.try_read();
            let _ = s.read_timeout(short);
            let _ = s.try_write(|t| t.seq = t.seq.wrapping_add(1));
            let _ = s.write_timeout(short, |t| t.price += 1.0);
        }
        if let Ok(r) = Shared::<Tick, SeqLock>::open_read_only(key) {
            let _ = r.try_read();
        }
        if let Ok(rx) = Receiver::<Tick>::open(key) {
            for _ in 0..3 {
                let _ = rx.try_recv();
            }
            let _ = rx.len();
        }
        if let Ok(tx) = Sender::<Tick>::open(key) {
            for seq in 0..3 {
                let _ = tx.try_send(Tick {
                    seq,
                    ..Tick::default()
                });
            }
        }
        if let Ok(rx) = shmchan::mpmc::Receiver::<Tick>::open(key) {
            for _ in 0..3 {
                let _ = rx.try_recv();
            }
        }
        if let Ok(tx) = shmchan::mpmc::Sender::<Tick>::open(key) {
            for seq in 0..3 {
                let _ = tx.try_send(Tick {
                    seq,
                    ..Tick::default()
                });
            }
        }
    });
    drop(object);
}

#[test]
fn attaching_to_mutated_or_truncated_segments_never_panics() {
    let (mut rng, seed) = Rng::from_env();
    for (what, segment) in valid_segments() {
        if what == "fcntl-value" {
            continue;
        }
        attach_all(&segment, seed);
        for _ in 0..cases(150) {
            let mut bytes = segment.clone();
            let i = rng.below(bytes.len());
            bytes[i] = mutations(bytes[i], &mut rng)[rng.below(8)];
            attach_all(&bytes, seed);
        }
        // An object shorter than the fixed header may be one whose creator has not sized it
        // yet: each open waits about a second for it to grow (checked once, below), so the
        // random truncations keep at least the fixed header.
        for _ in 0..cases(20) {
            let len = FIXED_LEN + rng.below(segment.len() - FIXED_LEN);
            attach_all(&segment[..len], seed);
        }
    }
}

#[test]
fn attaching_to_an_object_shorter_than_a_header_is_a_bounded_error() {
    let segment = &valid_segments()[0].1;
    let name = unique_name("short");
    let path = dev_shm(&name);
    std::fs::write(&path, &segment[..FIXED_LEN / 2]).expect("write /dev/shm");
    let key = Key::name(&name).expect("name");
    let start = std::time::Instant::now();
    let r = Segment::open_any(key, true);
    let waited = start.elapsed();
    let _ = std::fs::remove_file(&path);
    match r {
        Err(Error::NotShmchan { .. } | Error::Corrupted { .. }) => {}
        other => panic!("a {}-byte object opened as {other:?}", FIXED_LEN / 2),
    }
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
}

/// Writes (with `SHMCHAN_WRITE_FUZZ_CORPUS=1`) or checks the valid seeds of the fuzz corpus.
#[test]
fn fuzz_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = std::env::var_os("SHMCHAN_WRITE_FUZZ_CORPUS").is_some();
    let segments = valid_segments();
    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();
    for (what, bytes) in &segments {
        seeds.push(("header_decode", format!("valid-{what}"), header_of(bytes)));
        seeds.push(("segment_decode", format!("valid-{what}"), bytes.clone()));
        if *what != "fcntl-value" {
            seeds.push(("attach", format!("valid-{what}"), bytes.clone()));
        }
    }
    for (what, bytes) in valid_layouts() {
        seeds.push(("layout_decode", format!("valid-{what}"), bytes));
    }
    // Edge cases: written once, kept as they are (they need not decode).
    let value = &segments[0].1;
    let header = header_of(value);
    let edges: Vec<(&str, &str, Vec<u8>)> = vec![
        ("header_decode", "edge-empty", Vec::new()),
        ("header_decode", "edge-magic-only", header[..8].to_vec()),
        (
            "header_decode",
            "edge-fixed-part-only",
            header[..FIXED_LEN].to_vec(),
        ),
        ("header_decode", "edge-all-ones", vec![0xff; header.len()]),
        ("layout_decode", "edge-empty", Vec::new()),
        ("layout_decode", "edge-zeros", vec![0; 32]),
        ("attach", "edge-header-without-payload", header.clone()),
        ("attach", "edge-zeros", vec![0; value.len()]),
        (
            "segment_decode",
            "edge-header-without-payload",
            header.clone(),
        ),
        ("segment_decode", "edge-zeros", vec![0; value.len()]),
    ];
    for (target, file, bytes) in &edges {
        let path = root.join(target).join(file);
        if write {
            std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
            std::fs::write(&path, bytes).expect("write seed");
        } else {
            assert!(path.exists(), "missing fuzz seed {}", path.display());
        }
    }
    for (target, file, bytes) in &seeds {
        let path = root.join(target).join(file);
        if write {
            std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
            std::fs::write(&path, bytes).expect("write seed");
            continue;
        }
        let Ok(committed) = std::fs::read(&path) else {
            panic!(
                "missing fuzz seed {}: run SHMCHAN_WRITE_FUZZ_CORPUS=1 cargo test --test \
                 decoder_properties fuzz_seed_corpus",
                path.display()
            );
        };
        let ok = match *target {
            "header_decode" => DecodedHeader::parse(&committed).is_ok(),
            "layout_decode" => layout_codec::decode(&committed).is_ok(),
            _ => header::read(committed.as_slice()).is_ok(),
        };
        assert!(
            ok,
            "fuzz seed {} no longer decodes (the format changed?): rewrite the seeds with \
             SHMCHAN_WRITE_FUZZ_CORPUS=1 cargo test --test decoder_properties fuzz_seed_corpus",
            path.display()
        );
    }
}

/// Every committed fuzz input (the seeds and the `regression-*` reproducers of crashes the
/// fuzzers found) through the same calls as its fuzz target: none may panic.
fn replay_committed_fuzz_inputs(only_regressions: bool) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for target in ["header_decode", "layout_decode", "segment_decode", "attach"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(target))
            .expect("read the fuzz corpus")
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        for path in files {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("regression-") != only_regressions {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read a fuzz input");
            let what = format!("replaying {}", path.display());
            match target {
                "header_decode" => {
                    no_panic(&what, 0, || {
                        if let Ok(h) = DecodedHeader::parse(&bytes) {
                            check_decoded(&h, bytes.len());
                        }
                    });
                }
                "layout_decode" => {
                    no_panic(&what, 0, || {
                        let _ = layout_codec::decode(&bytes).map(|d| d.fingerprint());
                    });
                }
                "segment_decode" => no_panic(&what, 0, || decode_all(&bytes)),
                // As in the fuzz target: an unpublished header makes each open wait a
                // second; the header decoder above covers those inputs.
                _ => {
                    if DecodedHeader::parse(&bytes).is_ok_and(|h| h.state == HeaderState::Ready) {
                        attach_all(&bytes, 0);
                    }
                }
            }
        }
    }
}

#[test]
fn committed_fuzz_seeds_replay_without_panic() {
    replay_committed_fuzz_inputs(false);
}

/// The reproducers of crashes found by fuzzing, kept so that each stays fixed.
/// `regression-ring-index-near-u64-max`: a ring whose producer index is near `u64::MAX`
/// overflowed `tail + 1` in `try_send` (found by `fuzz/fuzz_targets/attach.rs` in seconds).
#[test]
fn committed_fuzz_regressions_replay_without_panic() {
    replay_committed_fuzz_inputs(true);
}
