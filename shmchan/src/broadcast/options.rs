//! Creating channels: the options builder, keyed creation and opening.

use std::sync::Arc;

use super::layout::{DEFAULT_MAX_SUBSCRIBERS, Geometry};
use super::memory::ChannelMemory;
use super::ring::Ring;
use super::{Overflow, Publisher, Subscriber};
use crate::{Key, Result, ShmSafe};

/// Settings of a new broadcast channel, from [`Publisher::options`].
///
/// # Examples
///
/// ```
/// use shmchan::broadcast::{Overflow, Publisher};
///
/// let (tx, _rx) = Publisher::<u64>::options()
///     .capacity(64)
///     .max_subscribers(4)
///     .overflow(Overflow::DropOldest)
///     .anonymous()?;
/// assert_eq!((tx.capacity(), tx.overflow()), (64, Overflow::DropOldest));
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct PublisherOptions<T: ShmSafe> {
    capacity: usize,
    max_subscribers: usize,
    overflow: Overflow,
    _marker: std::marker::PhantomData<fn() -> T>,
}

impl<T: ShmSafe> PublisherOptions<T> {
    /// Messages the ring holds (rounded up to a power of two, at least 2; default 1024).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::broadcast::Publisher::<u8>::options().capacity(3).anonymous()?;
    /// assert_eq!(tx.capacity(), 4);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Subscriber handles the channel has room for, in all processes together (1 to 4096;
    /// default 32).
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, _rx) = shmchan::broadcast::Publisher::<u8>::options().max_subscribers(1).anonymous()?;
    /// assert!(matches!(tx.subscribe(), Err(shmchan::Error::TooManyHolders { .. })));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn max_subscribers(mut self, max_subscribers: usize) -> Self {
        self.max_subscribers = max_subscribers;
        self
    }

    /// What the publisher does when the slowest subscriber is a lap behind (default
    /// [`Overflow::Block`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::broadcast::{Overflow, Publisher};
    /// let (tx, _rx) = Publisher::<u8>::options().overflow(Overflow::DropOldest).anonymous()?;
    /// assert_eq!(tx.overflow(), Overflow::DropOldest);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    fn geometry(&self) -> Result<Geometry> {
        Geometry::for_type::<T>(self.capacity, self.max_subscribers, self.overflow)
    }

    /// Creates an anonymous channel (create it, and its subscribers, before `fork`) and its
    /// first subscriber.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a capacity of 0 or above
    /// 2^32 or a table size outside 1..=4096; the errors of creating the mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// let (tx, rx) = shmchan::broadcast::Publisher::<u8>::options().anonymous()?;
    /// tx.send(1)?;
    /// assert_eq!(rx.recv()?, 1);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn anonymous(self) -> Result<(Publisher<T>, Subscriber<T>)> {
        let geometry = self.geometry()?;
        let memory = Arc::new(ChannelMemory::anonymous::<T>(&geometry)?);
        let publisher = Publisher::attach(Arc::clone(&memory), geometry)?;
        let subscriber = Subscriber::attach(Ring::new(memory, geometry))?;
        Ok((publisher, subscriber))
    }

    /// Creates the keyed channel and becomes its publisher. [`Subscriber::open`] with the same
    /// key, in any process, subscribes. The segment is removed when the creating process's
    /// last handle drops (POSIX) or when the last process detaches (System V).
    ///
    /// # Errors
    ///
    /// [`Error::Exists`](crate::Error::Exists) if the key is taken; as for
    /// [`anonymous`](PublisherOptions::anonymous) otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, broadcast::{Overflow, Publisher, Subscriber}};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-bc-opts-{}", std::process::id()))?;
    /// let tx = Publisher::<u32>::options().capacity(16).max_subscribers(2)
    ///     .overflow(Overflow::DropOldest).create(key)?;
    /// let rx = Subscriber::<u32>::open(key)?;
    /// tx.send(9)?;
    /// assert_eq!(rx.recv()?, 9);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create(self, key: Key) -> Result<Publisher<T>> {
        let geometry = self.geometry()?;
        let memory = ChannelMemory::create::<T>(key, &geometry)?;
        Publisher::attach(Arc::new(memory), geometry)
    }
}

impl<T: ShmSafe> Publisher<T> {
    /// The options builder for a new channel: capacity, subscriber table size, overflow mode.
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = shmchan::broadcast::Publisher::<u64>::options().capacity(8);
    /// let (tx, _rx) = opts.anonymous()?;
    /// assert_eq!(tx.capacity(), 8);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn options() -> PublisherOptions<T> {
        PublisherOptions {
            capacity: 1024,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            overflow: Overflow::Block,
            _marker: std::marker::PhantomData,
        }
    }

    /// Creates a keyed channel of at least `capacity` messages, in `Overflow::Block` mode with
    /// room for 32 subscribers, and becomes its publisher (see [`PublisherOptions::create`]).
    ///
    /// # Errors
    ///
    /// As for [`PublisherOptions::create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, broadcast::{Publisher, Subscriber}};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-bc-create-{}", std::process::id()))?;
    /// let tx = Publisher::<u64>::create(key, 64)?;
    /// let rx = Subscriber::<u64>::open(key)?; // usually in another process
    /// tx.send(5)?;
    /// assert_eq!(rx.recv()?, 5);
    /// assert!(matches!(Publisher::<u64>::create(key, 64), Err(shmchan::Error::Exists { .. })));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create(key: Key, capacity: usize) -> Result<Publisher<T>> {
        Publisher::options().capacity(capacity).create(key)
    }

    /// Opens an existing keyed channel and becomes its publisher, continuing after the last
    /// message the previous one published: a publisher restarted after a crash re-attaches.
    /// (A POSIX channel's name is removed when its creator's handle drops cleanly; a System V
    /// segment stays while any subscriber is attached.)
    ///
    /// # Errors
    ///
    /// [`Error::TooManyHolders`](crate::Error::TooManyHolders) while another publisher lives;
    /// as for [`Subscriber::open`] otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, broadcast::{Publisher, Subscriber}};
    ///
    /// let key = Key::raw(0x5bc0_0000 | (std::process::id() & 0xffff) as i32); // System V
    /// let first = Publisher::<u64>::create(key, 8)?;
    /// let rx = Subscriber::<u64>::open(key)?;
    /// assert!(Publisher::<u64>::open(key).is_err()); // `first` still publishes
    /// first.send(1)?;
    /// drop(first);
    /// let second = Publisher::<u64>::open(key)?;
    /// second.send(2)?;
    /// assert_eq!((rx.recv()?, rx.recv()?), (1, 2));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open(key: Key) -> Result<Publisher<T>> {
        let (memory, geometry) = ChannelMemory::open::<T>(key)?;
        Publisher::attach(Arc::new(memory), geometry)
    }
}

impl<T: ShmSafe> Subscriber<T> {
    /// Opens the keyed channel and subscribes, joining at the newest message. Works at any
    /// time, in any process, also after the publisher died (then `recv` reports
    /// `Disconnected`), and again after a subscriber left or died.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if no segment has this key;
    /// [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) if it carries another message
    /// type; [`Error::KindMismatch`](crate::Error::KindMismatch) if it is not a broadcast
    /// channel; [`Error::Corrupted`](crate::Error::Corrupted) if its header is inconsistent;
    /// [`Error::TooManyHolders`](crate::Error::TooManyHolders) if its subscriber table is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, broadcast::{Publisher, Subscriber}};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-bc-open-{}", std::process::id()))?;
    /// let tx = Publisher::<[u8; 8]>::create(key, 16)?;
    /// let rx = Subscriber::<[u8; 8]>::open(key)?;
    /// tx.send(*b"12345678")?;
    /// assert_eq!(&rx.recv()?, b"12345678");
    /// assert!(matches!(Subscriber::<u64>::open(key), Err(shmchan::Error::LayoutMismatch { .. })));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open(key: Key) -> Result<Subscriber<T>> {
        let (memory, geometry) = ChannelMemory::open::<T>(key)?;
        Subscriber::attach(Ring::new(Arc::new(memory), geometry))
    }
}
