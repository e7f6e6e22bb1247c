//! fcntl record locks on a lock file: open/create/unlink the file, take and release
//! whole-file-start locks on byte 0, open file description (OFD) locks where the kernel has them
//! and classic per-process locks otherwise. Callers notice they run in a forked child through
//! [`super::proc::fork_generation`].

use super::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Which record lock to set on byte 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockType {
    /// `F_RDLCK`: shared with other readers.
    Read,
    /// `F_WRLCK`: exclusive.
    Write,
    /// `F_UNLCK`: release.
    Unlock,
}

/// Which flavour of record lock to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// Open file description locks (`F_OFD_SETLK[W]`, Linux >= 3.15): owned by the open file,
    /// so two opens in one process conflict and a forked child's reopened file conflicts too.
    Ofd,
    /// Classic POSIX locks (`F_SETLK[W]`): owned by the process, dropped when the process closes
    /// *any* descriptor of the file, not inherited by `fork`.
    Classic,
}

/// `open(2)` a lock file read-write (or read-only), `O_CLOEXEC | O_NOFOLLOW`.
///
/// With `create`, the file must not exist yet (`O_CREAT | O_EXCL`): a lock file that someone
/// else prepared could be a symlink or shared with strangers. It gets exactly `mode` (the
/// umask is undone with `fchmod`).
pub(crate) fn open_lock_file(
    path: &Path,
    create: bool,
    writable: bool,
    mode: u32,
) -> Result<OwnedFd, (&'static str, Errno)> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| ("open", Errno::EINVAL))?;
    let mut flags = libc::O_CLOEXEC | libc::O_NOFOLLOW;
    flags |= if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    if create {
        flags |= libc::O_CREAT | libc::O_EXCL;
    }
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; the mode argument is
    // read only with O_CREAT and is a plain integer.
    let fd =
        Errno::result(unsafe { libc::open(c.as_ptr(), flags, (mode & 0o777) as libc::c_uint) })
            .map_err(|e| ("open", e))?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if create {
        set_mode(&fd, mode)?;
    }
    Ok(fd)
}

/// `fchmod(fd, mode & 0o777)`.
pub(crate) fn set_mode(fd: &OwnedFd, mode: u32) -> Result<(), (&'static str, Errno)> {
    // SAFETY: plain integers; `fd` is open (borrowed for the call).
    Errno::result(unsafe { libc::fchmod(fd.as_raw_fd(), (mode & 0o777) as libc::mode_t) })
        .map(drop)
        .map_err(|e| ("fchmod", e))
}

/// `unlink(2)`.
pub(crate) fn unlink(path: &Path) -> Result<(), Errno> {
    std::fs::remove_file(path).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

fn flock_for(kind: LockType) -> libc::flock {
    // SAFETY: `flock` is a plain C struct of integers; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { core::mem::zeroed() };
    fl.l_type = match kind {
        LockType::Read => libc::F_RDLCK,
        LockType::Write => libc::F_WRLCK,
        LockType::Unlock => libc::F_UNLCK,
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // Byte 0, length 1: the first byte of the file stands for the value. l_pid must be 0 for
    // OFD locks.
    fl.l_start = 0;
    fl.l_len = 1;
    fl.l_pid = 0;
    fl
}

/// Sets or releases the lock on byte 0 of `fd`; with `wait`, blocks until it is granted
/// (`F_SETLKW` / `F_OFD_SETLKW`), retrying on `EINTR`.
///
/// Errors: `EAGAIN`/`EACCES` when `!wait` and someone else holds a conflicting lock; `EINVAL`
/// when the kernel does not know OFD locks; `EDEADLK` for a classic-lock deadlock; `EBADF` when
/// the file is not open for the needed access.
pub(crate) fn set_lock(
    fd: &OwnedFd,
    kind: LockType,
    wait: bool,
    flavour: Flavour,
) -> Result<(), (&'static str, Errno)> {
    let (cmd, call) = match (flavour, wait) {
        (Flavour::Ofd, true) => (libc::F_OFD_SETLKW, "fcntl(F_OFD_SETLKW)"),
        (Flavour::Ofd, false) => (libc::F_OFD_SETLK, "fcntl(F_OFD_SETLK)"),
        (Flavour::Classic, true) => (libc::F_SETLKW, "fcntl(F_SETLKW)"),
        (Flavour::Classic, false) => (libc::F_SETLK, "fcntl(F_SETLK)"),
    };
    let fl = flock_for(kind);
    loop {
        // SAFETY: `fd` is an open descriptor (borrowed for the call); `fl` is a valid flock the
        // kernel reads (and may not write for SETLK commands).
        match Errno::result(unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &fl as *const libc::flock) })
        {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(e) => return Err((call, e)),
        }
    }
}

/// The pid of a process holding a lock that conflicts with `kind`, if the kernel says
/// (`F_GETLK`; OFD holders report no pid). `None` also when no lock conflicts.
pub(crate) fn conflicting_holder(fd: &OwnedFd, kind: LockType) -> Option<u32> {
    let mut fl = flock_for(kind);
    // SAFETY: `fd` is open; `fl` is a valid, writable flock the kernel fills in.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETLK, &mut fl as *mut libc::flock) };
    if r != 0 || fl.l_type == libc::F_UNLCK as libc::c_short || fl.l_pid <= 0 {
        None
    } else {
        Some(fl.l_pid as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "shmchan-fcntl-unit-{tag}-{}",
            super::super::proc::pid()
        ))
    }

    #[test]
    fn two_ofd_opens_in_one_process_conflict() {
        let p = temp_path("ofd");
        let a = open_lock_file(&p, true, true, 0o600).expect("create");
        let b = open_lock_file(&p, false, true, 0).expect("open");
        set_lock(&a, LockType::Write, true, Flavour::Ofd).expect("lock a");
        let e = set_lock(&b, LockType::Read, false, Flavour::Ofd).unwrap_err();
        assert!(e.1 == Errno::EAGAIN || e.1 == Errno::EACCES, "{e:?}");
        set_lock(&a, LockType::Unlock, false, Flavour::Ofd).expect("unlock a");
        set_lock(&b, LockType::Read, false, Flavour::Ofd).expect("lock b");
        set_lock(&a, LockType::Read, false, Flavour::Ofd).expect("readers share");
        unlink(&p).expect("unlink");
    }

    #[test]
    fn create_refuses_an_existing_file() {
        let p = temp_path("excl");
        let _a = open_lock_file(&p, true, true, 0o600).expect("create");
        assert_eq!(
            open_lock_file(&p, true, true, 0o600).unwrap_err().1,
            Errno::EEXIST
        );
        unlink(&p).expect("unlink");
    }
}
