//! System shared memory limits ([`limits`]) and the size checks made before creating a segment,
//! so that an impossible size is a typed error instead of an `EINVAL` without context or a
//! `SIGBUS` on first touch.

use crate::error::{Error, Result, Target};
use crate::sys;

/// System V shared memory limits and `/dev/shm` space.
///
/// `shmmax`, `shmall` and `shmmni` come from `/proc/sys/kernel/shm{max,all,mni}` (what an
/// administrator sets with `sysctl`), falling back to `shmctl(IPC_INFO)`; `shmmin` and `shmseg`
/// only exist in `IPC_INFO`.
///
/// # Examples
///
/// ```
/// let l = shmchan::limits()?;
/// assert!(l.shmmax >= l.shmmin);
/// println!("largest System V segment: {} bytes", l.shmmax);
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest System V segment, in bytes (`kernel.shmmax`).
    pub shmmax: u64,
    /// Smallest System V segment, in bytes (1 on Linux).
    pub shmmin: u64,
    /// Most System V segments in the system (`kernel.shmmni`).
    pub shmmni: u64,
    /// Most segments one process may attach (`IPC_INFO`; Linux does not enforce it).
    pub shmseg: u64,
    /// Most System V shared memory in the system, in pages (`kernel.shmall`).
    pub shmall: u64,
    /// The page size `shmall` counts in.
    pub page_size: u64,
    /// System V segments that exist now (`SHM_INFO`).
    pub segments_in_use: u64,
    /// Pages all System V segments use now (`SHM_INFO`).
    pub pages_in_use: u64,
    /// Bytes free in `/dev/shm` for POSIX segments, if it is mounted.
    pub dev_shm_free: Option<u64>,
}

fn read_proc(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads the system's shared memory limits.
///
/// Raise them with `sysctl -w kernel.shmmax=<bytes>`, `kernel.shmall=<pages>`,
/// `kernel.shmmni=<count>` (or in `/etc/sysctl.d/`); `/dev/shm` is a tmpfs whose size is a
/// mount option (`mount -o remount,size=4G /dev/shm`).
///
/// # Errors
///
/// [`Error::Os`] if `shmctl(IPC_INFO)` fails (System V IPC disabled in the kernel).
///
/// # Examples
///
/// ```
/// let l = shmchan::limits()?;
/// assert!(l.shmmni > 0);
/// # Ok::<(), shmchan::Error>(())
/// ```
pub fn limits() -> Result<Limits> {
    let info = sys::sysv::ipc_info().map_err(|errno| Error::Os {
        call: "shmctl(IPC_INFO)",
        errno,
    })?;
    let usage = sys::sysv::shm_info().map_err(|errno| Error::Os {
        call: "shmctl(SHM_INFO)",
        errno,
    })?;
    Ok(Limits {
        shmmax: read_proc("shmmax").unwrap_or(info.shmmax),
        shmmin: info.shmmin.max(1),
        shmmni: read_proc("shmmni").unwrap_or(info.shmmni),
        shmseg: info.shmseg,
        shmall: read_proc("shmall").unwrap_or(info.shmall),
        page_size: sys::posix_shm::page_size(),
        segments_in_use: usage.used_ids,
        pages_in_use: usage.total_pages,
        dev_shm_free: sys::posix_shm::free_bytes(c"/dev/shm").ok(),
    })
}

/// Refuses a System V segment of `len` bytes that the kernel would refuse or could not hold.
pub(crate) fn check_sysv(len: usize, target: &Target) -> Result<()> {
    let l = limits()?;
    let len = len as u64;
    let invalid = |reason: String| Error::InvalidSize {
        call: "shmget size check",
        target: target.clone(),
        requested: len,
        reason,
    };
    if len < l.shmmin {
        return Err(invalid(format!("below shmmin ({} bytes)", l.shmmin)));
    }
    if len > l.shmmax {
        return Err(invalid(format!(
            "above shmmax ({} bytes); raise it with `sysctl -w kernel.shmmax={len}`",
            l.shmmax
        )));
    }
    let pages = len.div_ceil(l.page_size.max(1));
    if l.segments_in_use >= l.shmmni {
        return Err(Error::NoSpace {
            call: "shmget size check",
            target: target.clone(),
            reason: format!("all {} System V segment ids (shmmni) are in use", l.shmmni),
        });
    }
    if l.pages_in_use.saturating_add(pages) > l.shmall {
        return Err(Error::NoSpace {
            call: "shmget size check",
            target: target.clone(),
            reason: format!(
                "{pages} more pages would exceed shmall ({} pages, {} in use)",
                l.shmall, l.pages_in_use
            ),
        });
    }
    Ok(())
}

/// Refuses a POSIX segment of `len` bytes that `/dev/shm` cannot hold.
pub(crate) fn check_posix(len: usize, target: &Target) -> Result<()> {
    if len as u64 > i64::MAX as u64 {
        return Err(Error::InvalidSize {
            call: "ftruncate size check",
            target: target.clone(),
            requested: len as u64,
            reason: "larger than the largest file size".into(),
        });
    }
    let free = sys::posix_shm::free_bytes(c"/dev/shm").unwrap_or(u64::MAX);
    if len as u64 > free {
        return Err(Error::NoSpace {
            call: "statvfs(/dev/shm)",
            target: target.clone(),
            reason: format!(
                "{len} bytes asked, {free} free in /dev/shm; enlarge it (`mount -o remount,size=<bytes> /dev/shm`)"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_agree_with_proc() {
        let l = limits().expect("limits");
        if let Some(max) = read_proc("shmmax") {
            assert_eq!(l.shmmax, max);
        }
        assert!(l.page_size >= 4096);
    }

    #[test]
    fn oversize_requests_are_refused_before_any_call() {
        let t = Target::SysV { key: 1 };
        let l = limits().expect("limits");
        if l.shmmax < usize::MAX as u64 {
            let r = check_sysv(l.shmmax as usize + 1, &t);
            assert!(matches!(r, Err(Error::InvalidSize { .. })), "{r:?}");
        }
        assert!(check_sysv(0, &t).is_err());
        let r = check_posix(usize::MAX, &Target::Posix { name: "/x".into() });
        assert!(matches!(r, Err(Error::InvalidSize { .. })), "{r:?}");
        let r = check_posix(1 << 62, &Target::Posix { name: "/x".into() });
        assert!(matches!(r, Err(Error::NoSpace { .. })), "{r:?}");
    }
}
