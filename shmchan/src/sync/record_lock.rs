//! fcntl record locks on an empty lock file (seed 000's technique), made safe to use from
//! several threads and across `fork`.
//!
//! Kernel record locks have three traps (`docs/locking.md` tells them in full):
//! 1. classic POSIX locks belong to the *process*: threads of one process never exclude each
//!    other, and closing *any* descriptor of the file drops all the process's locks;
//! 2. OFD locks (`F_OFD_SETLKW`) belong to the *open file description*: a forked child inherits
//!    the parent's description and so *shares* its lock instead of competing for it;
//! 3. a lock is a kernel object: a process that dies holding it releases it at once (good).
//!
//! So each process opens the lock file once for itself, one descriptor shared by all its handles
//! on that file (a fork is noticed through the fork generation counter and the file is reopened,
//! through `/proc/self/fd` so it works even after the creator unlinked the path), OFD locks are
//! preferred with classic `F_SETLKW` as fallback,
//! and an in-process reader/writer state makes threads exclude each other: the first reader in
//! takes the kernel read lock, the last one out releases it, a writer takes the kernel write lock
//! alone.

use crate::sys::Errno;
use crate::sys::fcntl::{self, Flavour, LockType};
use crate::{Error, Target};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// 0: not decided yet; 1: OFD locks; 2: classic locks (the kernel refused OFD commands, or
/// `SHMCHAN_FCNTL_CLASSIC=1` asked for them).
static FLAVOUR: AtomicU8 = AtomicU8::new(0);

/// The environment variable that forces classic `F_SETLKW` locks: for testing the fallback, or
/// for file systems whose OFD locks misbehave.
pub(crate) const FORCE_CLASSIC_ENV: &str = "SHMCHAN_FCNTL_CLASSIC";

fn flavour() -> Flavour {
    match FLAVOUR.load(Ordering::Relaxed) {
        1 => Flavour::Ofd,
        2 => Flavour::Classic,
        _ => {
            let classic = std::env::var_os(FORCE_CLASSIC_ENV).is_some_and(|v| v == "1");
            FLAVOUR.store(if classic { 2 } else { 1 }, Ordering::Relaxed);
            if classic {
                Flavour::Classic
            } else {
                Flavour::Ofd
            }
        }
    }
}

/// How long an acquisition may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Until granted.
    Forever,
    /// Not at all.
    No,
    /// Until this instant.
    Until(Instant),
}

/// In-process state shared by the threads of one process.
#[derive(Default)]
struct LocalState {
    /// Threads holding a read guard (the kernel read lock is held while > 0).
    readers: usize,
    /// A thread holds the write guard (and the kernel write lock).
    writer: bool,
    /// Which thread, to refuse a nested lock from it instead of deadlocking.
    writer_thread: Option<ThreadId>,
    /// The threads holding read guards (a thread asking for the write lock while holding a read
    /// guard would wait for itself).
    reader_threads: Vec<ThreadId>,
    /// A first reader is taking the kernel read lock (outside the mutex).
    acquiring: bool,
    /// Threads waiting on the condition variable (notify only when > 0: it costs a syscall).
    waiting: usize,
}

/// Per-process part: the process's own open file description and the thread state, shared by
/// every handle of this process on the same lock file (see [`REGISTRY`]).
struct ProcessLocal {
    generation: u64,
    path: PathBuf,
    writable: bool,
    /// Closed on drop with OFD locks; kept open (leaked) with classic locks, where closing *any*
    /// descriptor of the file would drop every lock this process holds on it.
    fd: ManuallyDrop<OwnedFd>,
    state: Mutex<LocalState>,
    cv: Condvar,
}

/// The live [`ProcessLocal`]s of this process, one per lock file path and fork generation: all
/// handles on a file share one descriptor and one thread state, so threads using different
/// handles still exclude each other, and (for classic locks) no second descriptor exists whose
/// closing would drop the process's locks.
static REGISTRY: Mutex<Vec<Weak<ProcessLocal>>> = Mutex::new(Vec::new());

impl ProcessLocal {
    /// The registered state for `path` in this process, if one is live and usable for `writable`.
    fn find(path: &Path, writable: bool) -> Option<Arc<ProcessLocal>> {
        let generation = crate::sys::proc::fork_generation();
        let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        reg.iter()
            .filter_map(Weak::upgrade)
            .find(|l| l.generation == generation && l.path == path && (l.writable || !writable))
    }

    /// Registers a state for a freshly opened descriptor of `path`.
    fn register(path: &Path, writable: bool, fd: OwnedFd) -> Arc<Self> {
        let local = Arc::new(ProcessLocal {
            generation: crate::sys::proc::fork_generation(),
            path: path.to_owned(),
            writable,
            fd: ManuallyDrop::new(fd),
            state: Mutex::new(LocalState::default()),
            cv: Condvar::new(),
        });
        let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|w| w.strong_count() > 0);
        reg.push(Arc::downgrade(&local));
        local
    }

    fn state(&self) -> MutexGuard<'_, LocalState> {
        // A panic while holding this mutex leaves counters that are still exact (every update is
        // a single statement), so poisoning carries no information here.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on the condition variable; `false` when the deadline passed.
    fn wait<'a>(
        &self,
        mut st: MutexGuard<'a, LocalState>,
        wait: Wait,
    ) -> (MutexGuard<'a, LocalState>, bool) {
        st.waiting += 1;
        let (mut st, ok) = match wait {
            Wait::No => (st, false),
            Wait::Forever => (self.cv.wait(st).unwrap_or_else(|p| p.into_inner()), true),
            Wait::Until(d) => {
                let now = Instant::now();
                if now >= d {
                    (st, false)
                } else {
                    let (st, _) = self
                        .cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner());
                    (st, true)
                }
            }
        };
        st.waiting -= 1;
        (st, ok)
    }

    fn notify(&self, st: &LocalState) {
        if st.waiting > 0 {
            self.cv.notify_all();
        }
    }
}

impl Drop for ProcessLocal {
    fn drop(&mut self) {
        if flavour() == Flavour::Ofd {
            // SAFETY: `fd` is not used after this; the ManuallyDrop is dropped exactly once.
            unsafe { ManuallyDrop::drop(&mut self.fd) };
        }
        // Classic locks: leave the descriptor open (see the field's comment).
    }
}

/// An fcntl record lock on byte 0 of a lock file, usable from many threads and processes.
///
/// Nested locking on one thread is refused only against the write lock: a read lock taken while
/// the same thread holds a read lock succeeds (readers share).
pub(crate) struct RecordLock {
    path: PathBuf,
    writable: bool,
    local: Mutex<Arc<ProcessLocal>>,
}

impl std::fmt::Debug for RecordLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLock")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A held lock; releases it on drop.
pub(crate) struct RecordGuard {
    local: Arc<ProcessLocal>,
    write: bool,
    /// The thread that took it (guards are not sent across threads).
    thread: ThreadId,
}

impl RecordLock {
    /// Creates the lock file (must not exist, mode 0600) and opens it.
    pub(crate) fn create(path: &Path) -> Result<RecordLock, Error> {
        let fd = fcntl::open_lock_file(path, true, true).map_err(|e| open_error(path, e))?;
        Ok(Self::with_local(
            path,
            true,
            ProcessLocal::register(path, true, fd),
        ))
    }

    /// Opens an existing lock file; `writable: false` allows read locks only.
    pub(crate) fn open(path: &Path, writable: bool) -> Result<RecordLock, Error> {
        let local = match ProcessLocal::find(path, writable) {
            Some(local) => local,
            None => {
                let fd = fcntl::open_lock_file(path, false, writable)
                    .map_err(|e| open_error(path, e))?;
                ProcessLocal::register(path, writable, fd)
            }
        };
        Ok(Self::with_local(path, writable, local))
    }

    fn with_local(path: &Path, writable: bool, local: Arc<ProcessLocal>) -> RecordLock {
        RecordLock {
            path: path.to_owned(),
            writable,
            local: Mutex::new(local),
        }
    }

    /// The lock file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// This process's part, reopening the file if we are a forked child.
    fn local(&self) -> Result<Arc<ProcessLocal>, Error> {
        let generation = crate::sys::proc::fork_generation();
        let mut cur = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if cur.generation != generation {
            // We are a forked child: `cur.fd` is the parent's open file description, whose OFD
            // lock we would share. Open a description of our own: through /proc/self/fd, which
            // reaches the same file even if its path was unlinked meanwhile, else by path.
            // Another handle of this process may have done so already.
            let local = match ProcessLocal::find(&self.path, self.writable) {
                Some(local) => local,
                None => {
                    let proc_path = PathBuf::from(format!("/proc/self/fd/{}", cur.fd.as_raw_fd()));
                    let fd = fcntl::open_lock_file(&proc_path, false, self.writable)
                        .or_else(|_| fcntl::open_lock_file(&self.path, false, self.writable))
                        .map_err(|e| open_error(&self.path, e))?;
                    ProcessLocal::register(&self.path, self.writable, fd)
                }
            };
            // The parent's state is dropped here (its descriptor closed with OFD locks, where
            // that cannot release anything: the parent still holds the description).
            *cur = local;
        }
        Ok(Arc::clone(&cur))
    }

    /// Takes the read (shared) lock.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] with [`Wait::No`], [`Error::Timeout`] after a deadline, or
    /// [`Error::Os`] when fcntl fails otherwise (e.g. `ENOLCK`).
    pub(crate) fn lock_read(&self, wait: Wait) -> Result<RecordGuard, Error> {
        let local = self.local()?;
        let me = std::thread::current().id();
        let mut st = local.state();
        refuse_nested(&st, me, false)?;
        // Wait out a local writer, and a local reader that is taking the kernel lock.
        while st.writer || st.acquiring {
            let (s, ok) = local.wait(st, wait);
            st = s;
            if !ok && (st.writer || st.acquiring) {
                return Err(busy(wait, None));
            }
        }
        if st.readers == 0 {
            // First reader of this process: take the kernel read lock without holding the
            // mutex, so that other threads keep their own deadlines meanwhile.
            st.acquiring = true;
            drop(st);
            let taken = kernel_lock(&local.fd, LockType::Read, wait);
            st = local.state();
            st.acquiring = false;
            local.notify(&st);
            taken?;
        }
        st.readers += 1;
        st.reader_threads.push(me);
        drop(st);
        Ok(RecordGuard {
            local,
            write: false,
            thread: me,
        })
    }

    /// Takes the write (exclusive) lock.
    ///
    /// # Errors
    ///
    /// As [`lock_read`](Self::lock_read); `EBADF` as [`Error::Os`] if the file was opened
    /// read-only.
    pub(crate) fn lock_write(&self, wait: Wait) -> Result<RecordGuard, Error> {
        if !self.writable {
            // What the kernel answers for F_WRLCK on a read-only descriptor; said here because
            // this handle may share a read-write descriptor with another handle.
            return Err(Error::Os {
                call: "fcntl(F_WRLCK) on a lock file opened read-only",
                errno: Errno::EBADF,
            });
        }
        let local = self.local()?;
        let me = std::thread::current().id();
        let mut st = local.state();
        refuse_nested(&st, me, true)?;
        while st.writer || st.readers > 0 || st.acquiring {
            let (s, ok) = local.wait(st, wait);
            st = s;
            if !ok && (st.writer || st.readers > 0 || st.acquiring) {
                return Err(busy(wait, None));
            }
        }
        st.writer = true;
        st.writer_thread = Some(me);
        drop(st);
        // The kernel wait happens outside the mutex: local readers and writers queue on the
        // condition variable meanwhile.
        if let Err(e) = kernel_lock(&local.fd, LockType::Write, wait) {
            let mut st = local.state();
            st.writer = false;
            st.writer_thread = None;
            local.notify(&st);
            return Err(e);
        }
        Ok(RecordGuard {
            local,
            write: true,
            thread: me,
        })
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        // A guard carried into a forked child (fork inside a locked section) must not unlock:
        // with OFD locks the child's copy of the descriptor *is* the parent's lock.
        if self.local.generation != crate::sys::proc::fork_generation() {
            return;
        }
        let mut st = self.local.state();
        if self.write {
            kernel_unlock(&self.local.fd);
            st.writer = false;
            st.writer_thread = None;
        } else {
            st.readers -= 1;
            if let Some(i) = st.reader_threads.iter().position(|t| *t == self.thread) {
                st.reader_threads.swap_remove(i);
            }
            if st.readers == 0 {
                kernel_unlock(&self.local.fd);
            }
        }
        self.local.notify(&st);
    }
}

/// A thread that holds the write lock and asks again, or holds a read lock and asks for the
/// write lock, would wait for itself forever.
fn refuse_nested(st: &LocalState, me: ThreadId, for_write: bool) -> Result<(), Error> {
    if st.writer && st.writer_thread == Some(me) {
        return Err(Error::InvalidArgument {
            what: "nested lock: this thread already holds the fcntl write lock of this value (take locks only outside another write's closure or guard)".into(),
        });
    }
    if for_write && st.reader_threads.contains(&me) {
        return Err(Error::InvalidArgument {
            what: "lock upgrade: this thread holds a read guard of this value and asks for the write lock; drop the read guard first".into(),
        });
    }
    Ok(())
}

fn kernel_unlock(fd: &OwnedFd) {
    // F_UNLCK on an open descriptor cannot fail in a way we could act on (EBADF/EINVAL would be
    // bugs); if it did, the lock would still drop when the descriptor closes.
    let _ = fcntl::set_lock(fd, LockType::Unlock, false, flavour());
}

fn kernel_lock(fd: &OwnedFd, kind: LockType, wait: Wait) -> Result<(), Error> {
    let blocking = matches!(wait, Wait::Forever);
    let mut backoff = Duration::from_micros(50);
    loop {
        let f = flavour();
        match fcntl::set_lock(fd, kind, blocking, f) {
            Ok(()) => return Ok(()),
            Err((_, Errno::EINVAL)) if f == Flavour::Ofd => {
                // Kernel older than 3.15: fall back to classic process-owned locks.
                FLAVOUR.store(2, Ordering::Relaxed);
            }
            Err((_, Errno::EAGAIN | Errno::EACCES)) if !blocking => match wait {
                Wait::Until(d) if Instant::now() < d => {
                    // fcntl has no timed wait: poll with a growing pause.
                    std::thread::sleep(backoff.min(d - Instant::now()));
                    backoff = (backoff * 2).min(Duration::from_millis(5));
                }
                _ => return Err(busy(wait, fcntl::conflicting_holder(fd, kind))),
            },
            Err((call, errno)) => return Err(Error::Os { call, errno }),
        }
    }
}

fn busy(wait: Wait, holder_pid: Option<u32>) -> Error {
    match wait {
        Wait::No => Error::WouldBlock {
            what: "taking the fcntl record lock",
        },
        _ => Error::Timeout {
            what: "the fcntl record lock".into(),
            holder_pid,
        },
    }
}

fn open_error(path: &Path, (call, errno): (&'static str, Errno)) -> Error {
    Error::from_errno(
        call,
        errno,
        Target::Path {
            path: path.to_owned(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct TempLock(RecordLock);
    impl Drop for TempLock {
        fn drop(&mut self) {
            let _ = fcntl::unlink(self.0.path());
        }
    }

    fn temp_lock(tag: &str) -> TempLock {
        let p = std::env::temp_dir().join(format!(
            "shmchan-record-unit-{tag}-{}",
            crate::sys::proc::pid()
        ));
        TempLock(RecordLock::create(&p).expect("create lock file"))
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
        let other = RecordLock::open(l.0.path(), true).unwrap();
        let try_write_elsewhere = || {
            std::thread::scope(|s| s.spawn(|| other.lock_write(Wait::No).map(drop)).join()).unwrap()
        };
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
        let ro = RecordLock::open(l.0.path(), false).unwrap();
        drop(ro.lock_read(Wait::No).unwrap());
        assert!(matches!(
            ro.lock_write(Wait::No),
            Err(Error::Os {
                errno: Errno::EBADF,
                ..
            })
        ));
    }
}
