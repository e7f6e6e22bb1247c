//! `Shared<T, L>` in one process: keyed segments, type and lock-kind checks, read-only handles,
//! the fcntl lock file's life, views, and hostile values in the lock words.

use shmchan::{Error, FcntlLock, Key, Segment, SeqLock, Shared, ShmSafe};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Tick {
    seq: u64,
    price: f64,
    levels: [u32; 4],
}

fn posix_key(tag: &str) -> Key {
    Key::name(&format!(
        "/shmchan-test-shared-{tag}-{}",
        std::process::id()
    ))
    .unwrap()
}

fn sysv_key(n: i32) -> Key {
    // Derived from the pid so parallel runs do not collide; never IPC_PRIVATE (0).
    Key::raw(0x5300_0000 | ((std::process::id() as i32 & 0xffff) << 4) | n)
}

#[test]
fn keyed_value_is_shared_between_handles_and_views_see_fields() {
    for key in [posix_key("views"), sysv_key(1)] {
        let a = Shared::<Tick, SeqLock>::create(key).unwrap();
        let b = Shared::<Tick, SeqLock>::open(key).unwrap();
        a.write(|t| t.seq = 7);
        b.update(|v| v.set_price(v.price() + 1.5));
        b.update(|v| v.levels().set(2, 9));
        assert_eq!(
            a.read(),
            Tick {
                seq: 7,
                price: 1.5,
                levels: [0, 0, 9, 0]
            }
        );
        assert_eq!(a.with_view(|v| (v.seq(), v.levels().get(2))), (7, Some(9)));
        assert_eq!(a.key(), Some(key));
    }
}

#[test]
fn opening_with_the_other_lock_kind_or_type_is_a_typed_error() {
    let key = posix_key("kind");
    let _seq = Shared::<Tick, SeqLock>::create(key).unwrap();
    assert!(matches!(
        Shared::<Tick, FcntlLock>::open(key),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Shared::<[u64; 4], SeqLock>::open(key),
        Err(Error::LayoutMismatch { .. })
    ));
    let key = sysv_key(2);
    let _f = Shared::<Tick, FcntlLock>::create(key).unwrap();
    assert!(matches!(
        Shared::<Tick, SeqLock>::open(key),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        Shared::<Tick, SeqLock>::open_read_only(key),
        Err(Error::KindMismatch { .. })
    ));
}

#[test]
fn read_only_handles_follow_writes_for_both_locks() {
    let key = posix_key("ro-seq");
    let w = Shared::<u64, SeqLock>::create_with(key, 1).unwrap();
    let r = Shared::<u64, SeqLock>::open_read_only(key).unwrap();
    assert!(r.segment().is_read_only());
    w.store(2);
    assert_eq!(r.read(), 2);

    let key = sysv_key(3);
    let w = Shared::<u64, FcntlLock>::create_with(key, 1).unwrap();
    let r = Shared::<u64, FcntlLock>::open_read_only(key).unwrap();
    w.store(3);
    assert_eq!(r.read(), 3);
    assert_eq!(*r.lock_read().unwrap(), 3);
    // The reader's read lock keeps writers on other threads out.
    let g = r.lock_read().unwrap();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            assert!(matches!(
                w.try_write(|n| *n = 4),
                Err(Error::WouldBlock { .. })
            ))
        });
    });
    drop(g);
    w.try_write(|n| *n = 4).unwrap();
    // And a write lock held by another thread bounds the reader's wait.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|sc| {
        let w = &w;
        sc.spawn(move || {
            let _g = w.lock_write().unwrap();
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
        });
        held_rx.recv().unwrap();
        assert!(matches!(
            r.read_timeout(Duration::from_millis(20)),
            Err(Error::Timeout { .. })
        ));
        done_tx.send(()).unwrap();
    });
    // From the thread holding the write lock, a read through another handle of the same file
    // is a nested lock: refused, not a deadlock.
    let g = w.lock_write().unwrap();
    assert!(matches!(
        r.read_timeout(Duration::from_millis(20)),
        Err(Error::InvalidArgument { .. })
    ));
    drop(g);
    assert_eq!(r.read_timeout(Duration::from_millis(20)).unwrap(), 4);
}

#[test]
fn open_or_create_uses_the_creators_lock_file() {
    let key = posix_key("ooc");
    let a = Shared::<u64, FcntlLock>::open_or_create(key).unwrap();
    let b = Shared::<u64, FcntlLock>::open_or_create(key).unwrap();
    assert_eq!(a.lock_path(), b.lock_path());
    let g = a.lock_write().unwrap();
    std::thread::scope(|sc| {
        sc.spawn(|| assert!(matches!(b.try_write(|_| ()), Err(Error::WouldBlock { .. }))));
    });
    // On the thread holding it, a second handle's write is a nested lock: refused.
    assert!(matches!(
        b.try_write(|_| ()),
        Err(Error::InvalidArgument { .. })
    ));
    drop(g);
    b.store(5);
    assert_eq!(a.read(), 5);
}

#[test]
fn fcntl_lock_file_is_private_recorded_and_removed_with_the_value() {
    // Anonymous: the lock file has no name at all (nothing to leak, nothing to record).
    let s = Shared::<u64, FcntlLock>::anonymous(0).unwrap();
    assert!(s.lock_path().is_none());
    assert!(s.segment().header().lock_path.is_none());
    s.store(1);
    drop(s);

    let key = posix_key("file");
    let s = Shared::<u64, FcntlLock>::create(key).unwrap();
    let path = s.lock_path().unwrap().to_owned();
    assert_eq!(
        s.segment().header().lock_path.as_deref(),
        Some(path.as_path())
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 0, "the lock file stays empty");
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    assert_eq!(path.parent(), Some(dir.as_path()));
    drop(s);
    assert!(!path.exists(), "the creator removes its lock file");

    // Keyed: the file lives as long as the segment, whoever detaches last.
    let key = sysv_key(4);
    let a = Shared::<u64, FcntlLock>::create(key).unwrap();
    let path = a.lock_path().unwrap().to_owned();
    let b = Shared::<u64, FcntlLock>::open(key).unwrap();
    drop(a);
    assert!(path.exists(), "still attached by b");
    b.store(1);
    drop(b);
    assert!(!path.exists());

    // IPC_PRIVATE: shared by fork only, so handled like an anonymous value.
    let p = Shared::<u64, FcntlLock>::create(Key::private()).unwrap();
    assert!(p.lock_path().is_none());
    p.store(2);
    assert_eq!(p.read(), 2);
    drop(p);

    let key = posix_key("rm");
    let a = Shared::<u64, FcntlLock>::create(key).unwrap();
    let path = a.lock_path().unwrap().to_owned();
    a.remove().unwrap();
    assert!(!path.exists());
}

#[test]
fn nested_writes_are_refused_instead_of_deadlocking() {
    let s = Shared::<u64, SeqLock>::anonymous(0).unwrap();
    s.write(|_| {
        assert!(matches!(
            s.try_write(|_| ()),
            Err(Error::InvalidArgument { .. })
        ));
        // Reading inside a write is fine: readers never wait.
        assert_eq!(s.read(), 0);
    });
    let f = Shared::<u64, FcntlLock>::anonymous(0).unwrap();
    f.write(|_| {
        assert!(matches!(
            f.write_timeout(Duration::from_secs(5), |_| ()),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(f.try_read(), Err(Error::InvalidArgument { .. })));
    });
    // Upgrading a read guard to the write lock on one thread would wait for itself.
    let g = f.lock_read().unwrap();
    assert!(matches!(
        f.try_write(|_| ()),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(f.lock_write(), Err(Error::InvalidArgument { .. })));
    // A second read guard on the same thread is fine.
    assert_eq!(*f.lock_read().unwrap(), *g);
    drop(g);
    f.try_write(|n| *n = 1).unwrap();
}

#[test]
fn a_panicking_writer_publishes_nothing_and_frees_the_lock() {
    let s = Shared::<[u64; 2], SeqLock>::anonymous([1, 1]).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.write(|v| {
            v[0] = 2;
            panic!("writer bug");
        })
    }));
    assert!(r.is_err());
    assert_eq!(s.read(), [1, 1]);
    s.try_write(|v| v[1] = 3).unwrap();
    assert_eq!(s.read(), [1, 3]);

    let f = Shared::<[u64; 2], FcntlLock>::anonymous([1, 1]).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        f.write(|v| {
            v[0] = 2;
            panic!("writer bug");
        })
    }));
    assert!(r.is_err());
    assert_eq!(f.read(), [1, 1]);
    f.try_write(|v| v[1] = 3).unwrap();
    assert_eq!(f.read(), [1, 3]);
}

/// The payload starts with the owner word (u64 index 0); the sequence is at byte 128 (index 16).
const OWNER_WORD: usize = 0;
const SEQUENCE_WORD: usize = 16;

#[test]
fn hostile_lock_words_give_errors_or_timeouts_never_hangs() {
    let key = posix_key("hostile");
    let s = Shared::<[u64; 4], SeqLock>::create_with(key, [5; 4]).unwrap();
    let raw = Segment::open_any(key, false).unwrap();
    let owner = raw.atomic_u64(OWNER_WORD).unwrap();
    let seq = raw.atomic_u64(SEQUENCE_WORD).unwrap();

    // No thread id in the owner word: impossible, reported, reset.
    owner.store(0x0000_0000_dead_beef, Ordering::Relaxed);
    assert!(matches!(
        s.write_timeout(Duration::from_secs(1), |_| ()),
        Err(Error::Corrupted { .. })
    ));
    s.try_write(|v| *v = [6; 4]).unwrap();

    // A thread id that does not exist: a dead owner, taken over.
    owner.store(u64::from(i32::MAX as u32 - 1) << 32, Ordering::Relaxed);
    assert!(matches!(
        s.write_timeout(Duration::from_secs(1), |_| ()),
        Err(Error::WriterDied { .. })
    ));

    // A live thread that is not ours (pid 1): never stolen, a bounded wait naming it.
    owner.store(1u64 << 32, Ordering::Relaxed);
    let t = Instant::now();
    match s.write_timeout(Duration::from_millis(30), |_| ()) {
        Err(Error::Timeout { holder_pid, .. }) => assert_eq!(holder_pid, Some(1)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    owner.store(0, Ordering::Relaxed);

    // Any sequence value: readers return a complete value at once, writers carry on.
    for bad in [1, u64::MAX, u64::MAX - 1, 0x8000_0000_0000_0001] {
        seq.store(bad, Ordering::Relaxed);
        assert_eq!(s.read(), [6; 4]);
        s.try_write(|v| v[0] = 6).unwrap();
        assert_eq!(s.read(), [6; 4]);
    }
}

#[test]
fn threads_share_one_handle() {
    let s = Shared::<[u64; 8], SeqLock>::anonymous([0; 8]).unwrap();
    std::thread::scope(|sc| {
        for _ in 0..2 {
            sc.spawn(|| {
                for _ in 0..1000 {
                    s.write(|v| *v = [v[0] + 1; 8]);
                }
            });
        }
        sc.spawn(|| {
            for _ in 0..5000 {
                let v = s.read();
                assert!(v.iter().all(|&x| x == v[0]), "torn: {v:?}");
            }
        });
    });
    assert_eq!(s.read(), [2000; 8]);
}
