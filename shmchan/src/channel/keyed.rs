//! Keyed channels: two unrelated processes find the ring by a System V key or a POSIX name.

use std::sync::Arc;

use super::layout::{Geometry, RingHeader};
use super::liveness::{self, Side};
use super::memory::RingMemory;
use super::role::Role;
use super::{Receiver, Sender};
use crate::{Error, Key, Result, ShmSafe};

/// Which end of a ring.
#[derive(Clone, Copy)]
enum End {
    Sending,
    Receiving,
}

impl End {
    fn side(self, header: &RingHeader) -> &Side {
        match self {
            End::Sending => &header.sender.0,
            End::Receiving => &header.receiver.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            End::Sending => "sending",
            End::Receiving => "receiving",
        }
    }
}

/// A new keyed ring with `end` recorded as held and claimed by the calling process before
/// any opener can see the segment.
fn create_ring<T: ShmSafe>(
    key: Key,
    capacity: usize,
    end: End,
) -> Result<(RingMemory, Geometry, (u32, u32))> {
    let geometry = Geometry::for_type::<T>(capacity)?;
    let (pid, start, start_low32) = liveness::own_identity_full();
    let (memory, geometry) = RingMemory::create::<T>(key, &geometry, |header| {
        let side = end.side(header);
        side.attach(pid, start);
        side.role.set_initial(pid, start_low32);
    })?;
    Ok((memory, geometry, (pid, start_low32)))
}

/// Claims `end` of an opened ring for the calling process, changing nothing if it cannot:
/// refuses if a live process holds that end (a holder that left, died or `exec`ed does not
/// count: the end is then re-opened). Two openers racing serialise on the role word: one
/// wins, the other gets [`Error::InUse`] and leaves no trace.
fn claim_end(memory: &RingMemory, key: &Key, end: End) -> Result<(u32, u32)> {
    let side = end.side(memory.ring_header());
    let probe = memory.probe();
    let in_use = |pid| Error::InUse {
        what: if pid == std::process::id() {
            // A second handle here, or one this process held before it `exec`ed (same pid and
            // start time, so it cannot be told apart from a live one).
            format!(
                "the {} end of the channel {key} (held by this very process)",
                end.name()
            )
        } else {
            format!("the {} end of the channel {key}", end.name())
        },
        pid,
    };
    if let Some(&pid) = side.live_holders(&probe).first() {
        return Err(in_use(pid));
    }
    let (pid, start_low32) = liveness::own_identity();
    side.role
        .claim(pid, start_low32, |p, s| probe.process_holds_low32(p, s))
        .map_err(in_use)?;
    Ok((pid, start_low32))
}

/// After `attach` failed on a claimed end: give the role back.
fn unclaim(memory: &RingMemory, end: End, (pid, start_low32): (u32, u32)) {
    end.side(memory.ring_header())
        .role
        .release(pid, start_low32);
}

impl<T: ShmSafe> Sender<T> {
    /// Creates a keyed channel of at least `capacity` messages (rounded up to a power of two)
    /// and becomes its sender; a [`Receiver::open`] with the same key, in any process, is the
    /// other end. Messages sent before the receiver opens wait in the ring.
    ///
    /// The segment is removed when the creating handle drops (POSIX) or when the last process
    /// detaches (System V), so nothing leaks.
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
        let (memory, geometry, id) = create_ring::<T>(key, capacity, End::Sending)?;
        Sender::attach(Arc::new(memory), geometry, Role::Created(id))
    }

    /// Opens the keyed channel created by [`Receiver::create`] and becomes its sender.
    ///
    /// A sending end whose previous holder dropped it, died or `exec`ed is re-opened: a
    /// restarted producer reattaches to the same name and continues after the last message
    /// its predecessor committed. A failed `open` changes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if no segment has this key; [`Error::LayoutMismatch`] if it carries
    /// another message type; [`Error::KindMismatch`] if it is not a channel (a `Shared` value);
    /// [`Error::NotShmchan`] if it is not a shmchan segment; [`Error::Corrupted`] if its ring
    /// header or indices are inconsistent; [`Error::InUse`] if a live process holds its sending
    /// end (a channel has one sender).
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
        let _opening = liveness::opening();
        let id = claim_end(&memory, &key, End::Sending)?;
        let memory = Arc::new(memory);
        let tx = Sender::attach(Arc::clone(&memory), geometry, Role::Claimed(id))
            .inspect_err(|_| unclaim(&memory, End::Sending, id))?;
        memory.ring_header().sender.0.begin_epoch();
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
        let (memory, geometry, id) = create_ring::<T>(key, capacity, End::Receiving)?;
        Receiver::attach(Arc::new(memory), geometry, Role::Created(id))
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
        let _opening = liveness::opening();
        let id = claim_end(&memory, &key, End::Receiving)?;
        let memory = Arc::new(memory);
        let rx = Receiver::attach(Arc::clone(&memory), geometry, Role::Claimed(id))
            .inspect_err(|_| unclaim(&memory, End::Receiving, id))?;
        memory.ring_header().receiver.0.begin_epoch();
        Ok(rx)
    }
}
