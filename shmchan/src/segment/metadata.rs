//! Kernel metadata of a segment: [`SegmentInfo`] (`IPC_STAT` / `fstat`), permissions and
//! owner (`IPC_SET` / `fchmod` / `fchown`), and locking it in memory (`SHM_LOCK` / `mlock`).

use super::backing::Backing;
use super::{Segment, posix, sysv};
use crate::error::{Errno, Error, Result, Target};
use crate::sys;
use std::time::{Duration, SystemTime};

/// Kernel metadata of a segment (`IPC_STAT` for System V, `fstat` for POSIX).
///
/// Fields the kind of segment does not have are `None`.
///
/// # Examples
///
/// ```no_run
/// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
/// let info = seg.info()?;
/// println!("{} bytes, {:?} attached, mode {:o}", info.size, info.attach_count, info.mode.unwrap_or(0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The System V segment id (`shmid`), as shown by `ipcs -m`.
    pub shmid: Option<i32>,
    /// Size in bytes.
    pub size: u64,
    /// Processes attached (`shm_nattch`, System V only).
    pub attach_count: Option<u64>,
    /// The creating process (`shm_cpid`).
    pub creator_pid: Option<u32>,
    /// The last process to attach or detach (`shm_lpid`).
    pub last_pid: Option<u32>,
    /// Last attach (`shm_atime`; POSIX: last access).
    pub attach_time: Option<SystemTime>,
    /// Last detach (`shm_dtime`; POSIX: last modification).
    pub detach_time: Option<SystemTime>,
    /// Last change of the metadata (`shm_ctime` / `st_ctime`).
    pub change_time: Option<SystemTime>,
    /// Owner user id.
    pub uid: Option<u32>,
    /// Owner group id.
    pub gid: Option<u32>,
    /// Creator user id (System V).
    pub creator_uid: Option<u32>,
    /// Creator group id (System V).
    pub creator_gid: Option<u32>,
    /// Permission bits (`0o600`...).
    pub mode: Option<u32>,
    /// Removed (`IPC_RMID`) but still attached somewhere (`SHM_DEST`).
    pub marked_for_removal: bool,
    /// Locked in memory (`SHM_LOCKED`).
    pub locked_in_memory: bool,
}

fn time(secs: i64) -> Option<SystemTime> {
    (secs > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// The error of `SHM_LOCK` / `mlock` and their inverses: `EPERM` (no `CAP_IPC_LOCK`) and, from
/// `mlock`, `ENOMEM` (over `RLIMIT_MEMLOCK`) mean "not allowed", not "out of memory".
fn lock_error(call: &'static str, errno: Errno, target: &Target) -> Error {
    match errno {
        Errno::EPERM | Errno::EACCES | Errno::ENOMEM => Error::PermissionDenied {
            call,
            errno,
            target: target.clone(),
            hint: crate::error::LOCK_IN_MEMORY_HINT,
        },
        errno => Error::from_errno(call, errno, target.clone()),
    }
}

impl Segment {
    /// Kernel metadata: `IPC_STAT` (size, attach count, creator and last pid, times, owner,
    /// mode) for System V, `fstat` for POSIX, the size only for anonymous segments.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] if the mode forbids reading the metadata; [`Error::Os`]
    /// otherwise.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// let info = seg.info()?;
    /// assert!(info.size >= seg.header().total_len);
    /// # Ok(()) }
    /// ```
    pub fn info(&self) -> Result<SegmentInfo> {
        let empty = SegmentInfo {
            shmid: None,
            size: self.len() as u64,
            attach_count: None,
            creator_pid: None,
            last_pid: None,
            attach_time: None,
            detach_time: None,
            change_time: None,
            uid: None,
            gid: None,
            creator_uid: None,
            creator_gid: None,
            mode: None,
            marked_for_removal: false,
            locked_in_memory: false,
        };
        match &self.backing {
            Backing::Anon(_) => Ok(empty),
            Backing::SysV(s) => {
                let st = sysv::stat(s.shmid, &self.target)?;
                Ok(SegmentInfo {
                    shmid: Some(s.shmid),
                    size: st.size as u64,
                    attach_count: Some(st.nattch),
                    creator_pid: Some(st.cpid.max(0) as u32),
                    last_pid: Some(st.lpid.max(0) as u32),
                    attach_time: time(st.atime),
                    detach_time: time(st.dtime),
                    change_time: time(st.ctime),
                    uid: Some(st.uid),
                    gid: Some(st.gid),
                    creator_uid: Some(st.cuid),
                    creator_gid: Some(st.cgid),
                    mode: Some(st.mode & 0o777),
                    marked_for_removal: st.mode & sys::sysv::SHM_DEST != 0,
                    locked_in_memory: st.mode & sys::sysv::SHM_LOCKED != 0,
                })
            }
            Backing::Posix(p) => {
                let st = posix::stat_fd(&p.fd, &self.target)?;
                Ok(SegmentInfo {
                    size: st.size,
                    attach_time: time(st.atime),
                    detach_time: time(st.mtime),
                    change_time: time(st.ctime),
                    uid: Some(st.uid),
                    gid: Some(st.gid),
                    mode: Some(st.mode & 0o777),
                    ..empty
                })
            }
        }
    }

    fn no_metadata(&self, what: &str) -> Error {
        Error::InvalidArgument {
            what: format!(
                "{what} needs a keyed segment; {} has no permissions",
                self.target
            ),
        }
    }

    /// Changes the permission bits (`IPC_SET` / `fchmod`), e.g. `0o640` to let the group read.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] (`EPERM`) unless this process owns or created the segment or
    /// is root; [`Error::InvalidArgument`] for anonymous segments.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// seg.set_mode(0o640)?;
    /// # Ok(()) }
    /// ```
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        match &self.backing {
            Backing::Anon(_) => Err(self.no_metadata("set_mode")),
            Backing::SysV(s) => {
                let st = sysv::stat(s.shmid, &self.target)?;
                sys::sysv::set(s.shmid, st.uid, st.gid, mode)
                    .map_err(|e| Error::from_errno("shmctl(IPC_SET)", e, self.target.clone()))
            }
            Backing::Posix(p) => sys::posix_shm::chmod(std::os::fd::AsFd::as_fd(&p.fd), mode)
                .map_err(|e| Error::from_errno("fchmod", e, self.target.clone())),
        }
    }

    /// Changes the owner (`IPC_SET` / `fchown`); the mode is kept.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] (`EPERM`) unless allowed (owner/creator or root for System V,
    /// root for POSIX); [`Error::InvalidArgument`] for anonymous segments.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// seg.set_owner(1000, 1000)?;
    /// # Ok(()) }
    /// ```
    pub fn set_owner(&self, uid: u32, gid: u32) -> Result<()> {
        match &self.backing {
            Backing::Anon(_) => Err(self.no_metadata("set_owner")),
            Backing::SysV(s) => {
                let st = sysv::stat(s.shmid, &self.target)?;
                sys::sysv::set(s.shmid, uid, gid, st.mode)
                    .map_err(|e| Error::from_errno("shmctl(IPC_SET)", e, self.target.clone()))
            }
            Backing::Posix(p) => sys::posix_shm::chown(std::os::fd::AsFd::as_fd(&p.fd), uid, gid)
                .map_err(|e| Error::from_errno("fchown", e, self.target.clone())),
        }
    }

    fn set_locked(&self, lock: bool) -> Result<()> {
        let (shm_call, m_call) = if lock {
            ("shmctl(SHM_LOCK)", "mlock")
        } else {
            ("shmctl(SHM_UNLOCK)", "munlock")
        };
        let (call, r) = match &self.backing {
            Backing::SysV(s) => (shm_call, sys::sysv::lock(s.shmid, lock)),
            Backing::Anon(m) => (m_call, m.lock(lock)),
            Backing::Posix(p) => (m_call, p.mapping().lock(lock)),
        };
        r.map_err(|e| lock_error(call, e, &self.target))
    }

    /// Keeps the segment in RAM, never swapped (`SHM_LOCK`; `mlock` for anonymous and POSIX
    /// segments).
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] (`EPERM`) without `CAP_IPC_LOCK` or enough `RLIMIT_MEMLOCK`;
    /// the message says how to grant it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// seg.lock_in_memory()?;
    /// # Ok(()) }
    /// ```
    pub fn lock_in_memory(&self) -> Result<()> {
        self.set_locked(true)
    }

    /// Allows the segment to be swapped again (`SHM_UNLOCK` / `munlock`).
    ///
    /// # Errors
    ///
    /// As [`lock_in_memory`](Self::lock_in_memory).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// seg.unlock_in_memory()?;
    /// # Ok(()) }
    /// ```
    pub fn unlock_in_memory(&self) -> Result<()> {
        self.set_locked(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_in_memory_refusals_hint_at_cap_ipc_lock() {
        for (call, errno) in [("shmctl(SHM_LOCK)", Errno::EPERM), ("mlock", Errno::ENOMEM)] {
            let e = lock_error(call, errno, &Target::SysVId { id: 3 });
            let msg = e.to_string();
            assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
            assert!(msg.contains(call) && msg.contains("CAP_IPC_LOCK"), "{msg}");
        }
    }
}
