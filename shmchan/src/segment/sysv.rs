//! System V segments: `shmget` with `IPC_CREAT | IPC_EXCL`, `shmat` (read-write or
//! `SHM_RDONLY`), `shmdt` on drop, and the cleanup by the last handle to detach (it checks the
//! kernel's attach count after its own detach, so two handles detaching at once cannot leak).

use super::Cleanup;
use super::header::{FLAG_REMOVE_WHEN_UNUSED, OFF_FLAGS};
use crate::error::{Errno, Error, Result, Target};
use crate::sys::mman::Region;
use crate::sys::sysv::{self, Attachment, Create, ShmStat};
use std::sync::atomic::Ordering;

/// How the segment being attached was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FoundBy {
    /// `shmget` by key.
    Key,
    /// An id from `ipcs` / `/proc/sysvipc/shm`.
    Id,
}

/// A System V attachment plus what its drop must do.
#[derive(Debug)]
pub(super) struct SysvBacking {
    pub shmid: i32,
    att: Option<Attachment>,
    pub cleanup: Cleanup,
}

impl SysvBacking {
    /// `shmget(key, len, IPC_CREAT | IPC_EXCL | mode)` then `shmat` read-write. The segment is
    /// removed again if anything fails before the caller publishes it (`Cleanup::Always`).
    pub(super) fn create(key: i32, len: usize, mode: u32, target: &Target) -> Result<SysvBacking> {
        super::limits::check_sysv(len, target)?;
        let shmid = sysv::get(key, len, Create::Exclusive, mode).map_err(|e| match e {
            Errno::EINVAL => Error::InvalidSize {
                call: "shmget",
                target: target.clone(),
                requested: len as u64,
                reason: "the size is outside shmmin..=shmmax, or larger than the existing segment"
                    .into(),
            },
            e => Error::from_errno("shmget", e, target.clone()),
        })?;
        match Attachment::attach(shmid, len, false) {
            Ok(att) => Ok(SysvBacking {
                shmid,
                att: Some(att),
                cleanup: Cleanup::Always,
            }),
            Err(e) => {
                let _ = sysv::remove(shmid);
                Err(Error::from_errno("shmat", e, target.clone()))
            }
        }
    }

    /// `shmget(key, 0, 0)`, `IPC_STAT` for the size, then `shmat`.
    pub(super) fn open(key: i32, read_only: bool, target: &Target) -> Result<SysvBacking> {
        let shmid = sysv::get(key, 0, Create::No, 0)
            .map_err(|e| Error::from_errno("shmget", e, target.clone()))?;
        Self::attach(shmid, read_only, target, FoundBy::Key)
    }

    /// Attaches segment `shmid`, as listed by a tool.
    pub(super) fn attach_id(shmid: i32, read_only: bool, target: &Target) -> Result<SysvBacking> {
        Self::attach(shmid, read_only, target, FoundBy::Id)
    }

    fn attach(shmid: i32, read_only: bool, target: &Target, by: FoundBy) -> Result<SysvBacking> {
        // A segment found by key may be removed by its last user between our shmget and the
        // calls below (its id then answers EINVAL or EIDRM): for that opener it was not found.
        let not_found = || Error::NotFound {
            call: "shmget",
            target: target.clone(),
        };
        let failed = |call: &'static str, errno: Errno| match (by, errno) {
            (FoundBy::Key, Errno::EINVAL | Errno::EIDRM) => not_found(),
            (_, errno) => Error::from_errno(call, errno, target.clone()),
        };
        let st = sysv::stat(shmid).map_err(|e| failed("shmctl(IPC_STAT)", e))?;
        if st.mode & sysv::SHM_DEST != 0 {
            // Linux still lets one attach a removed segment until its last detach (the kernel
            // itself answers EIDRM only in the window of the final teardown); we refuse, as
            // POSIX systems do.
            return Err(match by {
                FoundBy::Key => not_found(),
                FoundBy::Id => Error::Removed {
                    call: "shmat (segment marked SHM_DEST)",
                    target: target.clone(),
                },
            });
        }
        if st.size < super::header::FIXED_LEN {
            return Err(Error::NotShmchan {
                target: target.clone(),
                reason: format!("{} bytes is too small to hold a shmchan header", st.size),
            });
        }
        let att = Attachment::attach(shmid, st.size, read_only).map_err(|e| failed("shmat", e))?;
        Ok(SysvBacking {
            shmid,
            att: Some(att),
            cleanup: Cleanup::Never,
        })
    }

    pub(super) fn region(&self) -> Option<Region<'_>> {
        self.att.as_ref().map(Attachment::region)
    }

    /// `IPC_RMID` now.
    pub(super) fn remove(&self, target: &Target) -> Result<()> {
        sysv::remove(self.shmid)
            .map_err(|e| Error::from_errno("shmctl(IPC_RMID)", e, target.clone()))
    }
}

pub(super) fn stat(shmid: i32, target: &Target) -> Result<ShmStat> {
    sysv::stat(shmid).map_err(|e| Error::from_errno("shmctl(IPC_STAT)", e, target.clone()))
}

impl Drop for SysvBacking {
    fn drop(&mut self) {
        let Some(att) = self.att.take() else { return };
        let remove = match self.cleanup {
            Cleanup::Never => false,
            Cleanup::Always => true,
            Cleanup::IfFlagged => att
                .region()
                .atomic_u32(OFF_FLAGS)
                .is_some_and(|f| f.load(Ordering::Acquire) & FLAG_REMOVE_WHEN_UNUSED != 0),
        };
        let _ = att.detach();
        if !remove {
            return;
        }
        if self.cleanup == Cleanup::Always {
            let _ = sysv::remove(self.shmid);
            return;
        }
        // Stat *after* our own detach: of two handles detaching at once, whichever stats last
        // sees 0 attachments, so the segment cannot leak; both may remove it, and the second
        // IPC_RMID fails harmlessly (EINVAL/EIDRM).
        let unused = matches!(
            sysv::stat(self.shmid),
            Ok(st) if st.nattch == 0 && st.mode & sysv::SHM_DEST == 0
        );
        if unused {
            let _ = sysv::remove(self.shmid);
        }
    }
}
