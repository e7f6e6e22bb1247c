//! Keyed channels: two unrelated processes find the ring by a System V key or a POSIX name.

use std::sync::Arc;

use super::layout::Geometry;
use super::liveness::Side;
use super::memory::RingMemory;
use super::{Receiver, Sender};
use crate::{Error, Key, Result, ShmSafe};

/// Refuses to join `side` if it is closed, or held by more live processes than `allowed` (0
/// before joining; 1, the caller, after joining: two openers racing past the first check both
/// see two holders and both back off).
fn check_free(side: &Side, key: &Key, role: &str, allowed: usize) -> Result<()> {
    if side.is_closed() {
        return Err(Error::Disconnected);
    }
    let holders = side.live_holders();
    if holders.len() > allowed {
        return Err(Error::InvalidArgument {
            what: format!(
                "the channel {key} already has a {role} (pid {}); a channel has exactly one sender and one receiver",
                holders[0]
            ),
        });
    }
    Ok(())
}

impl<T: ShmSafe> Sender<T> {
    /// Creates a keyed channel of at least `capacity` messages (rounded up to a power of two)
    /// and becomes its sender; a [`Receiver::open`] with the same key, in any process, is the
    /// other end. Messages sent before the receiver opens wait in the ring.
    ///
    /// The segment is removed when the creating handle drops (POSIX) or when the last process
    /// detaches (System V), so nothing leaks; see `docs/segments.md`.
    ///
    /// # Errors
    ///
    /// [`Error::Exists`] if the key is taken; [`Error::InvalidArgument`] for a capacity of 0 or
    /// above 2^32; the segment's creation errors ([`Error::InvalidSize`], [`Error::NoSpace`],
    /// [`Error::PermissionDenied`]...).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Receiver, Sender};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-tx-{}", std::process::id()))?;
    /// let tx = Sender::<u64>::create(key, 64)?;
    /// let rx = Receiver::<u64>::open(key)?;   // usually in another process
    /// tx.send(5)?;
    /// assert_eq!(rx.recv()?, 5);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create(key: Key, capacity: usize) -> Result<Sender<T>> {
        let geometry = Geometry::for_type::<T>(capacity)?;
        let memory = RingMemory::create::<T>(key, &geometry)?;
        Ok(Sender::attach(Arc::new(memory), geometry))
    }

    /// Opens the keyed channel created by [`Receiver::create`] and becomes its sender.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no segment has this key; [`Error::LayoutMismatch`] if it carries
    /// another message type; [`Error::KindMismatch`] if it is not a channel (a `Shared` value);
    /// [`Error::NotShmchan`] if it is not a shmchan segment; [`Error::Corrupted`] if its ring
    /// header is inconsistent; [`Error::InvalidArgument`] if it already has a live sender;
    /// [`Error::Disconnected`] if its sending end was closed before.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Receiver, Sender};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-open-tx-{}", std::process::id()))?;
    /// let rx = Receiver::<[u8; 8]>::create(key, 16)?;
    /// let tx = Sender::<[u8; 8]>::open(key)?;
    /// tx.send(*b"12345678")?;
    /// assert_eq!(&rx.recv()?, b"12345678");
    /// assert!(matches!(Sender::<u64>::open(key), Err(shmchan::Error::LayoutMismatch { .. })));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open(key: Key) -> Result<Sender<T>> {
        let (memory, geometry) = RingMemory::open::<T>(key)?;
        check_free(&memory.ring_header().sender.0, &key, "sender", 0)?;
        let tx = Sender::attach(Arc::new(memory), geometry);
        check_free(&tx.memory().ring_header().sender.0, &key, "sender", 1)?;
        Ok(tx)
    }
}

impl<T: ShmSafe> Receiver<T> {
    /// Creates a keyed channel of at least `capacity` messages and becomes its receiver; a
    /// [`Sender::open`] with the same key is the other end. Until a sender has opened, `recv`
    /// waits (it does not report `Disconnected`).
    ///
    /// # Errors
    ///
    /// As for [`Sender::create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Receiver};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-rx-{}", std::process::id()))?;
    /// let rx = Receiver::<u32>::create(key, 8)?;
    /// assert_eq!(rx.try_recv()?, None); // no sender yet: empty, not disconnected
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create(key: Key, capacity: usize) -> Result<Receiver<T>> {
        let geometry = Geometry::for_type::<T>(capacity)?;
        let memory = RingMemory::create::<T>(key, &geometry)?;
        Ok(Receiver::attach(Arc::new(memory), geometry))
    }

    /// Opens the keyed channel created by [`Sender::create`] and becomes its receiver.
    ///
    /// # Errors
    ///
    /// As for [`Sender::open`], for the receiving end.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Receiver, Sender};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-open-rx-{}", std::process::id()))?;
    /// let tx = Sender::<u16>::create(key, 8)?;
    /// let rx = Receiver::<u16>::open(key)?;
    /// // One receiver per channel:
    /// assert!(Receiver::<u16>::open(key).is_err());
    /// # drop((tx, rx));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open(key: Key) -> Result<Receiver<T>> {
        let (memory, geometry) = RingMemory::open::<T>(key)?;
        check_free(&memory.ring_header().receiver.0, &key, "receiver", 0)?;
        let rx = Receiver::attach(Arc::new(memory), geometry);
        check_free(&rx.memory().ring_header().receiver.0, &key, "receiver", 1)?;
        Ok(rx)
    }
}
