//! [`SharedOptions`]: how a keyed value is created (permission bits for the segment and its
//! lock file, initial value, persistence).

use super::{DEFAULT_MODE, Inner, Lock, Shared};
use crate::{Key, Result, Segment, ShmSafe};
use core::marker::PhantomData;

/// Options for creating a keyed [`Shared`] value, from [`Shared::options`].
///
/// The mode applies to the segment *and*, for [`FcntlLock`](crate::FcntlLock), to its lock
/// file, so the users the segment lets in can take the lock too (a value whose mode lets others
/// in keeps its lock file in the shared temporary directory, not in the creator's private
/// runtime directory).
///
/// # Examples
///
/// ```
/// use shmchan::{FcntlLock, Key, Shared};
///
/// let key = Key::name(&format!("/shmchan-doc-options-{}", std::process::id()))?;
/// let s = Shared::<u64, FcntlLock>::options().mode(0o640).init(7).create(key)?;
/// assert_eq!(s.read(), 7);
/// assert_eq!(s.info()?.mode, Some(0o640));
/// let lock = std::fs::metadata(s.lock_path().expect("named lock file"))?;
/// assert_eq!(std::os::unix::fs::PermissionsExt::mode(&lock.permissions()) & 0o777, 0o640);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "options do nothing until `create` or `open_or_create`"]
pub struct SharedOptions<T: ShmSafe, L: Lock> {
    mode: u32,
    init: Option<T>,
    persist: bool,
    _lock: PhantomData<fn() -> L>,
}

impl<T: ShmSafe, L: Lock> Shared<T, L> {
    /// Options for creating a keyed value: [`mode`](SharedOptions::mode),
    /// [`init`](SharedOptions::init), [`persist`](SharedOptions::persist).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, SeqLock, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-opts-{}", std::process::id()))?;
    /// let s = Shared::<u32, SeqLock>::options().init(3).create(key)?;
    /// assert_eq!(s.read(), 3);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn options() -> SharedOptions<T, L> {
        SharedOptions {
            mode: DEFAULT_MODE,
            init: None,
            persist: false,
            _lock: PhantomData,
        }
    }
}

impl<T: ShmSafe, L: Lock> SharedOptions<T, L> {
    /// Permission bits for the segment and the lock file (default `0o600`: the owner only),
    /// e.g. `0o640` to let the group read, `0o660` to let it write.
    ///
    /// # Examples
    ///
    /// ```
    /// let o = shmchan::Shared::<u64>::options().mode(0o660);
    /// # drop(o);
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// The value a newly created segment starts with (default: all-zero bytes, built in place;
    /// `init` moves a `T` through the stack, so prefer the default for very large values and
    /// write them afterwards).
    ///
    /// # Examples
    ///
    /// ```
    /// let o = shmchan::Shared::<u64>::options().init(42);
    /// # drop(o);
    /// ```
    pub fn init(mut self, value: T) -> Self {
        self.init = Some(value);
        self
    }

    /// Keep the segment after its creator is gone (see [`Shared::persist`]); default `false`:
    /// the last handle to detach removes it.
    ///
    /// # Examples
    ///
    /// ```
    /// let o = shmchan::Shared::<u64>::options().persist(true);
    /// # drop(o);
    /// ```
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }

    /// Creates the value; fails if the key is taken.
    ///
    /// # Errors
    ///
    /// As [`Shared::create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Error, Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-opt-create-{}", std::process::id()))?;
    /// let _a = Shared::<u64>::options().create(key)?;
    /// assert!(matches!(Shared::<u64>::options().create(key), Err(Error::Exists { .. })));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create(self, key: Key) -> Result<Shared<T, L>> {
        let inner = Inner::create_with(
            self.init.as_ref(),
            !key.is_private(),
            self.mode,
            |spec, init| Segment::create(key, spec, init),
        )?;
        self.finish(Shared { inner })
    }

    /// Opens the value, or creates it with these options (an existing segment keeps its own
    /// mode and value).
    ///
    /// # Errors
    ///
    /// As [`Shared::open_or_create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-opt-ooc-{}", std::process::id()))?;
    /// let a = Shared::<u64>::options().init(5).open_or_create(key)?;
    /// let b = Shared::<u64>::options().init(6).open_or_create(key)?;
    /// assert_eq!(b.read(), 5);
    /// # drop(a);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open_or_create(self, key: Key) -> Result<Shared<T, L>> {
        let inner = Inner::open_or_create(key, self.init.as_ref(), self.mode)?;
        self.finish(Shared { inner })
    }

    fn finish(self, mut s: Shared<T, L>) -> Result<Shared<T, L>> {
        if self.persist {
            s.persist();
        }
        Ok(s)
    }
}
