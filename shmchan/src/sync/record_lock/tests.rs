//! Unit tests of the record lock: threads, readers and writers, read-only handles.

use super::*;
use std::sync::atomic::AtomicBool;

struct TempLock(RecordLock);
impl Drop for TempLock {
    fn drop(&mut self) {
        self.0.unlink();
    }
}

fn temp_lock(_tag: &str) -> TempLock {
    TempLock(RecordLock::create(&lock_file::new_lock_path(), 0o600).expect("create lock file"))
}

fn reopen(l: &TempLock, writable: bool) -> RecordLock {
    RecordLock::open(l.0.path().unwrap(), writable, lockfile::euid()).unwrap()
}

#[test]
fn threads_exclude_each_other() {
    let l = temp_lock("threads");
    let inside = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..100 {
                    let _g = l.0.lock_write(Wait::Forever).unwrap();
                    assert!(!inside.swap(true, Ordering::Relaxed), "two writers");
                    std::thread::yield_now();
                    inside.store(false, Ordering::Relaxed);
                }
            });
        }
    });
}

#[test]
fn readers_share_and_exclude_a_writer_until_the_last_leaves() {
    let l = temp_lock("readers");
    let other = reopen(&l, true);
    let try_write_elsewhere =
        || std::thread::scope(|s| s.spawn(|| other.lock_write(Wait::No).map(drop)).join()).unwrap();
    let r1 = l.0.lock_read(Wait::No).unwrap();
    let r2 = l.0.lock_read(Wait::No).unwrap();
    // Another handle of this process shares the state: it can read but not write.
    drop(other.lock_read(Wait::No).unwrap());
    assert!(matches!(
        try_write_elsewhere(),
        Err(Error::WouldBlock { .. })
    ));
    // The reading thread itself may not upgrade.
    assert!(matches!(
        other.lock_write(Wait::No),
        Err(Error::InvalidArgument { .. })
    ));
    drop(r1);
    assert!(try_write_elsewhere().is_err(), "r2 still holds it");
    drop(r2);
    let w = other.lock_write(Wait::No).unwrap();
    // Same thread: a nested lock, refused. Another thread: a bounded wait.
    assert!(matches!(
        l.0.lock_read(Wait::No),
        Err(Error::InvalidArgument { .. })
    ));
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                l.0.lock_read(Wait::Until(Instant::now() + Duration::from_millis(20))),
                Err(Error::Timeout { .. })
            ));
        });
    });
    drop(w);
}

#[test]
fn read_only_handle_cannot_write_lock() {
    let l = temp_lock("ro");
    let ro = reopen(&l, false);
    drop(ro.lock_read(Wait::No).unwrap());
    assert!(matches!(
        ro.lock_write(Wait::No),
        Err(Error::Os {
            errno: crate::sys::Errno::EBADF,
            ..
        })
    ));
}

/// A lock file whose creating handle is gone: no process state is registered for it, as in a
/// process that did not create it. Unlinked on drop.
struct ForeignLock(PathBuf);
impl Drop for ForeignLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn foreign_lock() -> ForeignLock {
    let path = lock_file::new_lock_path();
    drop(RecordLock::create(&path, 0o600).expect("create lock file"));
    ForeignLock(path)
}

fn open_foreign(l: &ForeignLock, writable: bool) -> RecordLock {
    RecordLock::open(&l.0, writable, lockfile::euid()).unwrap()
}

fn same_state(a: &RecordLock, b: &RecordLock) -> bool {
    let a = Arc::clone(&a.local.lock().unwrap());
    let b = Arc::clone(&b.local.lock().unwrap());
    Arc::ptr_eq(&a, &b)
}

/// Threads that open one lock file at the same time must end up with one process part: with
/// classic locks two parts would be two thread states over one per-process kernel lock, so
/// threads of different handles would both get in (the CI failure of
/// `classic_record_locks_exclude_processes_and_threads`).
#[test]
fn handles_opened_concurrently_share_one_process_state() {
    for _ in 0..20 {
        let l = foreign_lock();
        let barrier = std::sync::Barrier::new(6);
        let handles: Vec<RecordLock> = std::thread::scope(|s| {
            let joins: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        open_foreign(&l, true)
                    })
                })
                .collect();
            joins.into_iter().map(|j| j.join().unwrap()).collect()
        });
        for h in &handles {
            assert!(
                same_state(h, &handles[0]),
                "two process states for one lock file"
            );
        }
    }
}

/// A read-only handle opened first and a writable one opened later share the thread state too
/// (classic locks: a write lock through a second state would convert the first one's read lock).
#[test]
fn read_only_and_writable_handles_share_one_process_state() {
    let l = foreign_lock();
    let ro = open_foreign(&l, false);
    let rw = open_foreign(&l, true);
    assert!(same_state(&ro, &rw));
    let r = ro.lock_read(Wait::No).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(
                rw.lock_write(Wait::No),
                Err(Error::WouldBlock { .. })
            ))
        });
    });
    drop(r);
    drop(rw.lock_write(Wait::No).unwrap());
}
