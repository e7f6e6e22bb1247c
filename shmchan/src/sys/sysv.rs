//! System V shared memory: `ftok`, `shmget`, `shmat`/`shmdt`, and `shmctl` with
//! `IPC_STAT`, `IPC_SET`, `IPC_RMID`, `SHM_LOCK`, `SHM_UNLOCK`, `IPC_INFO` and `SHM_INFO`.

use super::Errno;
use super::mman::Region;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

/// `IPC_PRIVATE`: `shmget` always creates a new segment that no key can find.
pub(crate) const IPC_PRIVATE: i32 = libc::IPC_PRIVATE;
/// `shm_perm.mode` bit: the segment was removed (`IPC_RMID`) and dies at the last detach.
pub(crate) const SHM_DEST: u32 = 0o1000;
/// `shm_perm.mode` bit: the segment is locked in memory (`SHM_LOCK`).
pub(crate) const SHM_LOCKED: u32 = 0o2000;
/// `shmctl` command returning system-wide usage in a `struct shm_info` (Linux).
const SHM_INFO: i32 = 14;

fn check(r: libc::c_int) -> Result<libc::c_int, Errno> {
    Errno::result(r)
}

/// `ftok(path, id)`: a key derived from the inode and device of an existing file.
pub(crate) fn ftok(path: &Path, id: u8) -> Result<i32, Errno> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c` is a NUL-terminated string alive for the call; ftok only reads it.
    Errno::result(unsafe { libc::ftok(c.as_ptr(), libc::c_int::from(id)) })
}

/// How `shmget` treats a missing segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Open an existing segment only (`ENOENT` if none).
    No,
    /// `IPC_CREAT | IPC_EXCL`: create a new one (`EEXIST` if it exists).
    Exclusive,
}

/// `shmget(key, size, flags | mode)`: the segment id.
pub(crate) fn get(key: i32, size: usize, create: Create, mode: u32) -> Result<i32, Errno> {
    let flags = match create {
        Create::No => 0,
        Create::Exclusive => libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int,
    };
    // SAFETY: shmget takes plain integers and touches no memory of ours.
    check(unsafe { libc::shmget(key, size, flags) })
}

/// What `shmctl(IPC_STAT)` reports, copied out of `struct shmid_ds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShmStat {
    pub key: i32,
    pub size: usize,
    pub nattch: u64,
    pub cpid: i32,
    pub lpid: i32,
    pub atime: i64,
    pub dtime: i64,
    pub ctime: i64,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    /// Permission bits plus `SHM_DEST` / `SHM_LOCKED`.
    pub mode: u32,
}

fn zeroed_shmid_ds() -> libc::shmid_ds {
    // SAFETY: `shmid_ds` is a plain C struct of integers for which all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// `shmctl(id, IPC_STAT)`.
// `shmatt_t` and `c_ulong` are 32-bit on some targets: the casts are not no-ops there.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn stat(shmid: i32) -> Result<ShmStat, Errno> {
    let mut ds = zeroed_shmid_ds();
    // SAFETY: `ds` is a live, writable `shmid_ds` the kernel fills in.
    check(unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) })?;
    Ok(ShmStat {
        key: ds.shm_perm.__key,
        size: ds.shm_segsz,
        nattch: ds.shm_nattch as u64,
        cpid: ds.shm_cpid,
        lpid: ds.shm_lpid,
        atime: ds.shm_atime,
        dtime: ds.shm_dtime,
        ctime: ds.shm_ctime,
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        cuid: ds.shm_perm.cuid,
        cgid: ds.shm_perm.cgid,
        mode: u32::from(ds.shm_perm.mode),
    })
}

/// `shmctl(id, IPC_SET)`: sets owner uid, gid and the permission bits (low 9 bits of `mode`).
pub(crate) fn set(shmid: i32, uid: u32, gid: u32, mode: u32) -> Result<(), Errno> {
    let mut ds = zeroed_shmid_ds();
    // SAFETY: as in `stat`: IPC_STAT fills `ds`, then IPC_SET reads it back.
    check(unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) })?;
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as libc::c_ushort;
    // SAFETY: `ds` is a live, initialised `shmid_ds`; IPC_SET only reads it.
    check(unsafe { libc::shmctl(shmid, libc::IPC_SET, &mut ds) }).map(drop)
}

/// `shmctl(id, IPC_RMID)`: the key is freed at once, the memory at the last detach.
pub(crate) fn remove(shmid: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID ignores the buffer argument; null is what the man page prescribes.
    check(unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// `shmctl(id, SHM_LOCK)` (`lock == true`) or `SHM_UNLOCK`: forbid or allow swapping.
pub(crate) fn lock(shmid: i32, lock: bool) -> Result<(), Errno> {
    let cmd = if lock {
        libc::SHM_LOCK
    } else {
        libc::SHM_UNLOCK
    };
    // SAFETY: SHM_LOCK/SHM_UNLOCK ignore the buffer argument.
    check(unsafe { libc::shmctl(shmid, cmd, std::ptr::null_mut()) }).map(drop)
}

/// System-wide limits from `shmctl(0, IPC_INFO)` (`struct shminfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpcInfo {
    pub shmmax: u64,
    pub shmmin: u64,
    pub shmmni: u64,
    pub shmseg: u64,
    /// In pages.
    pub shmall: u64,
}

/// glibc's `struct shminfo` (not exported by the libc crate).
#[repr(C)]
#[derive(Default)]
struct ShmInfoRaw {
    shmmax: libc::c_ulong,
    shmmin: libc::c_ulong,
    shmmni: libc::c_ulong,
    shmseg: libc::c_ulong,
    shmall: libc::c_ulong,
    reserved: [libc::c_ulong; 4],
}

/// glibc's `struct shm_info` (not exported by the libc crate).
#[repr(C)]
#[derive(Default)]
struct ShmUsageRaw {
    used_ids: libc::c_int,
    shm_tot: libc::c_ulong,
    shm_rss: libc::c_ulong,
    shm_swp: libc::c_ulong,
    swap_attempts: libc::c_ulong,
    swap_successes: libc::c_ulong,
}

/// `shmctl(0, IPC_INFO)`.
// `shmatt_t` and `c_ulong` are 32-bit on some targets: the casts are not no-ops there.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn ipc_info() -> Result<IpcInfo, Errno> {
    let mut raw = ShmInfoRaw::default();
    // SAFETY: with IPC_INFO the kernel writes a `struct shminfo` through the pointer (the cast
    // to `shmid_ds` is the documented calling convention); `raw` has that exact layout.
    check(unsafe {
        libc::shmctl(
            0,
            libc::IPC_INFO,
            (&mut raw as *mut ShmInfoRaw).cast::<libc::shmid_ds>(),
        )
    })?;
    Ok(IpcInfo {
        shmmax: raw.shmmax as u64,
        shmmin: raw.shmmin as u64,
        shmmni: raw.shmmni as u64,
        shmseg: raw.shmseg as u64,
        shmall: raw.shmall as u64,
    })
}

/// System-wide usage from `shmctl(0, SHM_INFO)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShmUsage {
    /// Segments that currently exist.
    pub used_ids: u64,
    /// Pages allocated to all segments together (compared with `shmall`).
    pub total_pages: u64,
}

/// `shmctl(0, SHM_INFO)`.
// `shmatt_t` and `c_ulong` are 32-bit on some targets: the casts are not no-ops there.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn shm_info() -> Result<ShmUsage, Errno> {
    let mut raw = ShmUsageRaw::default();
    // SAFETY: with SHM_INFO the kernel writes a `struct shm_info`; `raw` has that layout.
    check(unsafe {
        libc::shmctl(
            0,
            SHM_INFO,
            (&mut raw as *mut ShmUsageRaw).cast::<libc::shmid_ds>(),
        )
    })?;
    Ok(ShmUsage {
        used_ids: raw.used_ids.max(0) as u64,
        total_pages: raw.shm_tot as u64,
    })
}

/// A `shmat` attachment, detached (`shmdt`) on drop.
#[derive(Debug)]
pub(crate) struct Attachment {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: like `Mapping`: an address range owned by this handle, only accessed through
// `Region`'s thread-safe accessors or under a cross-process protocol.
unsafe impl Send for Attachment {}
// SAFETY: see `Send`.
unsafe impl Sync for Attachment {}

impl Attachment {
    /// `shmat(shmid, NULL, read_only ? SHM_RDONLY : 0)`; `len` is the segment size from
    /// `IPC_STAT`.
    pub(crate) fn attach(shmid: i32, len: usize, read_only: bool) -> Result<Attachment, Errno> {
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: a NULL address lets the kernel choose a free range, aliasing no Rust object.
        let p = unsafe { libc::shmat(shmid, std::ptr::null(), flags) };
        if p as isize == -1 {
            return Err(Errno::last());
        }
        match NonNull::new(p.cast::<u8>()) {
            Some(ptr) => Ok(Attachment {
                ptr,
                len,
                writable: !read_only,
            }),
            None => Err(Errno::EFAULT),
        }
    }

    /// The attached bytes.
    pub(crate) fn region(&self) -> Region<'_> {
        // SAFETY: the attachment stays mapped until `self` is dropped or detached, and the
        // region borrows `self`.
        unsafe { Region::new(self.ptr, self.len, self.writable) }
    }

    /// `shmdt` now, reporting its error (drop ignores it).
    pub(crate) fn detach(self) -> Result<(), Errno> {
        let p = self.ptr;
        std::mem::forget(self);
        // SAFETY: `p` is the address shmat returned; `self` is forgotten so no region or drop
        // uses it afterwards.
        check(unsafe { libc::shmdt(p.as_ptr().cast()) }).map(drop)
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // SAFETY: `ptr` is the address shmat returned and no `Region` outlives `self`.
        unsafe {
            libc::shmdt(self.ptr.as_ptr().cast());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipc_info_reports_positive_limits() {
        let info = ipc_info().expect("IPC_INFO");
        assert!(info.shmmax > 0 && info.shmmni > 0 && info.shmall > 0);
        assert!(info.shmmin >= 1);
        shm_info().expect("SHM_INFO");
    }

    #[test]
    fn shmget_provokes_einval_eexist_enoent_for_real() {
        let key = 0x5e60_0000 | (std::process::id() as i32 & 0xffff);
        // EINVAL: a size below SHMMIN (0) when creating.
        assert_eq!(get(key, 0, Create::Exclusive, 0o600), Err(Errno::EINVAL));
        let id = get(key, 4096, Create::Exclusive, 0o600).expect("create");
        let cleanup = Guard(id);
        // EEXIST: exclusive creation of an existing key.
        assert_eq!(get(key, 4096, Create::Exclusive, 0o600), Err(Errno::EEXIST));
        // EINVAL: asking for more bytes than the existing segment has.
        // SAFETY: shmget takes plain integers.
        let r = unsafe { libc::shmget(key, 8192, 0) };
        assert_eq!((r, Errno::last()), (-1, Errno::EINVAL));
        assert_eq!(stat(id).expect("stat").size, 4096);
        drop(cleanup);
        // ENOENT: the key is gone after IPC_RMID.
        assert_eq!(get(key, 0, Create::No, 0), Err(Errno::ENOENT));
    }

    struct Guard(i32);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = remove(self.0);
        }
    }
}
