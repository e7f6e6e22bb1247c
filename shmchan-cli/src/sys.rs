//! The few raw system calls the command makes itself: attaching an arbitrary System V segment by
//! id (read-only, or read-write to wipe it), `IPC_STAT`, `IPC_RMID` by id, reading and wiping a
//! POSIX object through its file descriptor, `shm_unlink`, `statvfs`.
//!
//! The library opens segments *by type*; the tool must look at segments whose type it does not
//! know and that may be hostile, so it copies bytes out and decodes the copy.
//!
//! Bytes are copied with atomic loads of aligned words (or single bytes at the edges): processes
//! attached to the segment may write it while we read, and an atomic load is the access that is
//! defined under such a race. The std docs ("Atomic accesses to read-only memory") allow plain
//! `Relaxed`/`Acquire` loads of at most register width on read-only memory, which is what a
//! `SHM_RDONLY` attachment is.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::procfs::POSIX_DIR;

/// Something whose bytes can be copied out at an offset, whatever its kind.
pub trait SegmentBytes {
    /// Its size in bytes.
    fn len(&self) -> u64;
    /// Copies `buf.len()` bytes from `offset`; fails (never panics) if that range is outside.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Overwrites every byte with zero (requires a writable attachment).
    fn wipe(&self) -> io::Result<()>;

    /// Copies `len` bytes from `offset` into a new vector.
    fn read_vec(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0; len];
        self.read_at(offset, &mut v)?;
        Ok(v)
    }

    /// Reads one aligned `u64` with `Acquire` ordering (for sequence words).
    #[allow(dead_code)] // used by the seqlock reader once the lock layout is in main
    fn load_u64_acquire(&self, offset: u64) -> io::Result<u64>;
}

fn out_of_range(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("range {offset}+{len} is outside the segment ({size} bytes)"),
    )
}

/// `shmctl(shmid, IPC_STAT)`.
pub fn shm_stat(shmid: i32) -> io::Result<libc::shmid_ds> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` points to writable memory of the size shmctl(IPC_STAT) fills.
    let rc = unsafe { libc::shmctl(shmid, libc::IPC_STAT, ds.as_mut_ptr()) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: IPC_STAT succeeded, so the kernel filled the structure (and it was zeroed before:
    // every field is an integer, valid for any bits).
    Ok(unsafe { ds.assume_init() })
}

/// `shmctl(shmid, IPC_RMID)`: the segment disappears when its last process detaches; its key is
/// free at once.
pub fn shm_remove(shmid: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer; a null pointer is what the man page says to pass.
    let rc = unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A System V segment attached by id; detached on drop.
pub struct SysvAttachment {
    addr: *mut u8,
    len: usize,
    writable: bool,
}

impl SysvAttachment {
    /// `shmat(shmid, NULL, SHM_RDONLY)` (or `0` when `writable`). The length is the segment size
    /// from `IPC_STAT`; a System V segment cannot change size while attached.
    pub fn attach(shmid: i32, writable: bool) -> io::Result<Self> {
        // shm_segsz is a size_t.
        let len = shm_stat(shmid)?.shm_segsz;
        let flags = if writable { 0 } else { libc::SHM_RDONLY };
        // SAFETY: a null address lets the kernel choose where to map; nothing else in this
        // process refers to that range.
        let addr = unsafe { libc::shmat(shmid, std::ptr::null(), flags) };
        if addr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(SysvAttachment {
            addr: addr.cast(),
            len,
            writable,
        })
    }

    fn check(&self, offset: u64, len: usize) -> io::Result<usize> {
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= self.len as u64 => Ok(offset as usize),
            _ => Err(out_of_range(offset, len, self.len as u64)),
        }
    }
}

impl Drop for SysvAttachment {
    fn drop(&mut self) {
        // SAFETY: `addr` came from a successful shmat and is detached only here; no reference into
        // the mapping outlives `self` (every read copies out).
        unsafe {
            libc::shmdt(self.addr.cast());
        }
    }
}

impl SegmentBytes for SysvAttachment {
    fn len(&self) -> u64 {
        self.len as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = self.check(offset, buf.len())?;
        let mut i = 0;
        while i < buf.len() {
            let at = start + i;
            // The mapping is page-aligned, so `at % 8 == 0` means the address is 8-aligned.
            if at % 8 == 0 && buf.len() - i >= 8 {
                // SAFETY: `at..at+8` is inside the attachment (checked above), 8-aligned, and
                // stays mapped while `self` lives. An atomic load is defined even if another
                // process writes the word concurrently, and a Relaxed u64 load is allowed on
                // read-only memory (register width).
                let word =
                    unsafe { (*self.addr.add(at).cast::<AtomicU64>()).load(Ordering::Relaxed) };
                buf[i..i + 8].copy_from_slice(&word.to_ne_bytes());
                i += 8;
            } else {
                // SAFETY: as above, for one byte.
                buf[i] = unsafe { (*self.addr.add(at).cast::<AtomicU8>()).load(Ordering::Relaxed) };
                i += 1;
            }
        }
        Ok(())
    }

    fn load_u64_acquire(&self, offset: u64) -> io::Result<u64> {
        let at = self.check(offset, 8)?;
        if at % 8 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unaligned word offset",
            ));
        }
        // SAFETY: in bounds and aligned (checked), mapped while `self` lives; see `read_at`.
        Ok(unsafe { (*self.addr.add(at).cast::<AtomicU64>()).load(Ordering::Acquire) })
    }

    fn wipe(&self) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        let mut at = 0;
        while at < self.len {
            if at % 8 == 0 && self.len - at >= 8 {
                // SAFETY: in bounds, aligned, writable attachment; atomic stores are defined even
                // if another process accesses the word concurrently.
                unsafe { (*self.addr.add(at).cast::<AtomicU64>()).store(0, Ordering::Relaxed) };
                at += 8;
            } else {
                // SAFETY: as above, for one byte.
                unsafe { (*self.addr.add(at).cast::<AtomicU8>()).store(0, Ordering::Relaxed) };
                at += 1;
            }
        }
        Ok(())
    }
}

/// A POSIX shared memory object read (and wiped) through its file descriptor with
/// `pread`/`pwrite`, never mapped: another process may shrink the object at any moment, and a
/// read past the end of a mapping would kill the tool with SIGBUS, where `pread` just returns
/// fewer bytes.
pub struct PosixObject {
    file: File,
    len: u64,
}

impl PosixObject {
    /// Opens `/dev/shm/<name>` (what glibc's `shm_open` does), refusing symbolic links.
    pub fn open(name: &str, writable: bool) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
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
}

impl SegmentBytes for PosixObject {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(out_of_range(offset, buf.len(), self.len));
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the object shrank while being read",
                ),
                _ => e,
            })
    }

    fn load_u64_acquire(&self, offset: u64) -> io::Result<u64> {
        let mut b = [0; 8];
        self.read_at(offset, &mut b)?;
        // The copy happened in the kernel, in this thread's program order: a fence here orders it
        // before the loads that follow (seqlock readers need "read sequence, then data").
        std::sync::atomic::fence(Ordering::Acquire);
        Ok(u64::from_ne_bytes(b))
    }

    fn wipe(&self) -> io::Result<()> {
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

/// `/dev/shm/<name without its leading slash>`.
pub fn posix_path(name: &str) -> String {
    format!("{POSIX_DIR}/{}", name.trim_start_matches('/'))
}

/// `shm_unlink(name)`.
pub fn posix_unlink(name: &str) -> io::Result<()> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let rc = unsafe { libc::shm_unlink(c.as_ptr()) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sizes of the file system holding `path`, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct FsSpace {
    /// Total size.
    pub total: u64,
    /// Free for unprivileged users.
    pub available: u64,
}

/// `statvfs(path)`.
pub fn statvfs(path: &str) -> io::Result<FsSpace> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is NUL-terminated, `st` is writable memory of the right size.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded and filled the (previously zeroed, all-integer) structure.
    let st = unsafe { st.assume_init() };
    // The fields are `c_ulong`/`fsblkcnt_t`: 32-bit on some targets, so the casts are needed there.
    #[allow(clippy::unnecessary_cast)]
    let (frsize, blocks, bavail) = (st.f_frsize as u64, st.f_blocks as u64, st.f_bavail as u64);
    Ok(FsSpace {
        total: blocks.saturating_mul(frsize),
        available: bavail.saturating_mul(frsize),
    })
}

/// Runs `f` while holding a shared (read) record lock on byte 0 of the lock file `path`, the
/// protocol of shmchan's `FcntlLock`: writers take `F_WRLCK` on the same byte, so holding
/// `F_RDLCK` guarantees no write is in progress. Waits at most `deadline` for a writer to finish.
///
/// Uses an open-file-description lock (`F_OFD_SETLK`, Linux >= 3.15), falling back to a classic
/// per-process lock (`F_SETLK`) where OFD locks are unknown; either conflicts with the writers'.
pub fn with_read_lock<R>(
    path: &str,
    deadline: std::time::Duration,
    f: impl FnOnce() -> R,
) -> Result<R, String> {
    // The path comes from a header another process wrote: never open a device, FIFO or socket
    // (opening some devices has effects), nor follow a link.
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Err(format!("lock file {path} is not a regular file")),
        Err(e) => return Err(describe(&format!("stat(lock file {path})"), &e)),
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| describe(&format!("open(lock file {path})"), &e))?;
    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err(format!("lock file {path} is not a regular file"));
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let setlk = |cmd: i32, ty: i32| -> io::Result<()> {
        // SAFETY: all-zero is a valid `flock` (integers only); OFD locks require l_pid == 0.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = ty as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = 0;
        fl.l_len = 1;
        // SAFETY: `fd` is open for the duration of the call and `fl` is a valid flock.
        let rc = unsafe { libc::fcntl(fd, cmd, &mut fl as *mut libc::flock) };
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let start = std::time::Instant::now();
    let mut cmd = libc::F_OFD_SETLK;
    loop {
        match setlk(cmd, libc::F_RDLCK) {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && cmd == libc::F_OFD_SETLK => {
                cmd = libc::F_SETLK;
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {
                if start.elapsed() > deadline {
                    return Err(format!(
                        "a writer has held the lock on {path} for over {deadline:?}: try again, or find it with `fuser {path}`"
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(describe(&format!("fcntl(F_RDLCK on {path})"), &e)),
        }
    }
    let r = f();
    // Closing the descriptor releases the lock too; unlock explicitly to be prompt.
    let _ = setlk(cmd, libc::F_UNLCK);
    Ok(r)
}

/// The page size (the unit of `shmall`), from `sysconf(_SC_PAGESIZE)`.
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as u64 } else { 4096 }
}

/// `isatty(fd)`.
pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// Wraps an errno from a failed call into a one-line message naming the call.
pub fn describe(call: &str, err: &io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return format!("{call} failed: {err}");
    };
    // io::Error's text ends in " (os error N)": the symbolic name says it better.
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
    let hint = match code {
        libc::EACCES | libc::EPERM => {
            ": you are not its owner (or root) and its mode does not allow this; run as its owner or root"
        }
        libc::EIDRM | libc::EINVAL => ": it was probably removed meanwhile (see `shmchan ls`)",
        libc::ENOENT => ": it does not exist (any more)",
        _ => "",
    };
    format!("{call} failed: {} ({text}){hint}", errno_name(code))
}

/// The symbolic name of common errnos.
pub fn errno_name(code: i32) -> &'static str {
    match code {
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EINVAL => "EINVAL",
        libc::ENOENT => "ENOENT",
        libc::EIDRM => "EIDRM",
        libc::ENOMEM => "ENOMEM",
        libc::ENOSPC => "ENOSPC",
        libc::EEXIST => "EEXIST",
        libc::ELOOP => "ELOOP",
        _ => "errno",
    }
}
