//! Keyed channels: unrelated processes find the channel by a System V key or a POSIX name.

use std::sync::Arc;

use super::layout::RpcGeometry;
use super::options::RpcOptions;
use super::slots::Slots;
use super::{Client, Server};
use crate::mpmc::memory::QueueMemory;
use crate::{Key, Result, ShmSafe, mpmc};

/// The server of a freshly created channel (registered in the server table).
pub(super) fn server<Req: ShmSafe, Resp: ShmSafe>(
    memory: Arc<QueueMemory>,
    geometry: RpcGeometry,
) -> Result<Server<Req, Resp>> {
    let slots = Arc::new(Slots::new(Arc::clone(&memory), geometry));
    let rx = mpmc::Receiver::attach(memory, geometry.queue);
    rx.endpoint().entry()?;
    Ok(Server::attach(rx, slots))
}

impl<Req: ShmSafe, Resp: ShmSafe> Server<Req, Resp> {
    /// Creates a keyed channel whose request queue holds at least `capacity` requests (rounded
    /// up to a power of two), with room for 32 clients, and becomes its server.
    /// [`Client::connect`] with the same key, in any process, attaches clients.
    ///
    /// The segment is removed when the server's process drops its last handle (POSIX) or when
    /// the last process detaches (System V), so nothing leaks; a killed server's POSIX segment
    /// is reclaimed by `shmchan rm --stale`.
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
    /// use std::time::Duration;
    /// use shmchan::{Key, rpc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-rpc-create-{}", std::process::id()))?;
    /// let server = rpc::Server::<u64, u64>::create(key, 64)?;
    /// let client = rpc::Client::<u64, u64>::connect(key)?; // usually in another process
    /// let caller = std::thread::spawn(move || client.call(5, Duration::from_secs(5)));
    /// let (n, replier) = server.recv()?;
    /// replier.reply(n * 3)?;
    /// assert_eq!(caller.join().unwrap()?, 15);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create(key: Key, capacity: usize) -> Result<Server<Req, Resp>> {
        Server::options().capacity(capacity).create(key)
    }

    /// Opens an existing keyed channel as one more server: a server restarted after its
    /// predecessor died (or left) takes over the same name, and connected clients simply call
    /// it (a call that was waiting on the dead server got `Disconnected`; the next one is
    /// answered). Several server processes may serve one channel; each request goes to one.
    ///
    /// An opening server does not remove the segment when it leaves (the creator's rules
    /// apply); a segment whose creator was killed is reclaimed with `shmchan rm --stale` or
    /// [`Segment::remove`](crate::Segment::remove).
    ///
    /// # Errors
    ///
    /// As for [`Client::connect`], with the server table.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmchan::{Key, rpc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-rpc-open-{}", std::process::id()))?;
    /// let first = rpc::Server::<u64, u64>::create(key, 8)?;
    /// let client = rpc::Client::<u64, u64>::connect(key)?;
    /// let second = rpc::Server::<u64, u64>::open(key)?; // e.g. a restarted server process
    /// drop(first);
    /// let caller = std::thread::spawn(move || client.call(4, Duration::from_secs(5)));
    /// let (n, replier) = second.recv()?;
    /// replier.reply(n + 1)?;
    /// assert_eq!(caller.join().unwrap()?, 5);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open(key: Key) -> Result<Server<Req, Resp>> {
        let (memory, geometry) = super::memory::open::<Req, Resp>(key)?;
        server(memory, geometry).map_err(|e| match e {
            crate::Error::TooManyHolders { max, .. } => crate::Error::TooManyHolders {
                side: "server",
                max,
            },
            other => other,
        })
    }

    /// Options for a new channel: capacity, client table size, permission mode.
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, _client) = shmchan::rpc::Server::<u8, u8>::options().max_clients(8).channel()?;
    /// assert_eq!(server.max_clients(), 8);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn options() -> RpcOptions<Req, Resp> {
        RpcOptions::default()
    }
}

impl<Req: ShmSafe, Resp: ShmSafe> Client<Req, Resp> {
    /// Connects to the keyed channel created by [`Server::create`]: takes a free client slot
    /// (or the slot of a client whose process is gone).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) if no segment has this key;
    /// [`Error::LayoutMismatch`](crate::Error::LayoutMismatch) if it carries another request or
    /// response type; [`Error::KindMismatch`](crate::Error::KindMismatch) if it is not an rpc
    /// channel; [`Error::Corrupted`](crate::Error::Corrupted) if its header is inconsistent;
    /// [`Error::TooManyHolders`](crate::Error::TooManyHolders) if every client slot is taken by
    /// a live client.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, rpc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-rpc-connect-{}", std::process::id()))?;
    /// let server = rpc::Server::<u64, [u8; 8]>::create(key, 8)?;
    /// let client = rpc::Client::<u64, [u8; 8]>::connect(key)?;
    /// // Another response type is refused, as is another request type.
    /// assert!(matches!(rpc::Client::<u64, u64>::connect(key), Err(shmchan::Error::LayoutMismatch { .. })));
    /// assert!(matches!(rpc::Client::<u32, [u8; 8]>::connect(key), Err(shmchan::Error::LayoutMismatch { .. })));
    /// # drop((client, server));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn connect(key: Key) -> Result<Client<Req, Resp>> {
        let (memory, geometry) = super::memory::open::<Req, Resp>(key)?;
        let slots = Arc::new(Slots::new(Arc::clone(&memory), geometry));
        let client = Client::attach(mpmc::Sender::attach(memory, geometry.queue), slots);
        client.slot_index()?;
        Ok(client)
    }
}
