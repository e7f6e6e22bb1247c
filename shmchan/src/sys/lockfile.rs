//! Opening lock files whose path another process chose, creating lock files that have no name,
//! and identifying files by device and inode.
//!
//! A segment's header names its fcntl lock file, and anyone who can write the segment can change
//! that name. So a named lock file is opened `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` (no symlink is
//! followed, opening a FIFO or a device never waits and never makes it a controlling terminal)
//! and checked with `fstat` after opening (see `sync::lock_file`).

use super::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The identity of a file: what `stat` says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    /// Device and inode: equal for two names or descriptors of the same file.
    pub(crate) id: (u64, u64),
    /// `st_mode & S_IFMT`.
    pub(crate) file_type: u32,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Owner.
    pub(crate) uid: u32,
}

impl FileStat {
    /// A regular file.
    pub(crate) fn is_regular(&self) -> bool {
        self.file_type == libc::S_IFREG
    }

    /// What kind of file it is, in words (for error messages).
    pub(crate) fn kind(&self) -> &'static str {
        match self.file_type {
            libc::S_IFREG => "a regular file",
            libc::S_IFDIR => "a directory",
            libc::S_IFIFO => "a FIFO",
            libc::S_IFLNK => "a symbolic link",
            libc::S_IFSOCK => "a socket",
            libc::S_IFCHR => "a character device",
            libc::S_IFBLK => "a block device",
            _ => "a file of unknown type",
        }
    }
}

fn from_stat(st: &libc::stat) -> FileStat {
    FileStat {
        id: (st.st_dev, st.st_ino),
        file_type: st.st_mode & libc::S_IFMT,
        size: st.st_size.max(0) as u64,
        uid: st.st_uid,
    }
}

fn c_path(path: &Path) -> Result<CString, (&'static str, Errno)> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| ("open", Errno::EINVAL))
}

fn access(writable: bool) -> libc::c_int {
    if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    }
}

fn open_raw(
    c: &CString,
    flags: libc::c_int,
    call: &'static str,
) -> Result<OwnedFd, (&'static str, Errno)> {
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call; the mode argument is
    // read only with O_CREAT / O_TMPFILE and is a plain integer.
    let fd = unsafe { libc::open(c.as_ptr(), flags, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err((call, Errno::last()));
    }
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a lock file named by someone else: `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC`,
/// never creating it. The caller must `fstat` the result before trusting it.
pub(crate) fn open_untrusted(
    path: &Path,
    writable: bool,
) -> Result<OwnedFd, (&'static str, Errno)> {
    let flags = libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
    open_raw(&c_path(path)?, flags | access(writable), "open")
}

/// Opens a new open file description of the file behind `fd` (`/proc/self/fd/N`, which works
/// even when the file has no name any more): what a forked child needs for a lock of its own.
pub(crate) fn reopen(fd: &OwnedFd, writable: bool) -> Result<OwnedFd, (&'static str, Errno)> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let c = CString::new(path).map_err(|_| ("open(/proc/self/fd)", Errno::EINVAL))?;
    // No O_NOFOLLOW: /proc/self/fd/N is a link to our own descriptor's file, which is the point.
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    open_raw(&c, flags | access(writable), "open(/proc/self/fd)")
}

/// Creates a lock file in `dir` that has no name: `O_TMPFILE` (nothing to leak, whatever way
/// the process ends), or where the file system lacks it a file created `O_EXCL` at `fallback`
/// and unlinked at once.
pub(crate) fn create_unnamed(
    dir: &Path,
    fallback: &Path,
) -> Result<OwnedFd, (&'static str, Errno)> {
    let flags = libc::O_CLOEXEC | libc::O_RDWR;
    match open_raw(&c_path(dir)?, flags | libc::O_TMPFILE, "open(O_TMPFILE)") {
        Ok(fd) => return Ok(fd),
        // EOPNOTSUPP: the file system has no O_TMPFILE; EISDIR: the kernel predates it.
        Err((_, Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL)) => {}
        Err(e) => return Err(e),
    }
    let fd = open_raw(
        &c_path(fallback)?,
        flags | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        "open",
    )?;
    unlink(fallback).map_err(|e| ("unlink", e))?;
    Ok(fd)
}

/// `fstat(2)`.
pub(crate) fn fstat(fd: &OwnedFd) -> Result<FileStat, (&'static str, Errno)> {
    // SAFETY: `stat` is a plain C struct of integers; all-zero is a valid value.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open (borrowed for the call); `st` is a valid, writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(("fstat", Errno::last()));
    }
    Ok(from_stat(&st))
}

/// `lstat(2)`: the file the name itself is (a symlink is reported as one, never followed).
pub(crate) fn lstat(path: &Path) -> Result<FileStat, (&'static str, Errno)> {
    let c = c_path(path)?;
    // SAFETY: `stat` is a plain C struct of integers; all-zero is a valid value.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string; `st` is a valid, writable stat.
    if unsafe { libc::lstat(c.as_ptr(), &mut st) } != 0 {
        return Err(("lstat", Errno::last()));
    }
    Ok(from_stat(&st))
}

/// `unlink(2)`.
pub(crate) fn unlink(path: &Path) -> Result<(), Errno> {
    std::fs::remove_file(path).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_file_leaves_nothing_in_the_directory() {
        let dir = std::env::temp_dir();
        let fallback = dir.join(format!(
            "shmchan-lockfile-unit-{}",
            super::super::proc::pid()
        ));
        let fd = create_unnamed(&dir, &fallback).expect("create");
        assert!(fstat(&fd).unwrap().is_regular());
        assert!(lstat(&fallback).is_err());
        let again = reopen(&fd, true).expect("reopen through /proc/self/fd");
        assert_eq!(fstat(&again).unwrap().id, fstat(&fd).unwrap().id);
    }

    #[test]
    fn untrusted_open_does_not_follow_symlinks() {
        let dir = std::env::temp_dir();
        let link = dir.join(format!(
            "shmchan-lockfile-link-{}",
            super::super::proc::pid()
        ));
        let _ = unlink(&link);
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        assert_eq!(open_untrusted(&link, false).unwrap_err().1, Errno::ELOOP);
        assert_eq!(lstat(&link).unwrap().file_type, libc::S_IFLNK);
        unlink(&link).unwrap();
    }
}
