//! [`Error`], [`Result`], and the mapping from `errno` to typed errors with hints (seed 002's
//! table: `EINVAL`, `EEXIST`, `EIDRM`, `ENOSPC`, `ENOENT`, `EACCES`, `ENOMEM`, `EPERM`, `EFAULT`).

use std::fmt;
use std::path::PathBuf;

/// `Result<T, shmchan::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an operation was acting on; used in error messages and hints.
///
/// # Examples
///
/// ```
/// use shmchan::Target;
///
/// assert_eq!(Target::SysV { key: 0x41 }.to_string(), "System V segment with key 0x00000041");
/// assert_eq!(Target::SysV { key: 0x41 }.cli_arg().as_deref(), Some("0x00000041"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// An anonymous mapping (`mmap(MAP_ANONYMOUS)`).
    Anonymous,
    /// A System V segment by key.
    SysV {
        /// The IPC key (`ftok`, raw, or `IPC_PRIVATE` = 0).
        key: i32,
    },
    /// A System V segment by id (`shmid`).
    SysVId {
        /// The segment id returned by `shmget`.
        id: i32,
    },
    /// A POSIX shared memory object (`shm_open`).
    Posix {
        /// Its name, starting with `/`.
        name: String,
    },
    /// A file system path (an `ftok` path or a lock file).
    Path {
        /// The path.
        path: PathBuf,
    },
    /// Something else, described in words.
    Other {
        /// The description.
        what: String,
    },
}

impl Target {
    /// The argument to give `shmchan rm` / `shmchan inspect` to designate this target, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::Target;
    ///
    /// assert_eq!(Target::Posix { name: "/tick".into() }.cli_arg().as_deref(), Some("/tick"));
    /// assert_eq!(Target::Anonymous.cli_arg(), None);
    /// ```
    pub fn cli_arg(&self) -> Option<String> {
        match self {
            Target::SysV { key } => Some(format!("0x{:08x}", *key as u32)),
            Target::SysVId { id } => Some(id.to_string()),
            Target::Posix { name } => Some(name.clone()),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Anonymous => f.write_str("anonymous mapping"),
            Target::SysV { key } => write!(f, "System V segment with key 0x{:08x}", *key as u32),
            Target::SysVId { id } => write!(f, "System V segment id {id}"),
            Target::Posix { name } => write!(f, "POSIX shared memory object {name}"),
            Target::Path { path } => write!(f, "{}", path.display()),
            Target::Other { what } => f.write_str(what),
        }
    }
}

/// Everything that can go wrong in shmchan.
///
/// `Display` names the failing call, the `errno` where there is one, and what to do about it.
///
/// # Examples
///
/// ```
/// use shmchan::{Error, Target};
///
/// let e = Error::from_errno("shmget", libc::EEXIST, Target::SysV { key: 0x41 });
/// assert!(matches!(e, Error::Exists { .. }));
/// let msg = e.to_string();
/// assert!(msg.contains("shmget"));
/// assert!(msg.contains("EEXIST"));
/// assert!(msg.contains("shmchan rm 0x00000041"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `EEXIST`: creating exclusively, but the segment already exists.
    Exists {
        /// The failing call.
        call: &'static str,
        /// What was being created.
        target: Target,
    },
    /// `ENOENT`: no such segment, name or path.
    NotFound {
        /// The failing call.
        call: &'static str,
        /// What was looked for.
        target: Target,
    },
    /// `EACCES` / `EPERM`: the mode or ownership forbids the operation.
    PermissionDenied {
        /// The failing call.
        call: &'static str,
        /// `EACCES` or `EPERM`.
        errno: i32,
        /// What was being accessed.
        target: Target,
        /// What to do about it.
        hint: &'static str,
    },
    /// `EINVAL` on a size, or a size refused before any call: outside `shmmin..=shmmax`, larger
    /// than an existing segment, zero, or overflowing.
    InvalidSize {
        /// The failing call, or the check that refused the size.
        call: &'static str,
        /// What was being sized.
        target: Target,
        /// The size asked for, in bytes.
        requested: u64,
        /// Why it is refused.
        reason: String,
    },
    /// `ENOSPC` (no segment id left, `shmall` reached) or `/dev/shm` too full for the size.
    NoSpace {
        /// The failing call or check.
        call: &'static str,
        /// What was being created.
        target: Target,
        /// Which limit was hit.
        reason: String,
    },
    /// `ENOMEM`: the kernel could not allocate memory or page tables.
    NoMemory {
        /// The failing call.
        call: &'static str,
        /// What was being created or attached.
        target: Target,
    },
    /// `EIDRM`: the segment was removed (`IPC_RMID`).
    Removed {
        /// The failing call.
        call: &'static str,
        /// The removed segment.
        target: Target,
    },
    /// The segment holds a different type: its layout fingerprint differs from `T::FINGERPRINT`.
    LayoutMismatch {
        /// `T::FINGERPRINT` of the opener.
        expected: u64,
        /// The fingerprint stored in the segment.
        found: u64,
        /// The opener's type name.
        expected_type: String,
        /// The type name stored in the segment.
        found_type: String,
    },
    /// The segment holds a shmchan header of another kind (a channel opened as a value, a
    /// `SeqLock` segment opened with `FcntlLock`...).
    KindMismatch {
        /// What the opener asked for.
        expected: String,
        /// What the header says.
        found: String,
    },
    /// The memory holds no valid shmchan header.
    NotShmchan {
        /// The segment.
        target: Target,
        /// What is wrong with it.
        reason: String,
    },
    /// The process holding the writer lock died; the lock was taken over.
    WriterDied {
        /// The dead holder's process id.
        pid: u32,
    },
    /// The peer of a channel dropped its end or died.
    Disconnected,
    /// A bounded wait expired.
    Timeout {
        /// What was being waited for.
        what: String,
        /// The process that holds what we waited for, when known (it may be stopped).
        holder_pid: Option<u32>,
    },
    /// The operation would block (non-blocking variant).
    WouldBlock {
        /// What would block.
        what: &'static str,
    },
    /// An impossible value was read from shared memory (another process corrupted it).
    Corrupted {
        /// What is impossible about it.
        what: String,
    },
    /// An argument is out of range (e.g. channel capacity 0).
    InvalidArgument {
        /// What is wrong with it.
        what: String,
    },
    /// Any other `errno`.
    Os {
        /// The failing call.
        call: &'static str,
        /// The `errno` value.
        errno: i32,
    },
    /// A queue's holder table for this side is full: every entry belongs to a live handle (or
    /// to a dead one whose claim is still being recovered).
    TooManyHolders {
        /// `"producer"` or `"consumer"`.
        side: &'static str,
        /// The table's size, chosen when the queue was created.
        max: usize,
    },
}

/// The symbolic name of an errno value, e.g. `"EEXIST"`.
pub(crate) fn errno_name(errno: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(errno))
}

fn errno_text(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    // io::Error renders "Text (os error N)"; keep the text only.
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

impl Error {
    /// Maps an `errno` from `call` acting on `target` to a typed error (seed 002's table).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Error, Target};
    ///
    /// let e = Error::from_errno("shmat", libc::EIDRM, Target::SysVId { id: 7 });
    /// assert!(matches!(e, Error::Removed { .. }));
    /// ```
    pub fn from_errno(call: &'static str, errno: i32, target: Target) -> Error {
        match errno {
            libc::EEXIST => Error::Exists { call, target },
            libc::ENOENT => Error::NotFound { call, target },
            libc::EACCES | libc::EPERM => Error::PermissionDenied {
                call,
                errno,
                target,
                hint: permission_hint(call, errno),
            },
            libc::EINVAL if matches!(call, "shmget" | "ftruncate") => Error::InvalidSize {
                call,
                target,
                requested: 0,
                reason: "the size is outside shmmin..=shmmax, or larger than the existing segment"
                    .into(),
            },
            libc::ENOSPC => Error::NoSpace {
                call,
                target,
                reason: "no segment id is left (shmmni) or the total would exceed shmall".into(),
            },
            libc::ENOMEM => Error::NoMemory { call, target },
            libc::EIDRM => Error::Removed { call, target },
            _ => Error::Os { call, errno },
        }
    }

    /// Fills in the size asked for when this is an [`Error::InvalidSize`] (an `errno` alone does
    /// not carry it); other errors are returned unchanged.
    pub(crate) fn with_requested_size(self, len: u64) -> Error {
        match self {
            Error::InvalidSize {
                call,
                target,
                reason,
                ..
            } => Error::InvalidSize {
                call,
                target,
                requested: len,
                reason,
            },
            other => other,
        }
    }

    /// The `errno` behind this error, when it came from a system call.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Error, Target};
    ///
    /// let e = Error::from_errno("shm_open", libc::ENOENT, Target::Posix { name: "/x".into() });
    /// assert_eq!(e.errno(), Some(libc::ENOENT));
    /// ```
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Exists { .. } => Some(libc::EEXIST),
            Error::NotFound { call, .. } if call.starts_with("shm") || *call == "ftok" => {
                Some(libc::ENOENT)
            }
            Error::PermissionDenied { errno, .. } | Error::Os { errno, .. } => Some(*errno),
            Error::NoMemory { .. } => Some(libc::ENOMEM),
            Error::Removed { .. } => Some(libc::EIDRM),
            _ => None,
        }
    }
}

fn permission_hint(call: &'static str, errno: i32) -> &'static str {
    match (call, errno) {
        ("shmctl(SHM_LOCK)" | "shmctl(SHM_UNLOCK)", _) => {
            "locking a segment in memory needs CAP_IPC_LOCK (or a large enough RLIMIT_MEMLOCK): run as root or `setcap cap_ipc_lock+ep` the binary"
        }
        (_, libc::EPERM) => {
            "only the segment's owner, its creator, or root may change or remove it: run as that user"
        }
        _ => {
            "the segment's mode does not allow this: check `shmchan ls` / `ipcs -m` for its owner and mode, run as its owner, or have it created with a wider mode (e.g. 0o660)"
        }
    }
}

fn rm_hint(target: &Target) -> String {
    match target.cli_arg() {
        Some(arg) => format!("open it, or remove it with `shmchan rm {arg}`"),
        None => "open it, or remove it first".to_owned(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_errno = |f: &mut fmt::Formatter<'_>, call: &str, errno: i32| {
            write!(
                f,
                "{call} failed with {} ({})",
                errno_name(errno),
                errno_text(errno)
            )
        };
        match self {
            Error::Exists { call, target } => {
                with_errno(f, call, libc::EEXIST)?;
                write!(f, ": {target} already exists; {}", rm_hint(target))
            }
            Error::NotFound { call, target } => {
                with_errno(f, call, libc::ENOENT)?;
                match target {
                    Target::Path { .. } => write!(
                        f,
                        ": {target} does not exist; create it first (ftok needs an existing file)"
                    ),
                    _ => write!(
                        f,
                        ": {target} does not exist; create it first, or check the key/name with `shmchan ls`"
                    ),
                }
            }
            Error::PermissionDenied {
                call,
                errno,
                target,
                hint,
            } => {
                with_errno(f, call, *errno)?;
                write!(f, " on {target}; {hint}")
            }
            Error::InvalidSize {
                call,
                target,
                requested,
                reason,
            } => {
                write!(
                    f,
                    "{call}: invalid size {requested} bytes for {target}: {reason}; see `shmchan limits` (EINVAL)"
                )
            }
            Error::NoSpace {
                call,
                target,
                reason,
            } => {
                write!(
                    f,
                    "{call}: no space for {target}: {reason}; remove unused segments (`shmchan rm --stale`) or raise the limit (`shmchan limits` shows how) (ENOSPC)"
                )
            }
            Error::NoMemory { call, target } => {
                with_errno(f, call, libc::ENOMEM)?;
                write!(
                    f,
                    " for {target}; the system is out of memory: free memory or use a smaller segment"
                )
            }
            Error::Removed { call, target } => {
                with_errno(f, call, libc::EIDRM)?;
                write!(f, ": {target} was removed; create it again")
            }
            Error::LayoutMismatch {
                expected,
                found,
                expected_type,
                found_type,
            } => write!(
                f,
                "layout mismatch: the segment holds `{found_type}` (fingerprint {found:#018x}) but was opened as `{expected_type}` (fingerprint {expected:#018x}); both sides must be built from the same type definition"
            ),
            Error::KindMismatch { expected, found } => write!(
                f,
                "kind mismatch: the segment is a {found}, but was opened as a {expected}; open it with the matching type"
            ),
            Error::NotShmchan { target, reason } => write!(
                f,
                "{target} is not a shmchan segment ({reason}); check the key/name, or inspect it with `shmchan inspect`"
            ),
            Error::WriterDied { pid } => write!(
                f,
                "the writer (pid {pid}) died holding the lock; the lock was taken over and the last complete value kept"
            ),
            Error::Disconnected => {
                f.write_str("the other end of the channel is gone (dropped or its process died)")
            }
            Error::Timeout {
                what,
                holder_pid: Some(pid),
            } => write!(
                f,
                "timed out waiting for {what}, held by pid {pid} which is alive (stopped or slow?); check it with `ps -o stat= -p {pid}`"
            ),
            Error::Timeout {
                what,
                holder_pid: None,
            } => write!(f, "timed out waiting for {what}"),
            Error::WouldBlock { what } => write!(f, "{what} would block"),
            Error::Corrupted { what } => write!(
                f,
                "corrupted shared memory: {what}; another process wrote impossible values; remove the segment and recreate it"
            ),
            Error::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
            Error::Os { call, errno } => with_errno(f, call, *errno),
            Error::TooManyHolders { side, max } => write!(
                f,
                "the queue's {side} table is full ({max} live handles); drop unused handles (after fork, drop the ends a process does not use) or create the queue with more holders"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Exists { .. } => std::io::ErrorKind::AlreadyExists,
            Error::NotFound { .. } => std::io::ErrorKind::NotFound,
            Error::PermissionDenied { .. } => std::io::ErrorKind::PermissionDenied,
            Error::Timeout { .. } => std::io::ErrorKind::TimedOut,
            Error::WouldBlock { .. } => std::io::ErrorKind::WouldBlock,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_errno_maps_to_its_variant() {
        let t = || Target::SysV { key: 0x5400_0001 };
        assert!(matches!(
            Error::from_errno("shmget", libc::EEXIST, t()),
            Error::Exists { .. }
        ));
        assert!(matches!(
            Error::from_errno("shmget", libc::ENOENT, t()),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            Error::from_errno("shmget", libc::EACCES, t()),
            Error::PermissionDenied { .. }
        ));
        assert!(matches!(
            Error::from_errno("shmctl(IPC_RMID)", libc::EPERM, t()),
            Error::PermissionDenied { .. }
        ));
        assert!(matches!(
            Error::from_errno("shmget", libc::EINVAL, t()),
            Error::InvalidSize { .. }
        ));
        assert!(matches!(
            Error::from_errno("shmat", libc::EINVAL, t()),
            Error::Os {
                errno: libc::EINVAL,
                ..
            }
        ));
        assert!(matches!(
            Error::from_errno("shmget", libc::ENOSPC, t()),
            Error::NoSpace { .. }
        ));
        assert!(matches!(
            Error::from_errno("shmget", libc::ENOMEM, t()),
            Error::NoMemory { .. }
        ));
        assert!(matches!(
            Error::from_errno("shmat", libc::EIDRM, t()),
            Error::Removed { .. }
        ));
        assert!(matches!(
            Error::from_errno("shmctl(IPC_STAT)", libc::EFAULT, t()),
            Error::Os {
                errno: libc::EFAULT,
                ..
            }
        ));
    }

    #[test]
    fn exists_message_names_call_errno_key_and_fix() {
        let msg = Error::from_errno("shmget", libc::EEXIST, Target::SysV { key: 0x4100_0007 })
            .to_string();
        assert_eq!(
            msg,
            "shmget failed with EEXIST (File exists): System V segment with key 0x41000007 already exists; open it, or remove it with `shmchan rm 0x41000007`"
        );
    }

    #[test]
    fn shm_lock_eperm_hints_at_cap_ipc_lock() {
        let msg = Error::from_errno("shmctl(SHM_LOCK)", libc::EPERM, Target::SysVId { id: 3 })
            .to_string();
        assert!(
            msg.contains("EPERM") && msg.contains("CAP_IPC_LOCK"),
            "{msg}"
        );
    }
}
