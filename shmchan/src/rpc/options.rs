//! [`RpcOptions`]: the request queue's capacity, the client table's size and the segment's
//! permission mode, chosen before creating a channel.

use std::marker::PhantomData;

use super::layout::{DEFAULT_MAX_CLIENTS, RpcGeometry};
use super::{Client, Server};
use crate::{Key, Result, ShmSafe};

/// Request queue capacity when the creator does not say.
const DEFAULT_CAPACITY: usize = 64;

/// How to create an rpc channel: from [`Server::options`].
///
/// # Examples
///
/// ```
/// use shmchan::{Key, rpc};
///
/// let key = Key::name(&format!("/shmchan-doc-rpc-options-{}", std::process::id()))?;
/// let server = rpc::Server::<u64, u64>::options()
///     .capacity(256)
///     .max_clients(100)
///     .mode(0o600)
///     .create(key)?;
/// assert_eq!((server.capacity(), server.max_clients()), (256, 100));
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use = "options do nothing until `create` or `channel` is called"]
pub struct RpcOptions<Req: ShmSafe, Resp: ShmSafe> {
    capacity: usize,
    max_clients: usize,
    mode: u32,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req: ShmSafe, Resp: ShmSafe> Default for RpcOptions<Req, Resp> {
    fn default() -> Self {
        RpcOptions {
            capacity: DEFAULT_CAPACITY,
            max_clients: DEFAULT_MAX_CLIENTS,
            mode: 0o600,
            _types: PhantomData,
        }
    }
}

impl<Req: ShmSafe, Resp: ShmSafe> RpcOptions<Req, Resp> {
    /// Requests the queue holds at once (rounded up to a power of two; default 64). Calls
    /// wait for room when it is full.
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, _client) = shmchan::rpc::Server::<u8, u8>::options().capacity(5).channel()?;
    /// assert_eq!(server.capacity(), 8);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Clients connected at once, 1 to 4096 (default 32). A dead client's slot is reused.
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, _client) = shmchan::rpc::Server::<u8, u8>::options().max_clients(4).channel()?;
    /// assert_eq!(server.max_clients(), 4);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn max_clients(mut self, max_clients: usize) -> Self {
        self.max_clients = max_clients;
        self
    }

    /// Permission bits of a keyed segment (default `0o600`: only this user may connect).
    ///
    /// # Examples
    ///
    /// ```
    /// let opts = shmchan::rpc::Server::<u8, u8>::options().mode(0o660);
    /// # let _ = opts;
    /// ```
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Creates the keyed channel and becomes its server.
    ///
    /// # Errors
    ///
    /// As for [`Server::create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, rpc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-rpc-opt-create-{}", std::process::id()))?;
    /// let server = rpc::Server::<u32, u32>::options().max_clients(2).create(key)?;
    /// let _a = rpc::Client::<u32, u32>::connect(key)?;
    /// let _b = rpc::Client::<u32, u32>::connect(key)?;
    /// assert!(rpc::Client::<u32, u32>::connect(key).is_err()); // two slots only
    /// # drop(server);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create(self, key: Key) -> Result<Server<Req, Resp>> {
        let geometry = RpcGeometry::for_types::<Req, Resp>(self.capacity, self.max_clients)?;
        let memory = super::memory::create::<Req>(key, &geometry, self.mode)?;
        super::keyed::server(memory, geometry)
    }

    /// Creates an anonymous channel (before `fork`); returns its server and a first client.
    ///
    /// # Errors
    ///
    /// As for [`channel`](super::channel()).
    ///
    /// # Examples
    ///
    /// ```
    /// let (server, client) = shmchan::rpc::Server::<u8, u8>::options().capacity(2).channel()?;
    /// assert_eq!(server.capacity(), 2);
    /// # drop(client);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn channel(self) -> Result<(Server<Req, Resp>, Client<Req, Resp>)> {
        super::channel_with_clients(self.capacity, self.max_clients)
    }
}
