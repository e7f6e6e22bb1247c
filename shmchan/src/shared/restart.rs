//! Restart detection on value handles: forwards to [`Segment::is_removed`] and
//! [`Segment::creator_alive`](crate::Segment::creator_alive).

use super::{Lock, Shared, SharedReader};
#[cfg(doc)]
use crate::Segment;
use crate::{Result, ShmSafe};

impl<T: ShmSafe, L: Lock> Shared<T, L> {
    /// Whether this handle's segment was removed, or its key now designates a newer segment (a
    /// restarted publisher): see [`Segment::is_removed`]. A reader that sees `true` should
    /// open the key again.
    ///
    /// # Errors
    ///
    /// As [`Segment::is_removed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-shared-removed-{}", std::process::id()))?;
    /// let publisher = Shared::<u64>::create(key)?;
    /// let reader = Shared::<u64>::open(key)?;
    /// assert!(!reader.is_removed()?);
    /// publisher.remove()?;
    /// assert!(reader.is_removed()?);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn is_removed(&self) -> Result<bool> {
        self.segment().is_removed()
    }

    /// Whether the process that created the segment still runs (pid and start time).
    ///
    /// # Examples
    ///
    /// ```
    /// let s = shmchan::Shared::<u64>::anonymous(0)?;
    /// assert!(s.creator_alive());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn creator_alive(&self) -> bool {
        self.segment().creator_alive()
    }
}

impl<T: ShmSafe, L: Lock> SharedReader<T, L> {
    /// As [`Shared::is_removed`].
    ///
    /// # Errors
    ///
    /// As [`Segment::is_removed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-reader-removed-{}", std::process::id()))?;
    /// let publisher = Shared::<u64>::create(key)?;
    /// let reader = Shared::<u64>::open_read_only(key)?;
    /// drop(publisher); // a clean exit unlinks the POSIX object
    /// assert!(reader.is_removed()?);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn is_removed(&self) -> Result<bool> {
        self.segment().is_removed()
    }

    /// As [`Shared::creator_alive`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Shared};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-reader-alive-{}", std::process::id()))?;
    /// let _publisher = Shared::<u64>::create(key)?;
    /// let reader = Shared::<u64>::open_read_only(key)?;
    /// assert!(reader.creator_alive());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn creator_alive(&self) -> bool {
        self.segment().creator_alive()
    }
}
