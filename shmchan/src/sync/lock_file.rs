//! Which files the library accepts as its own fcntl lock files.
//!
//! A segment's header records the path of its lock file, and the header's checksum is not a
//! secret: anyone who can write the segment can point it anywhere and re-seal it. An opener
//! (perhaps a privileged daemon) must therefore never open, lock or unlink a path just because a
//! header names it. It accepts only a file that the library could have created for that
//! segment:
//!
//! - in the library's directory: this process's `$XDG_RUNTIME_DIR` or temporary directory,
//!   `/tmp`, or the creator's `/run/user/<uid>`;
//! - named `shmchan-<pid>-<n>-<8 hex digits>.lock`;
//! - once opened (`O_NOFOLLOW | O_NONBLOCK`, so neither a symlink nor a FIFO is followed or
//!   waited for): a regular, empty file owned by the user who created the segment, and the same
//!   file the name pointed to just before.
//!
//! Anything else is [`Error::Corrupted`], at once, and nothing is unlinked.

use crate::Error;
use crate::sys::lockfile::FileStat;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where this process creates lock files: `$XDG_RUNTIME_DIR` (per user, mode 0700, cleared at
/// logout) when set to an absolute directory, else the temporary directory.
pub(crate) fn lock_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// A fresh lock file path in [`lock_dir`], following the name pattern openers accept.
pub(crate) fn new_lock_path() -> PathBuf {
    new_lock_path_in(&lock_dir())
}

/// Where the lock file of a value with permission bits `mode` goes: [`lock_dir`] when only its
/// owner may use it, the shared temporary directory when the mode lets others in (a per-user
/// runtime directory is closed to them).
pub(crate) fn lock_dir_for(mode: u32) -> PathBuf {
    if mode & 0o077 == 0 {
        lock_dir()
    } else {
        std::env::temp_dir()
    }
}

/// A fresh lock file path in `dir`, following the name pattern openers accept.
pub(crate) fn new_lock_path_in(dir: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    dir.join(format!(
        "shmchan-{}-{n}-{nanos:08x}.lock",
        crate::sys::proc::pid()
    ))
}

/// `shmchan-<digits>-<digits>-<8 hex digits>.lock`.
fn name_is_ours(name: &OsStr) -> bool {
    let Some(rest) = name
        .to_str()
        .and_then(|n| n.strip_prefix("shmchan-"))
        .and_then(|n| n.strip_suffix(".lock"))
    else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    matches!(parts.as_slice(), [pid, n, nanos]
        if digits(pid, 10) && digits(n, 20) && nanos.len() == 8
            && nanos.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The directories a lock file of a segment created by `creator_uid` may live in.
fn dir_is_ours(dir: &Path, creator_uid: u32) -> bool {
    let run_user = PathBuf::from(format!("/run/user/{creator_uid}"));
    [
        lock_dir(),
        std::env::temp_dir(),
        PathBuf::from("/tmp"),
        run_user,
    ]
    .iter()
    .any(|d| d == dir)
}

fn refuse(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Corrupted {
        what: format!(
            "the segment header names {} as its lock file, which {why}: not a shmchan lock file, so it was neither opened nor removed (a process that can write the segment changed its header; recreate the segment)",
            path.display()
        ),
    }
}

/// Checks a path read from a header before anything touches it.
pub(crate) fn check_path(path: &Path, creator_uid: u32) -> Result<(), Error> {
    let plain = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(refuse(path, "has no file name"));
    };
    if !plain {
        return Err(refuse(path, "is not a plain absolute path"));
    }
    if !name_is_ours(name) {
        return Err(refuse(
            path,
            "is not named like one (shmchan-<pid>-<n>-<hex>.lock)",
        ));
    }
    if !dir_is_ours(dir, creator_uid) {
        return Err(refuse(
            path,
            format_args!(
                "lies outside the lock file directories ({}, /tmp, /run/user/{creator_uid})",
                lock_dir().display()
            ),
        ));
    }
    Ok(())
}

/// Checks what `lstat` (before opening) or `fstat` (after) says about a named lock file.
pub(crate) fn check_stat(path: &Path, st: &FileStat, creator_uid: u32) -> Result<(), Error> {
    if !st.is_regular() {
        return Err(refuse(path, format_args!("is {}", st.kind())));
    }
    if st.size != 0 {
        return Err(refuse(
            path,
            format_args!("is not empty ({} bytes)", st.size),
        ));
    }
    if st.uid != creator_uid {
        return Err(refuse(
            path,
            format_args!(
                "belongs to uid {}, not to the segment's creator (uid {creator_uid})",
                st.uid
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_library_name_pattern_is_accepted() {
        assert!(name_is_ours(OsStr::new("shmchan-12-0-0abcdef9.lock")));
        let own = new_lock_path();
        assert!(name_is_ours(own.file_name().unwrap()), "{own:?}");
        for bad in [
            "shmchan-12-0-0abcdef.lock",
            "shmchan-12-0-0abcdef9.lockx",
            "shmchan--0-0abcdef9.lock",
            "shmchan-1-2-3-0abcdef9.lock",
            "passwd",
            "shmchan-a-0-0abcdef9.lock",
        ] {
            assert!(!name_is_ours(OsStr::new(bad)), "{bad}");
        }
    }

    #[test]
    fn paths_outside_the_lock_directories_are_refused() {
        let uid = crate::sys::lockfile::euid();
        assert!(check_path(&new_lock_path(), uid).is_ok());
        for bad in [
            "/etc/shmchan-1-2-0abcdef9.lock",
            "/tmp/../etc/shmchan-1-2-0abcdef9.lock",
            "/tmp/sub/shmchan-1-2-0abcdef9.lock",
            "tmp/shmchan-1-2-0abcdef9.lock",
            "/tmp/passwd",
        ] {
            let e = check_path(Path::new(bad), uid).unwrap_err();
            assert!(matches!(e, Error::Corrupted { .. }), "{bad}: {e}");
        }
    }
}
