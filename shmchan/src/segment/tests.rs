//! Unit tests of the crate-internal segment interface (`SegmentSpec`/`Expect`, the creation
//! protocol, the opener's wait, cleanup). Cross-process behaviour is in `shmchan/tests/`.

use super::lifecycle::INIT_WAIT;
use super::*;
use crate::shm_safe::ShmSafe;
use crate::sys::sysv as raw_sysv;
use header::{MAGIC, OFF_MAGIC, STATE_INITIALISING, STATE_READY};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// A System V key unique to this process and test (`n` < 64).
fn test_key(n: u32) -> Key {
    Key::raw((0x5100_0000 | ((std::process::id() & 0x3_ffff) << 6) | n) as i32)
}

fn posix_key(tag: &str) -> Key {
    Key::name(&format!("/shmchan-test-unit-{tag}-{}", std::process::id())).expect("valid name")
}

fn spec_u64x4() -> SegmentSpec<'static> {
    SegmentSpec::new(
        SegmentKind::Value,
        LockKind::SeqLock,
        &<[u64; 4]>::LAYOUT,
        <[u64; 4]>::FINGERPRINT,
        64,
    )
}

fn sysv_exists(key: Key) -> bool {
    raw_sysv::get(key.sysv_key().expect("sysv"), 0, raw_sysv::Create::No, 0).is_ok()
}

/// Removes a System V key on drop, so a failing test leaks nothing.
struct KeyGuard(Key);
impl Drop for KeyGuard {
    fn drop(&mut self) {
        let id = self
            .0
            .sysv_key()
            .and_then(|k| raw_sysv::get(k, 0, raw_sysv::Create::No, 0).ok());
        if let Some(id) = id {
            let _ = raw_sysv::remove(id);
        }
        if let Some(n) = self.0.posix_name() {
            let _ = crate::sys::posix_shm::unlink(&std::ffi::CString::new(n).expect("no NUL"));
        }
    }
}

fn write_word(p: *mut u8, v: u64) {
    // SAFETY: tests pass the 128-aligned payload pointer of a segment of at least 8 bytes that
    // only this thread uses; AtomicU64 is valid for any bit pattern.
    unsafe { AtomicU64::from_ptr(p.cast()) }.store(v, Ordering::Relaxed);
}

#[test]
fn segment_and_key_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Segment>();
    send_sync::<Key>();
    send_sync::<DecodedHeader>();
}

#[test]
fn anonymous_segment_has_aligned_payload_and_a_full_header() {
    let seg = Segment::anonymous(&spec_u64x4(), |p| write_word(p, 99)).expect("anonymous");
    assert_eq!(seg.payload_ptr() as usize % 128, 0);
    assert_eq!(seg.payload_len(), 64);
    let h = seg.header().clone();
    assert_eq!(h.kind, SegmentKind::Value);
    assert_eq!(h.lock_kind, LockKind::SeqLock);
    assert_eq!(h.state, HeaderState::Ready);
    assert_eq!(h.creator_pid, std::process::id());
    assert_eq!(
        Some(h.creator_start_time),
        crate::sys::proc::process_start_time(std::process::id())
    );
    assert_eq!(h.fingerprint, <[u64; 4]>::FINGERPRINT);
    assert_eq!((h.type_size, h.type_align), (32, 8));
    assert_eq!(h.layout.fingerprint(), h.fingerprint);
    let mut w = [0u8; 8];
    seg.copy_out(h.payload_off as usize, &mut w)
        .expect("in bounds");
    assert_eq!(u64::from_ne_bytes(w), 99);
}

#[test]
fn sysv_create_then_open_validates_and_sees_init() {
    let key = test_key(1);
    let _g = KeyGuard(key);
    let mut spec = spec_u64x4();
    spec.capacity = 16;
    spec.lock_path = Some(Path::new("/tmp/shmchan-test.lock"));
    let a = Segment::create(key, &spec, |p| write_word(p, 7)).expect("create");
    let b = Segment::open(key, &spec.expect(), true).expect("open");
    assert!(b.is_read_only() && !a.is_read_only());
    let h = b.header().clone();
    assert_eq!(h.capacity, 16);
    assert_eq!(
        h.lock_path.as_deref(),
        Some(Path::new("/tmp/shmchan-test.lock"))
    );
    // SAFETY: the payload holds at least 8 bytes; nobody writes it concurrently.
    let v = unsafe { AtomicU64::from_ptr(b.payload_ptr().cast::<u64>()) }.load(Ordering::Acquire);
    assert_eq!(v, 7);
    assert_eq!(b.key(), Some(key));
}

#[test]
fn open_with_another_type_is_layout_mismatch_naming_both_types() {
    let key = posix_key("mismatch");
    let _g = KeyGuard(key);
    let _a = Segment::create(key, &spec_u64x4(), drop).expect("create");
    let expect = Expect {
        fingerprint: <[u32; 8]>::FINGERPRINT,
        type_name: "Other",
        ..spec_u64x4().expect()
    };
    let err = Segment::open(key, &expect, false).unwrap_err();
    assert!(matches!(err, Error::LayoutMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("`array`") && msg.contains("`Other`"), "{msg}");

    let as_channel = Expect {
        kind: SegmentKind::Channel,
        ..spec_u64x4().expect()
    };
    let err = Segment::open(key, &as_channel, false).unwrap_err();
    assert!(matches!(err, Error::KindMismatch { .. }), "{err:?}");
    let fcntl = Expect {
        lock_kind: LockKind::Fcntl,
        ..spec_u64x4().expect()
    };
    let err = Segment::open(key, &fcntl, false).unwrap_err();
    assert!(matches!(err, Error::KindMismatch { .. }), "{err:?}");
}

/// Creates a bare System V segment and writes `bytes` at its start, as a foreign or hostile
/// process would.
fn foreign_sysv(key: Key, len: usize, bytes: &[u8]) -> i32 {
    let id = raw_sysv::get(
        key.sysv_key().expect("sysv"),
        len,
        raw_sysv::Create::Exclusive,
        0o600,
    )
    .expect("shmget");
    let att = raw_sysv::Attachment::attach(id, len, false).expect("shmat");
    att.region().write_from(0, bytes, Width::W4).expect("fits");
    id
}

#[test]
fn foreign_segment_is_not_shmchan_and_is_left_alone() {
    let key = test_key(2);
    let _g = KeyGuard(key);
    let mut junk = vec![0u8; 4096];
    for (i, b) in junk.iter_mut().enumerate() {
        *b = (i * 31 + 7) as u8;
    }
    foreign_sysv(key, 4096, &junk);
    let err = Segment::open_any(key, false).unwrap_err();
    assert!(matches!(err, Error::NotShmchan { .. }), "{err:?}");
    assert!(err.to_string().contains(&key.to_string()), "{err}");
    assert!(
        sysv_exists(key),
        "a failed open removed a segment it did not own"
    );
}

#[test]
fn hostile_header_with_valid_checksum_is_an_error_not_a_crash() {
    let key = test_key(3);
    let _g = KeyGuard(key);
    let mut img = header::build_image(&header::NewHeader {
        kind: SegmentKind::Value,
        lock_kind: LockKind::SeqLock,
        creator_pid: 1,
        creator_start_time: 0,
        fingerprint: 0,
        layout: &<u64 as ShmSafe>::LAYOUT,
        payload_len: 1 << 30, // far past the end of the real 4096-byte segment
        lock_path: None,
        capacity: 0,
    })
    .expect("image")
    .bytes;
    header::finish_for_test(&mut img);
    foreign_sysv(key, 4096, &img);
    let err = Segment::open_any(key, true).unwrap_err();
    assert!(matches!(err, Error::Corrupted { .. }), "{err:?}");
    assert!(sysv_exists(key));
}

#[test]
fn opener_reports_a_creator_that_died_while_initialising() {
    let key = test_key(4);
    let _g = KeyGuard(key);
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = child.id();
    child.wait().expect("reap");
    let img = header::build_image(&header::NewHeader {
        kind: SegmentKind::Value,
        lock_kind: LockKind::SeqLock,
        creator_pid: dead_pid,
        creator_start_time: 0,
        fingerprint: 0,
        layout: &<u64 as ShmSafe>::LAYOUT,
        payload_len: 64,
        lock_path: None,
        capacity: 0,
    })
    .expect("image");
    let id = foreign_sysv(key, img.total_len, &img.bytes);
    let att = raw_sysv::Attachment::attach(id, img.total_len, false).expect("shmat");
    let r = att.region();
    r.atomic_u32(header::OFF_STATE)
        .expect("state")
        .store(STATE_INITIALISING, Ordering::Relaxed);
    r.atomic_u64(OFF_MAGIC)
        .expect("magic")
        .store(MAGIC, Ordering::Release);
    let t0 = Instant::now();
    let err = Segment::open_any(key, true).unwrap_err();
    assert!(t0.elapsed() >= INIT_WAIT, "did not wait");
    assert!(t0.elapsed() < INIT_WAIT * 3, "waited too long");
    match &err {
        Error::NotShmchan { reason, .. } => {
            assert!(
                reason.contains(&format!("pid {dead_pid}")) && reason.contains("died"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A live creator: a timeout naming it.
    r.write_from(24, &std::process::id().to_ne_bytes(), Width::W4)
        .expect("pid");
    let err = Segment::open_any(key, true).unwrap_err();
    assert!(
        matches!(err, Error::Timeout { holder_pid: Some(p), .. } if p == std::process::id()),
        "{err:?}"
    );
}

#[test]
fn opener_waits_for_ready_published_by_another_thread() {
    let key = test_key(5);
    let _g = KeyGuard(key);
    let img = header::build_image(&header::NewHeader {
        kind: SegmentKind::Raw,
        lock_kind: LockKind::None,
        creator_pid: std::process::id(),
        creator_start_time: 0,
        fingerprint: <u8 as ShmSafe>::FINGERPRINT,
        layout: &<u8 as ShmSafe>::LAYOUT,
        payload_len: 64,
        lock_path: None,
        capacity: 0,
    })
    .expect("image");
    let id = foreign_sysv(key, img.total_len, &img.bytes);
    let att = raw_sysv::Attachment::attach(id, img.total_len, false).expect("shmat");
    let r = att.region();
    r.atomic_u32(header::OFF_STATE)
        .expect("state")
        .store(STATE_INITIALISING, Ordering::Relaxed);
    r.atomic_u64(OFF_MAGIC)
        .expect("magic")
        .store(MAGIC, Ordering::Release);
    let opener = std::thread::spawn(move || Segment::open_raw(key, true).map(|s| s.header().state));
    let state = r.atomic_u32(header::OFF_STATE).expect("state");
    state.store(STATE_READY, Ordering::Release);
    crate::sys::futex::wake(state, u32::MAX);
    assert_eq!(
        opener.join().expect("join").expect("opened"),
        HeaderState::Ready
    );
}

#[test]
fn creator_drop_removes_a_keyed_segment_and_persist_keeps_it() {
    let key = test_key(6);
    let _g = KeyGuard(key);
    drop(Segment::create(key, &spec_u64x4(), drop).expect("create"));
    assert!(!sysv_exists(key), "not removed on drop");

    let mut seg = Segment::create(key, &spec_u64x4(), drop).expect("create");
    seg.persist();
    drop(seg);
    assert!(sysv_exists(key), "persisted segment was removed");
    let again = Segment::open(key, &spec_u64x4().expect(), false).expect("reopen");
    assert!(!again.header().remove_when_unused);
    again.remove().expect("remove");
    assert!(!sysv_exists(key));
}

#[test]
fn last_handle_to_detach_removes_whatever_the_order() {
    let key = test_key(7);
    let _g = KeyGuard(key);
    for creator_first in [true, false] {
        let a = Segment::create(key, &spec_u64x4(), drop).expect("create");
        let b = Segment::open(key, &spec_u64x4().expect(), true).expect("open");
        let (first, second) = if creator_first { (a, b) } else { (b, a) };
        drop(first);
        assert!(sysv_exists(key), "removed while still attached");
        drop(second);
        assert!(
            !sysv_exists(key),
            "leaked (creator_first = {creator_first})"
        );
    }
}

#[test]
fn concurrent_last_detaches_do_not_leak() {
    let key = test_key(8);
    let _g = KeyGuard(key);
    for _ in 0..20 {
        let a = Segment::create(key, &spec_u64x4(), drop).expect("create");
        let b = Segment::open(key, &spec_u64x4().expect(), false).expect("open");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let b2 = std::sync::Arc::clone(&barrier);
        let t = std::thread::spawn(move || {
            b2.wait();
            drop(b);
        });
        barrier.wait();
        drop(a);
        t.join().expect("join");
        assert!(!sysv_exists(key), "leaked");
    }
}

#[test]
fn posix_creator_unlinks_on_drop_unless_persisted() {
    let key = posix_key("cleanup");
    let _g = KeyGuard(key);
    let path = format!("/dev/shm{}", key.posix_name().expect("posix"));
    let a = Segment::create(key, &spec_u64x4(), drop).expect("create");
    let b = Segment::open(key, &spec_u64x4().expect(), false).expect("open");
    drop(b);
    assert!(Path::new(&path).exists(), "an opener unlinked it");
    drop(a);
    assert!(!Path::new(&path).exists(), "creator did not unlink");

    let mut a = Segment::create(key, &spec_u64x4(), drop).expect("create");
    a.persist();
    drop(a);
    assert!(Path::new(&path).exists());
    Segment::open_any(key, false)
        .expect("open")
        .remove()
        .expect("unlink");
    assert!(!Path::new(&path).exists());
}

#[test]
fn open_or_create_creates_once_then_opens() {
    let key = posix_key("ooc");
    let _g = KeyGuard(key);
    let spec = spec_u64x4();
    let mut inits = 0;
    let a = Segment::open_or_create(key, &spec, &spec.expect(), |_| inits += 1).expect("create");
    let b = Segment::open_or_create(key, &spec, &spec.expect(), |_| inits += 1).expect("open");
    assert_eq!(inits, 1);
    assert_eq!(a.header(), b.header());
    let err = Segment::open_or_create(Key::private(), &spec, &spec.expect(), drop)
        .map(|s| s.key().map(|k| k.is_private()));
    assert_eq!(err.expect("private creates"), Some(true));
}

#[test]
fn failed_init_leaves_no_segment() {
    let key = test_key(9);
    let _g = KeyGuard(key);
    let r =
        std::panic::catch_unwind(|| Segment::create(key, &spec_u64x4(), |_| panic!("init failed")));
    assert!(r.is_err());
    assert!(
        !sysv_exists(key),
        "a creation that panicked in init leaked its segment"
    );
}

#[test]
fn racing_open_or_create_initialises_exactly_once() {
    for key in [test_key(10), posix_key("race")] {
        let _g = KeyGuard(key);
        let inits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let inits = std::sync::Arc::clone(&inits);
                let barrier = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let spec = spec_u64x4();
                    barrier.wait();
                    Segment::open_or_create(key, &spec, &spec.expect(), |p| {
                        inits.fetch_add(1, Ordering::SeqCst);
                        write_word(p, 5);
                    })
                })
            })
            .collect();
        // Every handle is kept until all threads are done: otherwise a racer that finishes
        // early would remove the segment (last detach) and a later one would rightly create it
        // anew.
        let mut handles = Vec::new();
        for t in threads {
            handles.push(
                t.join()
                    .expect("join")
                    .expect("every racer gets the segment"),
            );
        }
        assert_eq!(
            inits.load(Ordering::SeqCst),
            1,
            "{key}: initialised more than once"
        );
        for h in &handles {
            // A value segment's payload is readable through the raw loaders too.
            assert_eq!(h.load_u64(0), Some(5));
        }
    }
}
