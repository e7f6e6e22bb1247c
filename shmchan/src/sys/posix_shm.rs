//! POSIX shared memory objects: `shm_open`, `ftruncate`, `posix_fallocate`, `fstat`, `fchmod`,
//! `fchown`, `shm_unlink`, and `statvfs` for the free space of `/dev/shm`.

use super::Errno;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn check(r: libc::c_int) -> Result<libc::c_int, Errno> {
    Errno::result(r)
}

/// How `shm_open` treats a missing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// `O_CREAT | O_EXCL | O_RDWR`.
    CreateExclusive,
    /// `O_RDWR`.
    ReadWrite,
    /// `O_RDONLY`.
    ReadOnly,
}

/// `shm_open(name, flags | O_CLOEXEC, mode)`.
pub(crate) fn open(name: &CStr, how: OpenMode, mode: u32) -> Result<OwnedFd, Errno> {
    let flags = libc::O_CLOEXEC
        | match how {
            OpenMode::CreateExclusive => libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            OpenMode::ReadWrite => libc::O_RDWR,
            OpenMode::ReadOnly => libc::O_RDONLY,
        };
    // SAFETY: `name` is NUL-terminated and alive for the call.
    let fd =
        check(unsafe { libc::shm_open(name.as_ptr(), flags, (mode & 0o777) as libc::mode_t) })?;
    // SAFETY: shm_open returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `ftruncate(fd, len)`.
pub(crate) fn truncate(fd: BorrowedFd<'_>, len: u64) -> Result<(), Errno> {
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    // SAFETY: plain integers; `fd` is live (borrowed).
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
}

/// `posix_fallocate(fd, 0, len)`: reserves the pages now, so running out of `/dev/shm` space is
/// an `ENOSPC` here rather than a `SIGBUS` on first touch.
pub(crate) fn allocate(fd: BorrowedFd<'_>, len: u64) -> Result<(), Errno> {
    let len = libc::off_t::try_from(len).map_err(|_| Errno::EFBIG)?;
    // SAFETY: plain integers; `fd` is live (borrowed). The function returns the error number.
    match unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        e => Err(Errno::from_raw(e)),
    }
}

/// What `fstat` reports about a shared memory object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObjStat {
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub dev: u64,
    pub ino: u64,
}

/// `fstat(fd)`.
pub(crate) fn stat(fd: BorrowedFd<'_>) -> Result<ObjStat, Errno> {
    // SAFETY: `stat` is a plain C struct for which all-zero is valid.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is live and writable; `fd` is live (borrowed).
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(ObjStat {
        size: st.st_size.max(0) as u64,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        atime: st.st_atime,
        mtime: st.st_mtime,
        ctime: st.st_ctime,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// `fchmod(fd, mode & 0o777)`.
pub(crate) fn chmod(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    // SAFETY: plain integers; `fd` is live (borrowed).
    check(unsafe { libc::fchmod(fd.as_raw_fd(), (mode & 0o777) as libc::mode_t) }).map(drop)
}

/// `fchown(fd, uid, gid)`.
pub(crate) fn chown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<(), Errno> {
    // SAFETY: plain integers; `fd` is live (borrowed).
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

/// `shm_unlink(name)`: the name disappears at once, the memory when the last mapping goes.
pub(crate) fn unlink(name: &CStr) -> Result<(), Errno> {
    // SAFETY: `name` is NUL-terminated and alive for the call.
    check(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
}

/// Bytes available to unprivileged users on the file system holding `path` (`statvfs`).
pub(crate) fn free_bytes(path: &CStr) -> Result<u64, Errno> {
    // SAFETY: `statvfs` is a plain C struct for which all-zero is valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated; `st` is live and writable.
    check(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// The system page size (`sysconf(_SC_PAGESIZE)`).
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// The calling process's effective user and group ids.
pub(crate) fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid/getegid have no preconditions and cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn create_exclusive_twice_is_eexist_and_unlink_twice_is_enoent() {
        let name = std::ffi::CString::new(format!("/shmchan-test-sys-{}", std::process::id()))
            .expect("no NUL");
        let fd = open(&name, OpenMode::CreateExclusive, 0o600).expect("create");
        assert_eq!(
            open(&name, OpenMode::CreateExclusive, 0o600).err(),
            Some(Errno::EEXIST)
        );
        truncate(fd.as_fd(), 8192).expect("ftruncate");
        allocate(fd.as_fd(), 8192).expect("fallocate");
        assert_eq!(stat(fd.as_fd()).expect("fstat").size, 8192);
        unlink(&name).expect("unlink");
        assert_eq!(unlink(&name).err(), Some(Errno::ENOENT));
        assert_eq!(
            open(&name, OpenMode::ReadOnly, 0).err(),
            Some(Errno::ENOENT)
        );
        assert!(free_bytes(c"/dev/shm").expect("statvfs") > 0);
    }
}
