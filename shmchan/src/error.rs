//! [`Error`], [`Result`], and the mapping from `errno` to typed errors with hints (`EEXIST`,
//! `ENOENT`, `EACCES`/`EPERM`, `ENOSPC`, `ENOMEM`, `EIDRM`; the errors whose meaning depends on
//! the call, such as `EINVAL` on a size, are built by that call's caller, which knows).

use crate::segment::{LockKind, SegmentKind};
use std::fmt;
use std::path::PathBuf;

/// An `errno` value (`nix::errno::Errno`): `Errno::EEXIST`, `Errno::from_raw(17)`, `e as i32`.
pub use crate::sys::Errno;

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
/// `Display` names the failing call, the `errno` where there is one, and what to do about it;
/// `Debug` shows the variant and the same text, so `fn main() -> Result<(), Box<dyn Error>>`
/// prints the whole message. [`source`](std::error::Error::source) is the `errno`
/// ([`Errno`]) when a system call failed.
///
/// # Examples
///
/// ```
/// use shmchan::{Errno, Error, Target};
///
/// let e = Error::from_errno("shmget", Errno::EEXIST, Target::SysV { key: 0x41 });
/// assert!(matches!(e, Error::Exists { .. }));
/// let msg = e.to_string();
/// assert!(msg.contains("shmget"));
/// assert!(msg.contains("EEXIST"));
/// assert!(msg.contains("shmchan rm 0x00000041"));
/// assert!(format!("{e:?}").starts_with("Exists { .. }: shmget failed with EEXIST"));
/// let source = std::error::Error::source(&e).expect("an errno");
/// assert_eq!(source.downcast_ref::<Errno>(), Some(&Errno::EEXIST));
/// ```
#[non_exhaustive]
pub enum Error {
    /// `EEXIST`: creating exclusively, but the segment already exists.
    Exists {
        /// The failing call.
        call: &'static str,
        /// What was being created.
        target: Target,
        /// Why an abandoned System V segment with this key was not reclaimed (still attached,
        /// persisted, its creator alive...), when that was considered.
        kept_because: Option<String>,
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
        /// `EACCES` or `EPERM` (or `ENOMEM` from `mlock` over `RLIMIT_MEMLOCK`).
        errno: Errno,
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
        /// The kind the opener asked for.
        expected: SegmentKind,
        /// The lock kind the opener asked for.
        expected_lock: LockKind,
        /// The kind the header records.
        found: SegmentKind,
        /// The lock kind the header records.
        found_lock: LockKind,
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
        errno: Errno,
    },
    /// A channel end is used by another live process (a channel has one sender and one
    /// receiver; a copy of a handle carried across `fork` may be used in one process only).
    InUse {
        /// Which end, of which channel.
        what: String,
        /// The process that uses it.
        pid: u32,
    },
    /// A queue's holder table for this side is full: every entry belongs to a live handle (or
    /// to a dead one whose claim is still being recovered).
    TooManyHolders {
        /// `"producer"` or `"consumer"`.
        side: &'static str,
        /// The table's size, chosen when the queue was created.
        max: usize,
    },
    /// A broadcast subscriber fell so far behind a publisher in `Overflow::DropOldest` mode that
    /// messages it had not read were overwritten. Reported once; the next receive continues with
    /// the oldest message still held.
    Lagged {
        /// How many messages this subscriber missed.
        missed: u64,
    },
}

/// The symbolic name of an errno value, e.g. `"EEXIST"`.
pub(crate) fn errno_name(errno: Errno) -> String {
    format!("{errno:?}")
}

fn errno_text(errno: Errno) -> String {
    let s = std::io::Error::from_raw_os_error(errno as i32).to_string();
    // io::Error renders "Text (os error N)"; keep the text only.
    match s.find(" (os error") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// The hint of [`Error::PermissionDenied`] for `shmctl(SHM_LOCK)` / `mlock`.
pub(crate) const LOCK_IN_MEMORY_HINT: &str = "locking a segment in memory needs CAP_IPC_LOCK (or a large enough RLIMIT_MEMLOCK): run as root or `setcap cap_ipc_lock+ep` the binary";

impl Error {
    /// Maps an `errno` from `call` acting on `target` to a typed error by the errno alone:
    /// `EEXIST` is [`Error::Exists`], `ENOENT` [`Error::NotFound`], `EACCES`/`EPERM`
    /// [`Error::PermissionDenied`], `ENOSPC` [`Error::NoSpace`], `ENOMEM` [`Error::NoMemory`],
    /// `EIDRM` [`Error::Removed`], anything else [`Error::Os`]. Errors whose meaning depends on
    /// the call (`EINVAL` on a size is [`Error::InvalidSize`]) are built by whoever knows.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Errno, Error, Target};
    ///
    /// let e = Error::from_errno("shmat", Errno::EIDRM, Target::SysVId { id: 7 });
    /// assert!(matches!(e, Error::Removed { .. }));
    /// ```
    pub fn from_errno(call: &'static str, errno: Errno, target: Target) -> Error {
        match errno {
            Errno::EEXIST => Error::Exists {
                call,
                target,
                kept_because: None,
            },
            Errno::ENOENT => Error::NotFound { call, target },
            Errno::EACCES | Errno::EPERM => Error::PermissionDenied {
                call,
                errno,
                hint: permission_hint(errno, &target),
                target,
            },
            Errno::ENOSPC => Error::NoSpace {
                call,
                target,
                reason: "no segment id is left (shmmni) or the total would exceed shmall".into(),
            },
            Errno::ENOMEM => Error::NoMemory { call, target },
            Errno::EIDRM => Error::Removed { call, target },
            _ => Error::Os { call, errno },
        }
    }

    /// The `errno` behind this error, when it came from a system call.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Errno, Error, Target};
    ///
    /// let e = Error::from_errno("shm_open", Errno::ENOENT, Target::Posix { name: "/x".into() });
    /// assert_eq!(e.errno(), Some(Errno::ENOENT));
    /// ```
    pub fn errno(&self) -> Option<Errno> {
        self.errno_ref().copied()
    }

    fn errno_ref(&self) -> Option<&Errno> {
        match self {
            Error::Exists { .. } => Some(&Errno::EEXIST),
            Error::NotFound { .. } => Some(&Errno::ENOENT),
            Error::PermissionDenied { errno, .. } | Error::Os { errno, .. } => Some(errno),
            Error::NoMemory { .. } => Some(&Errno::ENOMEM),
            Error::Removed { .. } => Some(&Errno::EIDRM),
            _ => None,
        }
    }

    /// The variant's name, for `Debug`.
    fn variant(&self) -> &'static str {
        match self {
            Error::Exists { .. } => "Exists",
            Error::NotFound { .. } => "NotFound",
            Error::PermissionDenied { .. } => "PermissionDenied",
            Error::InvalidSize { .. } => "InvalidSize",
            Error::NoSpace { .. } => "NoSpace",
            Error::NoMemory { .. } => "NoMemory",
            Error::Removed { .. } => "Removed",
            Error::LayoutMismatch { .. } => "LayoutMismatch",
            Error::KindMismatch { .. } => "KindMismatch",
            Error::NotShmchan { .. } => "NotShmchan",
            Error::WriterDied { .. } => "WriterDied",
            Error::Disconnected => "Disconnected",
            Error::Timeout { .. } => "Timeout",
            Error::WouldBlock { .. } => "WouldBlock",
            Error::Corrupted { .. } => "Corrupted",
            Error::InvalidArgument { .. } => "InvalidArgument",
            Error::Os { .. } => "Os",
            Error::InUse { .. } => "InUse",
            Error::TooManyHolders { .. } => "TooManyHolders",
            Error::Lagged { .. } => "Lagged",
        }
    }
}

fn permission_hint(errno: Errno, target: &Target) -> &'static str {
    match (errno, target) {
        (Errno::EPERM, Target::Path { .. }) => {
            "only the file's owner or root may do this: run as that user"
        }
        (Errno::EPERM, _) => {
            "only the segment's owner, its creator, or root may change or remove it: run as that user"
        }
        (_, Target::Path { .. }) => {
            "the file's permissions (or those of a directory on its path) do not allow this: check them with `ls -l`, run as its owner, or have it created with a wider mode"
        }
        _ => {
            "the segment's mode does not allow this: check `shmchan ls` / `ipcs -m` for its owner and mode, run as its owner, or have it created with a wider mode (e.g. 0o660)"
        }
    }
}

fn exists_hint(target: &Target) -> String {
    let open = "open it instead (`open`, or `open_or_create` to open it or create it in one call)";
    match target.cli_arg() {
        Some(arg) => format!("{open}, or remove it first with `shmchan rm {arg}`"),
        None => format!("{open}, or remove it first"),
    }
}

/// How error messages name a kind of segment and its lock.
fn describe(kind: SegmentKind, lock: LockKind) -> String {
    match (kind, lock) {
        (SegmentKind::Value, LockKind::SeqLock) => {
            "value with a SeqLock (`Shared<T, SeqLock>`)".into()
        }
        (SegmentKind::Value, LockKind::Fcntl) => {
            "value with an FcntlLock (`Shared<T, FcntlLock>`)".into()
        }
        (SegmentKind::Channel, _) => "channel (`Sender` / `Receiver`)".into(),
        (SegmentKind::Raw, _) => "raw segment (`Segment::open_raw`)".into(),
        (kind, lock) => format!("{kind:?} segment with {lock:?} lock"),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_errno = |f: &mut fmt::Formatter<'_>, call: &str, errno: Errno| {
            write!(
                f,
                "{call} failed with {} ({})",
                errno_name(errno),
                errno_text(errno)
            )
        };
        match self {
            Error::Exists {
                call,
                target,
                kept_because,
            } => {
                with_errno(f, call, Errno::EEXIST)?;
                write!(f, ": {target} already exists")?;
                if let Some(why) = kept_because {
                    write!(f, " and was not reclaimed: {why}")?;
                }
                write!(f, "; {}", exists_hint(target))
            }
            Error::NotFound { call, target } => {
                with_errno(f, call, Errno::ENOENT)?;
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
                with_errno(f, call, Errno::ENOMEM)?;
                write!(
                    f,
                    " for {target}; the system is out of memory: free memory or use a smaller segment"
                )
            }
            Error::Removed { call, target } => {
                with_errno(f, call, Errno::EIDRM)?;
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
            Error::KindMismatch {
                expected,
                expected_lock,
                found,
                found_lock,
            } => write!(
                f,
                "kind mismatch: the segment holds a {}, but was opened as a {}; open it with the handle it was created with",
                describe(*found, *found_lock),
                describe(*expected, *expected_lock)
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
            Error::InUse { what, pid } => write!(
                f,
                "{what} is in use by process {pid}; a channel has one sender and one receiver, each used by one process: drop the other handle (e.g. the copy inherited across fork) or wait until that process exits"
            ),
            Error::TooManyHolders { side, max } => write!(
                f,
                "the queue's {side} table is full ({max} live handles); drop unused handles (after fork, drop the ends a process does not use) or create the queue with more holders"
            ),
            Error::Lagged { missed } => write!(
                f,
                "this subscriber fell behind and missed {missed} message(s), overwritten by the publisher (Overflow::DropOldest); receiving again continues with the oldest message still held (create the channel with more capacity, or use Overflow::Block, to lose none)"
            ),
        }
    }
}

impl fmt::Debug for Error {
    /// The variant and the `Display` text: `Exists { .. }: shmget failed with EEXIST ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Disconnected => write!(f, "Disconnected: {self}"),
            _ => write!(f, "{} {{ .. }}: {self}", self.variant()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.errno_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

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
mod tests;
