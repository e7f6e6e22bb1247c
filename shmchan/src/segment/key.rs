//! [`Key`]: how a segment is found by another process.

use crate::error::{Error, Result, Target};
use crate::sys;
use std::fmt;
use std::path::Path;

/// The longest POSIX shared memory name accepted, including the leading `/` (`NAME_MAX`).
const MAX_NAME_LEN: usize = 255;

/// Names a keyed segment: a System V key (from `ftok`, raw, or `IPC_PRIVATE`) or a POSIX shared
/// memory object name.
///
/// `Key` is `Copy`, so one key can create a segment and open it again.
///
/// # Examples
///
/// ```
/// use shmchan::Key;
///
/// let k = Key::raw(0x5400_0001);
/// assert_eq!(k.to_string(), "0x54000001");
/// assert_eq!(Key::private().to_string(), "IPC_PRIVATE");
/// assert_eq!(Key::name("/tick")?.posix_name(), Some("/tick"));
///
/// // ftok needs an existing file:
/// let err = Key::from_path("/no/such/file", b'T').unwrap_err();
/// assert!(matches!(err, shmchan::Error::NotFound { .. }));
/// assert!(err.to_string().contains("/no/such/file"));
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(KeyRepr);

// The POSIX name is stored inline (256 bytes) on purpose: it keeps `Key` `Copy`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum KeyRepr {
    /// `IPC_PRIVATE`: a new System V segment only reachable through `fork`.
    Private,
    /// A System V key (never 0, which is `IPC_PRIVATE`).
    SysV(i32),
    /// A POSIX name, stored inline so that `Key` stays `Copy`.
    Posix { len: u8, bytes: [u8; MAX_NAME_LEN] },
}

impl Key {
    /// `ftok(path, id)`: a System V key derived from an existing file's inode and device and the
    /// non-zero project `id`. Every process that uses the same path and id gets the same key.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] naming the path if it does not exist; [`Error::PermissionDenied`] if
    /// it cannot be reached; [`Error::InvalidArgument`] if `id` is 0 (`ftok` requires a non-zero
    /// id) or the path contains a NUL byte.
    ///
    /// # Examples
    ///
    /// ```
    /// let dir = std::env::temp_dir();
    /// let a = shmchan::Key::from_path(&dir, b'A')?;
    /// let b = shmchan::Key::from_path(&dir, b'B')?;
    /// assert_ne!(a, b);
    /// assert_eq!(a, shmchan::Key::from_path(&dir, b'A')?);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn from_path(path: impl AsRef<Path>, id: u8) -> Result<Key> {
        let path = path.as_ref();
        if id == 0 {
            return Err(Error::InvalidArgument {
                what: "ftok project id 0: use a non-zero byte such as b'A'".into(),
            });
        }
        match sys::sysv::ftok(path, id) {
            Ok(k) => Ok(Key::raw(k)),
            Err(errno) => Err(Error::from_errno(
                "ftok",
                errno,
                Target::Path {
                    path: path.to_path_buf(),
                },
            )),
        }
    }

    /// `IPC_PRIVATE`: creating with it always makes a new System V segment, which only this
    /// process and its `fork`ed children can reach.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(shmchan::Key::private().is_private());
    /// ```
    pub const fn private() -> Key {
        Key(KeyRepr::Private)
    }

    /// A raw System V key, as shown by `ipcs -m`. `Key::raw(0)` is [`Key::private`].
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::Key::raw(0x54).sysv_key(), Some(0x54));
    /// assert!(shmchan::Key::raw(0).is_private());
    /// ```
    pub const fn raw(key: i32) -> Key {
        if key == 0 {
            Key(KeyRepr::Private)
        } else {
            Key(KeyRepr::SysV(key))
        }
    }

    /// A POSIX shared memory object name (`shm_open`), e.g. `"/tick"`: a leading `/`, then 1 to
    /// 254 bytes without `/` or NUL. The object appears as `/dev/shm/tick`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the name does not have that shape.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(shmchan::Key::name("/tick").is_ok());
    /// assert!(shmchan::Key::name("tick").is_err());
    /// assert!(shmchan::Key::name("/a/b").is_err());
    /// ```
    pub fn name(name: &str) -> Result<Key> {
        let b = name.as_bytes();
        let valid = b.len() >= 2
            && b.len() <= MAX_NAME_LEN
            && b[0] == b'/'
            && !b[1..].contains(&b'/')
            && !b.contains(&0)
            && name != "/."
            && name != "/..";
        if !valid {
            return Err(Error::InvalidArgument {
                what: format!(
                    "POSIX shared memory name {name:?}: it must be `/` followed by 1 to 254 bytes without `/` or NUL, e.g. \"/tick\""
                ),
            });
        }
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Key(KeyRepr::Posix {
            len: b.len() as u8,
            bytes,
        }))
    }

    /// Whether this is `IPC_PRIVATE`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!shmchan::Key::raw(7).is_private());
    /// ```
    pub const fn is_private(&self) -> bool {
        matches!(self.0, KeyRepr::Private)
    }

    /// The System V key (`IPC_PRIVATE` is 0), or `None` for a POSIX name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::Key::private().sysv_key(), Some(0));
    /// ```
    pub fn sysv_key(&self) -> Option<i32> {
        match self.0 {
            KeyRepr::Private => Some(sys::sysv::IPC_PRIVATE),
            KeyRepr::SysV(k) => Some(k),
            KeyRepr::Posix { .. } => None,
        }
    }

    /// The POSIX name, or `None` for a System V key.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::Key::raw(1).posix_name(), None);
    /// ```
    pub fn posix_name(&self) -> Option<&str> {
        match &self.0 {
            KeyRepr::Posix { len, bytes } => std::str::from_utf8(&bytes[..*len as usize]).ok(),
            _ => None,
        }
    }

    /// What error messages say this key designates.
    pub(crate) fn target(&self) -> Target {
        match self.0 {
            KeyRepr::Private => Target::SysV { key: 0 },
            KeyRepr::SysV(key) => Target::SysV { key },
            KeyRepr::Posix { .. } => Target::Posix {
                name: self.posix_name().unwrap_or_default().to_owned(),
            },
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            KeyRepr::Private => f.write_str("IPC_PRIVATE"),
            KeyRepr::SysV(k) => write!(f, "0x{:08x}", k as u32),
            KeyRepr::Posix { .. } => f.write_str(self.posix_name().unwrap_or_default()),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftok_of_missing_path_is_not_found_naming_the_path() {
        let err = Key::from_path("/definitely/missing/shmchan", b'x').unwrap_err();
        match &err {
            Error::NotFound {
                call: "ftok",
                target: Target::Path { path },
            } => assert_eq!(path, Path::new("/definitely/missing/shmchan")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("/definitely/missing/shmchan"));
    }

    #[test]
    fn ftok_id_zero_is_refused() {
        assert!(matches!(
            Key::from_path("/", 0),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn posix_names_are_validated() {
        let long = format!("/{}", "a".repeat(254));
        assert_eq!(
            Key::name(&long).expect("255 bytes ok").posix_name(),
            Some(&*long)
        );
        assert!(Key::name(&format!("/{}", "a".repeat(255))).is_err());
        for bad in ["", "/", "x", "/a/b", "/a\0b", "/.."] {
            assert!(Key::name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
