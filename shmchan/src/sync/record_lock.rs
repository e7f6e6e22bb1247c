//! fcntl record locks on an empty lock file (the classic Unix technique: `F_WRLCK` on its
//! first byte to write, `F_RDLCK` to read), made safe to use from several threads and across
//! `fork`.
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

use super::lock_file;
use crate::sys::Errno;
use crate::sys::fcntl::{self, Flavour, LockType};
use crate::sys::lockfile;
use crate::{Error, Target};
use std::mem::ManuallyDrop;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
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

impl Wait {
    /// Until `d` from now (forever if that instant is past what the clock can express).
    pub(crate) fn after(d: Duration) -> Wait {
        Instant::now()
            .checked_add(d)
            .map_or(Wait::Forever, Wait::Until)
    }
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
    /// The file's device and inode: how handles find each other (an unnamed lock file has no
    /// path, and a path can be renamed).
    id: (u64, u64),
    /// Whether `fd` was opened read-write.
    writable: bool,
    /// Closed on drop with OFD locks; kept open (leaked) with classic locks, where closing *any*
    /// descriptor of the file would drop every lock this process holds on it.
    fd: ManuallyDrop<OwnedFd>,
    /// A read-write descriptor opened later, when `fd` is read-only and a writable handle of the
    /// same file came: write locks go through it. One state per file whatever the handles'
    /// modes, because classic locks are per process: a second state would let a writer convert
    /// the first state's read lock into its write lock. The thread state never lets the two
    /// descriptors hold kernel locks at the same time, so they never compete (OFD locks).
    write_fd: OnceLock<ManuallyDrop<OwnedFd>>,
    state: Mutex<LocalState>,
    cv: Condvar,
}

/// The live [`ProcessLocal`]s of this process, one per lock file and fork generation: all
/// handles on a file share one descriptor and one thread state, so threads using different
/// handles still exclude each other, and (for classic locks) no second descriptor exists whose
/// closing would drop the process's locks. Finding and registering happen under this one mutex,
/// opening the file included (the open never blocks), so two threads opening the same file at
/// once cannot both register.
static REGISTRY: Mutex<Vec<Weak<ProcessLocal>>> = Mutex::new(Vec::new());

type Registry = MutexGuard<'static, Vec<Weak<ProcessLocal>>>;

impl ProcessLocal {
    /// The registered state for file `id` in this fork generation, if one is live.
    fn find(reg: &Registry, id: (u64, u64)) -> Option<Arc<ProcessLocal>> {
        let generation = crate::sys::proc::fork_generation();
        reg.iter()
            .filter_map(Weak::upgrade)
            .find(|l| l.generation == generation && l.id == id)
    }

    /// The state for file `id`, registered with the descriptor `open` gives when there is none.
    /// A `writable` handle needs a read-write descriptor: `open` gives one too when the
    /// registered descriptor is read-only. `open` returns the descriptor and the file's id,
    /// checked to be `id`.
    fn find_or_open(
        id: (u64, u64),
        writable: bool,
        open: impl FnOnce() -> Result<(OwnedFd, (u64, u64)), Error>,
    ) -> Result<Arc<ProcessLocal>, Error> {
        let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(local) = Self::find(&reg, id) {
            if writable && !local.writable && local.write_fd.get().is_none() {
                let (fd, _) = open()?;
                // Under the registry mutex nobody else sets it; were it set, the ManuallyDrop
                // returned would keep the descriptor open (never close one of a locked file).
                let _ = local.write_fd.set(ManuallyDrop::new(fd));
            }
            return Ok(local);
        }
        let (fd, opened) = open()?;
        let local = Arc::new(ProcessLocal {
            generation: crate::sys::proc::fork_generation(),
            id: opened,
            writable,
            fd: ManuallyDrop::new(fd),
            write_fd: OnceLock::new(),
            state: Mutex::new(LocalState::default()),
            cv: Condvar::new(),
        });
        reg.retain(|w| w.strong_count() > 0);
        reg.push(Arc::downgrade(&local));
        Ok(local)
    }

    /// The descriptor locks of this kind go through: write locks through a read-write one.
    fn lock_fd(&self, write: bool) -> &OwnedFd {
        match self.write_fd.get() {
            Some(fd) if write => fd,
            _ => &self.fd,
        }
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
            if let Some(mut fd) = self.write_fd.take() {
                // SAFETY: taken out of the cell, so dropped exactly once and never used again.
                unsafe { ManuallyDrop::drop(&mut fd) };
            }
        }
        // Classic locks: leave the descriptor open (see the field's comment).
    }
}

/// An fcntl record lock on byte 0 of a lock file, usable from many threads and processes.
///
/// Nested locking on one thread is refused only against the write lock: a read lock taken while
/// the same thread holds a read lock succeeds (readers share).
pub(crate) struct RecordLock {
    /// The file's name; `None` for an unnamed file (anonymous values: it never had a name, or
    /// lost it at once, so nothing is left behind however the process ends).
    path: Option<PathBuf>,
    /// Device and inode of the file this handle locks.
    id: (u64, u64),
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
    /// Creates a named lock file (must not exist, mode 0600) and opens it.
    pub(crate) fn create(path: &Path, mode: u32) -> Result<RecordLock, Error> {
        let fd = fcntl::open_lock_file(path, true, true, mode).map_err(|e| open_error(path, e))?;
        let id = lockfile::fstat(&fd).map_err(|e| open_error(path, e))?.id;
        let local = ProcessLocal::find_or_open(id, true, || Ok((fd, id)))?;
        Ok(Self::with_local(Some(path), id, true, local))
    }

    /// Changes the lock file's permission bits (`fchmod`), so other users the segment lets in
    /// can open it too.
    pub(crate) fn set_mode(&self, mode: u32) -> Result<(), Error> {
        let local = self.local()?;
        let path = self
            .path
            .as_deref()
            .unwrap_or(Path::new("(unnamed lock file)"));
        fcntl::set_mode(&local.fd, mode).map_err(|e| open_error(path, e))
    }

    /// Creates a lock file without a name in `dir` (`O_TMPFILE`, or created and unlinked at
    /// once): nothing to remove later, nothing leaked when the process exits without dropping.
    /// Forked children reach it through their inherited descriptor.
    pub(crate) fn create_unnamed(dir: &Path) -> Result<RecordLock, Error> {
        let fallback = lock_file::new_lock_path();
        let fd = lockfile::create_unnamed(dir, &fallback).map_err(|e| open_error(dir, e))?;
        let id = lockfile::fstat(&fd).map_err(|e| open_error(dir, e))?.id;
        let local = ProcessLocal::find_or_open(id, true, || Ok((fd, id)))?;
        Ok(Self::with_local(None, id, true, local))
    }

    /// Opens the existing lock file a segment header names; `writable: false` allows read locks
    /// only. The path is untrusted (see [`lock_file`]): it must be one of the library's lock
    /// files, owned by `creator_uid`, or this fails with [`Error::Corrupted`] without having
    /// opened anything that could block or follow a link.
    pub(crate) fn open(path: &Path, writable: bool, creator_uid: u32) -> Result<RecordLock, Error> {
        lock_file::check_path(path, creator_uid)?;
        let before = lockfile::lstat(path).map_err(|e| open_error(path, e))?;
        lock_file::check_stat(path, &before, creator_uid)?;
        let local = ProcessLocal::find_or_open(before.id, writable, || {
            let fd = lockfile::open_untrusted(path, writable).map_err(|e| open_error(path, e))?;
            let checked = lockfile::fstat(&fd)
                .map_err(|e| open_error(path, e))
                .and_then(|after| {
                    lock_file::check_stat(path, &after, creator_uid)?;
                    if after.id == before.id {
                        Ok(after.id)
                    } else {
                        Err(Error::Corrupted {
                            what: format!(
                                "the lock file {} was replaced while it was being opened; try again",
                                path.display()
                            ),
                        })
                    }
                });
            match checked {
                Ok(id) => Ok((fd, id)),
                Err(e) => {
                    discard(fd);
                    Err(e)
                }
            }
        })?;
        Ok(Self::with_local(Some(path), before.id, writable, local))
    }

    fn with_local(
        path: Option<&Path>,
        id: (u64, u64),
        writable: bool,
        local: Arc<ProcessLocal>,
    ) -> RecordLock {
        RecordLock {
            path: path.map(Path::to_owned),
            id,
            writable,
            local: Mutex::new(local),
        }
    }

    /// The lock file's path; `None` for an unnamed one.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Unlinks the lock file's name, but only while it still names the very file this handle
    /// locks (created by this process, or checked as a library lock file when opened): a name
    /// that now points elsewhere is left alone. Already gone is fine.
    pub(crate) fn unlink(&self) {
        let Some(path) = &self.path else { return };
        if lockfile::lstat(path).is_ok_and(|st| st.id == self.id && st.is_regular()) {
            let _ = lockfile::unlink(path);
        }
    }

    /// This process's part, reopening the file if we are a forked child.
    fn local(&self) -> Result<Arc<ProcessLocal>, Error> {
        let generation = crate::sys::proc::fork_generation();
        let mut cur = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if cur.generation != generation {
            // We are a forked child: `cur.fd` is the parent's open file description, whose OFD
            // lock we would share. Open a description of our own through /proc/self/fd, which
            // reaches the same file even if it has no name (or a new one). Another handle of
            // this process may have done so already.
            let what = self.path.as_deref().unwrap_or(Path::new("/proc/self/fd"));
            let parent_fd = cur.lock_fd(self.writable);
            let local = ProcessLocal::find_or_open(self.id, self.writable, || {
                let fd =
                    lockfile::reopen(parent_fd, self.writable).map_err(|e| open_error(what, e))?;
                match lockfile::fstat(&fd) {
                    Ok(st) if st.id == self.id => Ok((fd, st.id)),
                    other => {
                        discard(fd);
                        Err(match other {
                            Err(e) => open_error(what, e),
                            Ok(_) => Error::Corrupted {
                                what: format!(
                                    "reopening the lock file {} after fork reached another file",
                                    what.display()
                                ),
                            },
                        })
                    }
                }
            })?;
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
            let taken = kernel_lock(local.lock_fd(false), LockType::Read, wait);
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
        if let Err(e) = kernel_lock(local.lock_fd(true), LockType::Write, wait) {
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

impl RecordGuard {
    /// Whether the calling process took this lock (not a child forked while it was held, whose
    /// copy of the guard holds nothing of its own).
    pub(crate) fn in_owner_process(&self) -> bool {
        self.local.generation == crate::sys::proc::fork_generation()
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
            kernel_unlock(self.local.lock_fd(true));
            st.writer = false;
            st.writer_thread = None;
        } else {
            st.readers -= 1;
            if let Some(i) = st.reader_threads.iter().position(|t| *t == self.thread) {
                st.reader_threads.swap_remove(i);
            }
            if st.readers == 0 {
                kernel_unlock(self.local.lock_fd(false));
            }
        }
        self.local.notify(&st);
    }
}

/// Gives up a descriptor opened on a path that failed its checks: closed with OFD locks; kept
/// open with classic locks, because it may name a file this process holds locks on (closing any
/// descriptor of it would drop them). Reclaimed when the process exits.
fn discard(fd: OwnedFd) {
    if flavour() == Flavour::Classic {
        std::mem::forget(fd);
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
mod tests;
