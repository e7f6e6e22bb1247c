//! Kernel access for tools that look at segments they did not create and whose type they do
//! not know (the `shmchan` command): attach any System V segment by id, read a POSIX object
//! without mapping it, stat, remove, wipe, and take the fcntl read lock of a value.
//!
//! Not part of the stable API (`#[doc(hidden)]`): it exists so the command needs no `libc` and
//! no `unsafe` of its own. Everything read here may be hostile; the decoders of
//! [`crate::format`] take it from there.

use crate::format::ByteSource;
use crate::format::header::FIXED_LEN;
use crate::format::{check_range, outside};
use crate::sync::words::Width;
use crate::sys::sysv;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, SystemTime};

/// Where POSIX shared memory objects live (what glibc's `shm_open` opens).
pub const POSIX_DIR: &str = "/dev/shm";

/// `SHM_DEST` in a System V mode word: removed, waiting for the last detach.
pub const SHM_DEST: u32 = sysv::SHM_DEST;
/// `SHM_LOCKED` in a System V mode word: locked in memory.
pub const SHM_LOCKED: u32 = sysv::SHM_LOCKED;

/// An errno from a `sys` wrapper as an `io::Error` (which keeps the raw code).
fn os(e: nix::errno::Errno) -> io::Error {
    io::Error::from(e)
}

/// The symbolic name of an errno (`"EACCES"`), `"errno"` for one without a name.
///
/// # Examples
///
/// ```
/// # #[allow(deprecated)]
/// let e = std::io::Error::from_raw_os_error(13);
/// assert_eq!(shmchan::tool::errno_name(&e), "EACCES");
/// ```
pub fn errno_name(err: &io::Error) -> &'static str {
    let Some(code) = err.raw_os_error() else {
        return "error";
    };
    match nix::errno::Errno::from_raw(code) {
        nix::errno::Errno::UnknownErrno => "errno",
        e => errno_str(e),
    }
}

fn errno_str(e: nix::errno::Errno) -> &'static str {
    use nix::errno::Errno::*;
    match e {
        EACCES => "EACCES",
        EPERM => "EPERM",
        EINVAL => "EINVAL",
        ENOENT => "ENOENT",
        EIDRM => "EIDRM",
        ENOMEM => "ENOMEM",
        ENOSPC => "ENOSPC",
        EEXIST => "EEXIST",
        ELOOP => "ELOOP",
        EAGAIN => "EAGAIN",
        EBADF => "EBADF",
        EBUSY => "EBUSY",
        ENXIO => "ENXIO",
        EIO => "EIO",
        EFAULT => "EFAULT",
        _ => "errno",
    }
}

/// Whether an errno means "no permission" (`EACCES`, `EPERM`).
///
/// # Examples
///
/// ```
/// let e = std::io::Error::from_raw_os_error(1);
/// assert!(shmchan::tool::is_permission_error(&e));
/// ```
pub fn is_permission_error(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::PermissionDenied
}

/// Whether an errno means "gone" (`ENOENT`, `EIDRM`, `EINVAL` for a stale System V id).
///
/// # Examples
///
/// ```
/// let e = std::io::Error::from_raw_os_error(2);
/// assert!(shmchan::tool::is_gone_error(&e));
/// ```
pub fn is_gone_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error().map(nix::errno::Errno::from_raw),
        Some(nix::errno::Errno::ENOENT | nix::errno::Errno::EIDRM | nix::errno::Errno::EINVAL)
    )
}

/// What `IPC_STAT` says about a System V segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SysvStat {
    /// Size in bytes.
    pub size: u64,
    /// Attached processes.
    pub attach_count: u64,
    /// Permission bits and `SHM_DEST` / `SHM_LOCKED`.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Creator's pid.
    pub creator_pid: u32,
    /// Last attach time.
    pub attach_time: Option<SystemTime>,
}

impl SysvStat {
    /// Removed (`IPC_RMID`) and waiting for its last detach.
    pub fn marked_for_removal(&self) -> bool {
        self.mode & SHM_DEST != 0
    }
}

/// `shmctl(shmid, IPC_STAT)`.
///
/// # Errors
///
/// The errno (`EINVAL`/`EIDRM` for an id that is gone, `EACCES` without read permission).
///
/// # Examples
///
/// ```
/// assert!(shmchan::tool::sysv_stat(i32::MAX).is_err());
/// ```
pub fn sysv_stat(shmid: i32) -> io::Result<SysvStat> {
    let st = sysv::stat(shmid).map_err(os)?;
    Ok(SysvStat {
        size: st.size as u64,
        attach_count: st.nattch,
        mode: st.mode,
        uid: st.uid,
        creator_pid: st.cpid.max(0) as u32,
        attach_time: (st.atime > 0)
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(st.atime as u64)),
    })
}

/// `shmctl(shmid, IPC_RMID)`: the segment goes when its last process detaches; its key is free
/// at once.
///
/// # Errors
///
/// The errno (`EPERM` unless owner, creator or root).
///
/// # Examples
///
/// ```
/// assert!(shmchan::tool::sysv_remove(i32::MAX).is_err());
/// ```
pub fn sysv_remove(shmid: i32) -> io::Result<()> {
    sysv::remove(shmid).map_err(os)
}

/// Any System V segment, attached by id (read-only unless writable); detached on drop. Reads
/// are atomic word copies: attached processes may write while we read.
#[derive(Debug)]
pub struct SysvAttachment {
    att: sysv::Attachment,
}

impl SysvAttachment {
    /// `shmat(shmid, NULL, SHM_RDONLY)` (or read-write). The length is the size from
    /// `IPC_STAT`: a System V segment cannot change size.
    ///
    /// # Errors
    ///
    /// The errno of `shmctl` or `shmat`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(shmchan::tool::SysvAttachment::attach(i32::MAX, false).is_err());
    /// ```
    pub fn attach(shmid: i32, writable: bool) -> io::Result<SysvAttachment> {
        let len = sysv::stat(shmid).map_err(os)?.size;
        let att = sysv::Attachment::attach(shmid, len, !writable).map_err(os)?;
        Ok(SysvAttachment { att })
    }

    /// Overwrites every byte with zero (atomic stores).
    ///
    /// # Errors
    ///
    /// `PermissionDenied` on a read-only attachment.
    pub fn wipe(&self) -> io::Result<()> {
        let r = self.att.region();
        r.wipe(0, r.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::PermissionDenied))
    }
}

impl ByteSource for SysvAttachment {
    fn len_bytes(&self) -> u64 {
        self.att.region().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crate::Result<()> {
        let at = check_range(offset, buf.len() as u64, self.len_bytes())?;
        // Access every word with the width its writers use (mixed-width racing accesses are
        // not defined): 4-byte words in the fixed header (its state and flags words are
        // `AtomicU32`s), 8-byte words after it (payloads are copied as `AtomicU64`s).
        let split = FIXED_LEN.saturating_sub(at).min(buf.len());
        let (head, rest) = buf.split_at_mut(split);
        let r = self.att.region();
        r.read_into(at, head, Width::W4)
            .and_then(|()| r.read_into(at + split, rest, Width::W8))
            .ok_or_else(|| outside(offset, buf.len() as u64, self.len_bytes()))
    }
}

/// A POSIX shared memory object read (and wiped) through its descriptor with `pread` /
/// `pwrite`, never mapped: another process may shrink it at any time, and touching a mapping
/// past the new end would kill the reader with `SIGBUS`, where `pread` returns fewer bytes.
#[derive(Debug)]
pub struct PosixObject {
    file: File,
    len: u64,
}

/// `/dev/shm/<name without its leading slash>`.
///
/// # Examples
///
/// ```
/// assert_eq!(shmchan::tool::posix_path("/tick"), "/dev/shm/tick");
/// ```
pub fn posix_path(name: &str) -> String {
    format!("{POSIX_DIR}/{}", name.trim_start_matches('/'))
}

impl PosixObject {
    /// Opens `/dev/shm/<name>`, refusing symbolic links and anything but a regular file.
    ///
    /// # Errors
    ///
    /// The errno of `open`, or `InvalidInput` for a non-regular file.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(shmchan::tool::PosixObject::open("/shmchan-doc-none", false).is_err());
    /// ```
    pub fn open(name: &str, writable: bool) -> io::Result<PosixObject> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(posix_path(name))?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(PosixObject {
            file,
            len: meta.len(),
        })
    }

    /// Overwrites every byte with zero.
    ///
    /// # Errors
    ///
    /// The errno of `pwrite`.
    pub fn wipe(&self) -> io::Result<()> {
        let zeros = vec![0u8; 64 * 1024];
        let mut at = 0;
        while at < self.len {
            let n = zeros.len().min((self.len - at) as usize);
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }
}

impl ByteSource for PosixObject {
    fn len_bytes(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> crate::Result<()> {
        check_range(offset, buf.len() as u64, self.len)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| crate::Error::Corrupted {
                what: match e.kind() {
                    io::ErrorKind::UnexpectedEof => "the object shrank while being read".to_owned(),
                    _ => format!("pread: {e}"),
                },
            })
    }
}

/// `shm_unlink(name)`.
///
/// # Errors
///
/// The errno (`ENOENT`, `EACCES`).
///
/// # Examples
///
/// ```
/// assert!(shmchan::tool::posix_unlink("/shmchan-doc-none").is_err());
/// ```
pub fn posix_unlink(name: &str) -> io::Result<()> {
    let c =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    crate::sys::posix_shm::unlink(&c).map_err(os)
}

/// Sizes of a file system, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsSpace {
    /// Total size.
    pub total: u64,
    /// Free for unprivileged users.
    pub available: u64,
}

/// `statvfs(path)`.
///
/// # Errors
///
/// The errno.
///
/// # Examples
///
/// ```
/// let s = shmchan::tool::statvfs("/")?;
/// assert!(s.total >= s.available);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn statvfs(path: &str) -> io::Result<FsSpace> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let frsize = st.fragment_size();
    Ok(FsSpace {
        total: (st.blocks() as u64).saturating_mul(frsize),
        available: (st.blocks_available() as u64).saturating_mul(frsize),
    })
}

/// The page size (the unit of `shmall`).
///
/// # Examples
///
/// ```
/// assert!(shmchan::tool::page_size().is_power_of_two());
/// ```
pub fn page_size() -> u64 {
    crate::sys::posix_shm::page_size()
}

/// Runs `f` while holding a shared (read) record lock on the lock file `path` of an
/// `FcntlLock` value, exactly as the library's readers do: writers hold the write lock, so no
/// write is in progress while `f` runs. Waits at most `deadline` for a writer.
///
/// The path comes from a header another process wrote, so it is accepted only if it is one of
/// the library's own lock files: in its directories, named like one, a regular empty file
/// owned by `creator_uid` (the segment's creator), opened without following links or blocking.
///
/// # Errors
///
/// A message saying why the lock file was refused, which call failed with which errno, or that
/// a writer kept the lock for longer than `deadline`.
///
/// # Examples
///
/// ```
/// let r = shmchan::tool::with_read_lock("/tmp/not-a-lock", 0, std::time::Duration::ZERO, || 1);
/// assert!(r.is_err());
/// ```
pub fn with_read_lock<R>(
    path: &str,
    creator_uid: u32,
    deadline: Duration,
    f: impl FnOnce() -> R,
) -> Result<R, String> {
    use crate::sync::record_lock::{RecordLock, Wait};
    let lock = RecordLock::open(std::path::Path::new(path), false, creator_uid)
        .map_err(|e| e.to_string())?;
    let guard = lock
        .lock_read(Wait::after(deadline))
        .map_err(|e| match e {
            crate::Error::WouldBlock { .. } | crate::Error::Timeout { .. } => format!(
                "a writer has held the lock on {path} for over {deadline:?}: try again, or find it with `fuser {path}`"
            ),
            other => other.to_string(),
        })?;
    let r = f();
    drop(guard);
    Ok(r)
}

/// Whether process `pid` started at `start_time` still runs, and the start time of a process
/// or thread: see [`crate::format::liveness`].
pub use crate::format::liveness::{Liveness, liveness, start_time};
