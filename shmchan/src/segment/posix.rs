//! POSIX named segments: `shm_open` + `ftruncate` + `posix_fallocate` + `mmap(MAP_SHARED)`,
//! removed with `shm_unlink`.

use super::Cleanup;
use super::header::{FIXED_LEN, FLAG_REMOVE_WHEN_UNUSED, OFF_FLAGS};
use crate::error::{Errno, Error, Result, Target};
use crate::sys::mman::{Mapping, Region};
use crate::sys::posix_shm::{self, ObjStat, OpenMode};
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A mapped POSIX shared memory object plus what its drop must do.
#[derive(Debug)]
pub(super) struct PosixBacking {
    pub fd: OwnedFd,
    mapping: Mapping,
    name: CString,
    /// The process that may unlink on drop (a `fork`ed child dropping a copy must not).
    owner_pid: u32,
    pub cleanup: Cleanup,
}

fn cname(name: &str, target: &Target) -> Result<CString> {
    CString::new(name).map_err(|_| Error::InvalidArgument {
        what: format!("{target}: the name contains a NUL byte"),
    })
}

impl PosixBacking {
    /// Creates the object exclusively, sizes it and reserves its pages, then maps it.
    pub(super) fn create(
        name: &str,
        len: usize,
        mode: u32,
        target: &Target,
    ) -> Result<PosixBacking> {
        super::limits::check_posix(len, target)?;
        let c = cname(name, target)?;
        let fd = posix_shm::open(&c, OpenMode::CreateExclusive, mode)
            .map_err(|e| Error::from_errno("shm_open", e, target.clone()))?;
        let unlink_on_error = |err: Error| {
            let _ = posix_shm::unlink(&c);
            err
        };
        // shm_open applies the umask; set the exact mode asked for.
        posix_shm::chmod(fd.as_fd(), mode)
            .map_err(|e| unlink_on_error(Error::from_errno("fchmod", e, target.clone())))?;
        posix_shm::truncate(fd.as_fd(), len as u64).map_err(|e| {
            unlink_on_error(match e {
                Errno::EINVAL | Errno::EFBIG => Error::InvalidSize {
                    call: "ftruncate",
                    target: target.clone(),
                    requested: len as u64,
                    reason: "the kernel refused the length".into(),
                },
                e => Error::from_errno("ftruncate", e, target.clone()),
            })
        })?;
        // Reserve the pages now: a full /dev/shm is ENOSPC here, not SIGBUS on first write.
        posix_shm::allocate(fd.as_fd(), len as u64).map_err(|e| {
            unlink_on_error(match e {
                Errno::ENOSPC => Error::NoSpace {
                    call: "posix_fallocate",
                    target: target.clone(),
                    reason: format!("/dev/shm cannot hold {len} more bytes"),
                },
                e => Error::from_errno("posix_fallocate", e, target.clone()),
            })
        })?;
        let mapping = Mapping::of_fd(fd.as_fd(), len, true)
            .map_err(|e| unlink_on_error(Error::from_errno("mmap", e, target.clone())))?;
        Ok(PosixBacking {
            fd,
            mapping,
            name: c,
            owner_pid: crate::sys::proc::pid(),
            cleanup: Cleanup::Always,
        })
    }

    /// Opens an existing object and maps all of it. Waits (bounded by `deadline`) while the
    /// object is still empty, i.e. its creator has not sized it yet.
    pub(super) fn open(
        name: &str,
        read_only: bool,
        deadline: Instant,
        target: &Target,
    ) -> Result<PosixBacking> {
        let c = cname(name, target)?;
        let how = if read_only {
            OpenMode::ReadOnly
        } else {
            OpenMode::ReadWrite
        };
        let fd = posix_shm::open(&c, how, 0)
            .map_err(|e| Error::from_errno("shm_open", e, target.clone()))?;
        let size = loop {
            let st = stat_fd(&fd, target)?;
            if st.size >= FIXED_LEN as u64 {
                break st.size;
            }
            if Instant::now() >= deadline {
                return Err(Error::NotShmchan {
                    target: target.clone(),
                    reason: format!(
                        "{} bytes is too small to hold a shmchan header (its creator may have died before sizing it)",
                        st.size
                    ),
                });
            }
            // No shared word to wait on before the object has a size: back off briefly.
            std::thread::sleep(Duration::from_millis(2));
        };
        let len = usize::try_from(size).map_err(|_| Error::InvalidSize {
            call: "fstat",
            target: target.clone(),
            requested: size,
            reason: "larger than the address space".into(),
        })?;
        let mapping = Mapping::of_fd(fd.as_fd(), len, !read_only)
            .map_err(|e| Error::from_errno("mmap", e, target.clone()))?;
        Ok(PosixBacking {
            fd,
            mapping,
            name: c,
            owner_pid: crate::sys::proc::pid(),
            cleanup: Cleanup::Never,
        })
    }

    pub(super) fn region(&self) -> Region<'_> {
        self.mapping.region()
    }

    /// The part of the mapping the object still backs: anyone who may write the object may
    /// shrink it (`ftruncate`), and touching a mapped page past its end raises SIGBUS. Only as
    /// good as the moment of the `fstat`: a peer may shrink it again right after.
    pub(super) fn live_region(&self) -> Region<'_> {
        let size = posix_shm::stat(self.fd.as_fd()).map_or(0, |st| st.size);
        self.region()
            .prefix(usize::try_from(size).unwrap_or(usize::MAX))
    }

    pub(super) fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// `shm_unlink` now.
    pub(super) fn unlink(&self, target: &Target) -> Result<()> {
        posix_shm::unlink(&self.name)
            .map_err(|e| Error::from_errno("shm_unlink", e, target.clone()))
    }

    /// Whether the name still designates our object: `false` once it was unlinked, or names
    /// another object (someone removed ours and created a new one under the same name).
    pub(super) fn name_is_ours(&self) -> std::result::Result<bool, nix::errno::Errno> {
        let ours = posix_shm::stat(self.fd.as_fd())?;
        let fd = match posix_shm::open(&self.name, OpenMode::ReadOnly, 0) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(e),
        };
        let now = posix_shm::stat(fd.as_fd())?;
        Ok(now.dev == ours.dev && now.ino == ours.ino)
    }

    /// Unlinks the name only if it still designates our object: after a `remove` and a
    /// re-creation by someone else, the name belongs to a different object we must not touch.
    fn unlink_if_ours(&self) {
        if self.name_is_ours() == Ok(true) {
            let _ = posix_shm::unlink(&self.name);
        }
    }
}

pub(super) fn stat_fd(fd: &OwnedFd, target: &Target) -> Result<ObjStat> {
    posix_shm::stat(fd.as_fd()).map_err(|e| Error::from_errno("fstat", e, target.clone()))
}

impl Drop for PosixBacking {
    fn drop(&mut self) {
        if self.owner_pid != crate::sys::proc::pid() {
            return;
        }
        let unlink = match self.cleanup {
            Cleanup::Never => false,
            Cleanup::Always => true,
            // A peer that shrank the object below the flags word took the flag with it: the
            // creator unlinks, as it would have without `persist`.
            Cleanup::IfFlagged => self
                .live_region()
                .atomic_u32(OFF_FLAGS)
                .is_none_or(|f| f.load(Ordering::Acquire) & FLAG_REMOVE_WHEN_UNUSED != 0),
        };
        if unlink {
            self.unlink_if_ours();
        }
    }
}
