//! Keyed queues: unrelated processes find the queue by a System V key or a POSIX name.

use std::sync::Arc;

use super::layout::{DEFAULT_MAX_HOLDERS, Geometry};
use super::memory::QueueMemory;
use super::{Receiver, Sender};
use crate::{Key, Result, ShmSafe};

/// Fails if the new handle could not get an entry in its table.
fn registered<H>(handle: H, entry: impl FnOnce(&H) -> Result<()>) -> Result<H> {
    entry(&handle)?;
    Ok(handle)
}

impl<T: ShmSafe> Sender<T> {
    /// Creates a keyed queue of at least `capacity` messages (rounded up to a power of two),
    /// with room for 32 sender and 32 receiver handles, and becomes one of its senders.
    /// [`Receiver::open`] and [`Sender::open`] with the same key, in any process, attach more.
    /// Messages sent before any receiver opens wait in the queue.
    ///
    /// The segment is removed when the creating process's last handle drops (POSIX) or when
    /// the last process detaches (System V), so nothing leaks.
    ///
    /// # Errors
    ///
    /// [`Error::Exists`](crate::Error::Exists) if the key is taken;
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a capacity of 0 or above
    /// 2^32; the segment's creation errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, mpmc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-mpmc-tx-{}", std::process::id()))?;
    /// let tx = mpmc::Sender::<u64>::create(key, 64)?;
    /// let rx = mpmc::Receiver::<u64>::open(key)?; // usually in another process
    /// tx.send(5)?;
    /// assert_eq!(rx.recv()?, 5);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create(key: Key, capacity: usize) -> Result<Sender<T>> {
        Sender::create_with_holders(key, capacity, DEFAULT_MAX_HOLDERS)
    }

    /// [`Sender::create`] with room for `max_holders` handles per side (1 to 4096).
    ///
    /// # Errors
    ///
    /// As for [`Sender::create`]; [`Error::InvalidArgument`](crate::Error::InvalidArgument) for
    /// a table size outside 1..=4096.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, mpmc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-mpmc-txh-{}", std::process::id()))?;
    /// let tx = mpmc::Sender::<u8>::create_with_holders(key, 8, 1)?;
    /// // The one sender entry is taken:
    /// assert!(matches!(mpmc::Sender::<u8>::open(key), Err(shmchan::Error::TooManyHolders { .. })));
    /// # drop(tx);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create_with_holders(key: Key, capacity: usize, max_holders: usize) -> Result<Sender<T>> {
        let geometry = Geometry::for_type::<T>(capacity, max_holders)?;
        let memory = QueueMemory::create::<T>(key, &geometry)?;
        registered(Sender::attach(Arc::new(memory), geometry), |s| {
            s.endpoint().entry().map(drop)
        })
    }

    /// Opens the keyed queue created by [`Receiver::create`] or [`Sender::create`] and becomes
    /// one of its senders.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if no segment has this key;
    /// [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) if it carries another message
    /// type; [`Error::KindMismatch`](crate::Error::KindMismatch) if it is not an mpmc queue;
    /// [`Error::Corrupted`](crate::Error::Corrupted) if its header is inconsistent;
    /// [`Error::TooManyHolders`](crate::Error::TooManyHolders) if its sender table is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, mpmc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-mpmc-open-tx-{}", std::process::id()))?;
    /// let rx = mpmc::Receiver::<[u8; 8]>::create(key, 16)?;
    /// let tx = mpmc::Sender::<[u8; 8]>::open(key)?;
    /// tx.send(*b"12345678")?;
    /// assert_eq!(&rx.recv()?, b"12345678");
    /// assert!(matches!(mpmc::Sender::<u64>::open(key), Err(shmchan::Error::LayoutMismatch { .. })));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open(key: Key) -> Result<Sender<T>> {
        let (memory, geometry) = QueueMemory::open::<T>(key)?;
        registered(Sender::attach(Arc::new(memory), geometry), |s| {
            s.endpoint().entry().map(drop)
        })
    }
}

impl<T: ShmSafe> Receiver<T> {
    /// Creates a keyed queue of at least `capacity` messages, with room for 32 handles per
    /// side, and becomes one of its receivers. Until a sender has opened, `recv` waits (it does
    /// not report `Disconnected`).
    ///
    /// # Errors
    ///
    /// As for [`Sender::create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, mpmc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-mpmc-rx-{}", std::process::id()))?;
    /// let rx = mpmc::Receiver::<u32>::create(key, 8)?;
    /// assert_eq!(rx.try_recv()?, None); // no sender yet: empty, not disconnected
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create(key: Key, capacity: usize) -> Result<Receiver<T>> {
        Receiver::create_with_holders(key, capacity, DEFAULT_MAX_HOLDERS)
    }

    /// [`Receiver::create`] with room for `max_holders` handles per side (1 to 4096).
    ///
    /// # Errors
    ///
    /// As for [`Sender::create_with_holders`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, mpmc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-mpmc-rxh-{}", std::process::id()))?;
    /// let rx = mpmc::Receiver::<u8>::create_with_holders(key, 8, 100)?;
    /// let workers: Vec<_> = (0..50).map(|_| mpmc::Receiver::<u8>::open(key)).collect::<Result<_, _>>()?;
    /// assert_eq!(workers.len(), 50);
    /// # drop(rx);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create_with_holders(
        key: Key,
        capacity: usize,
        max_holders: usize,
    ) -> Result<Receiver<T>> {
        let geometry = Geometry::for_type::<T>(capacity, max_holders)?;
        let memory = QueueMemory::create::<T>(key, &geometry)?;
        registered(Receiver::attach(Arc::new(memory), geometry), |r| {
            r.endpoint().entry().map(drop)
        })
    }

    /// Opens the keyed queue and becomes one of its receivers (a restarted worker re-opens the
    /// same name).
    ///
    /// # Errors
    ///
    /// As for [`Sender::open`], with the receiver table.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, mpmc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-mpmc-open-rx-{}", std::process::id()))?;
    /// let tx = mpmc::Sender::<u16>::create(key, 8)?;
    /// let rx1 = mpmc::Receiver::<u16>::open(key)?;
    /// let rx2 = mpmc::Receiver::<u16>::open(key)?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// assert_eq!(rx2.recv()? + rx1.recv()?, 3);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open(key: Key) -> Result<Receiver<T>> {
        let (memory, geometry) = QueueMemory::open::<T>(key)?;
        registered(Receiver::attach(Arc::new(memory), geometry), |r| {
            r.endpoint().entry().map(drop)
        })
    }
}
