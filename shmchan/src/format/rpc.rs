//! An rpc channel's payload: a header, an embedded mpmc queue of request tokens, then one
//! client slot per client table entry.
//!
//! ```text
//!    0  meta       magic "SHMRPC01", request queue capacity, max clients, request and response
//!                  fingerprints and sizes, queue offset and length, client slots offset and
//!                  stride (constant)
//!  128  counters   stale requests u64 (tokens whose client had moved on, skipped by a server),
//!                  dropped replies u64 (replies to a client that had gone or moved on)
//!  256  queue      an mpmc queue of u64 tokens (see `format::mpmc`): its producer table is the
//!                  client table, its consumer table holds the server handles
//!   ..  slots      max clients x ClientSlot { request call u64, reply call u64, wait u32,
//!                  unused, the request as 8-byte words, the response as 8-byte words }, at the
//!                  slots offset (a multiple of 128), each `stride` bytes (a multiple of 128)
//! ```
//!
//! A client owns entry `i` of the queue's producer table while it lives, and with it slot `i`.
//! A call with id `c` writes the request into the slot like a seqlock (`request call = c |
//! WRITING`, the words, `request call = c`), then sends the token `c << 16 | i` through the
//! queue. A server that takes the token reads the request, and accepts it only if `request
//! call` equals `c` (low 48 bits) before and after the copy: a token whose client has moved on
//! (timed out, died, or the slot was reused) is stale and skipped. The reply is written the same
//! way under `reply call`, which only ever grows: a replier takes it from `r < c` to `c |
//! WRITING` by a compare-and-swap, writes the words and stores `c`. The client accepts the reply
//! only when `reply call == c`, so a late reply to an earlier call is never taken for the answer
//! to a later one. Call ids of a slot keep growing when a new client reuses it.

use super::DecodedHeader;
use super::mpmc::{MAX_HOLDERS_LIMIT, MpmcHolder, MpmcState};
use super::ring::Line;
use super::source::ByteSource;
use crate::error::{Error, Result};
use core::mem::{offset_of, size_of};

/// `b"SHMRPC01"` (little-endian word): marks an initialised rpc channel.
pub const RPC_MAGIC: u64 = u64::from_le_bytes(*b"SHMRPC01");

/// Set in a slot's `request call` or `reply call` while the words are being written.
pub const WRITING: u64 = 1 << 63;

/// Set in a slot's `request call` by a client whose call timed out: the request is no longer
/// wanted (a server skips it, a reply to it is dropped).
pub const ABANDONED: u64 = 1 << 62;

/// Bits of a token that name the client slot (the rest is the call id's low 48 bits).
pub const TOKEN_SLOT_BITS: u32 = 16;

/// Offset of the embedded request queue from the payload's start.
pub const QUEUE_OFFSET: u64 = 256;

/// Offset of the request words in a client slot.
pub const SLOT_REQUEST_OFFSET: u64 = size_of::<ClientSlotHeader>() as u64;

/// The channel's constant description, written once by the creator.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::rpc::RpcMeta>(), 96);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RpcMeta {
    /// [`RPC_MAGIC`].
    pub magic: u64,
    /// Slots of the request queue (a power of two).
    pub capacity: u64,
    /// Client slots (and entries of the client table).
    pub max_clients: u64,
    /// `ShmSafe::FINGERPRINT` of the request type.
    pub request_fingerprint: u64,
    /// `ShmSafe::FINGERPRINT` of the response type.
    pub response_fingerprint: u64,
    /// Bytes of a request in a slot (its size rounded up to 8).
    pub request_size: u64,
    /// Bytes of a response in a slot (its size rounded up to 8).
    pub response_size: u64,
    /// Offset of the request queue ([`QUEUE_OFFSET`]).
    pub queue_offset: u64,
    /// Bytes of the request queue.
    pub queue_len: u64,
    /// Offset of client slot 0.
    pub slots_offset: u64,
    /// Bytes from one client slot to the next.
    pub slot_stride: u64,
    /// Unused.
    pub reserved: u64,
}

/// The counters line.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::rpc::RpcCounters>(), 16);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RpcCounters {
    /// Request tokens skipped because their client had moved on (timed out, died, reused).
    pub stale_requests: u64,
    /// Replies dropped because their client had gone or moved on.
    pub dropped_replies: u64,
}

/// The fixed part of the payload before the queue.
///
/// # Examples
///
/// ```
/// use shmchan::format::rpc::{QUEUE_OFFSET, RpcHeader};
/// assert_eq!(size_of::<RpcHeader>() as u64, QUEUE_OFFSET);
/// ```
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct RpcHeader {
    /// Constant description.
    pub meta: Line<RpcMeta>,
    /// Counters.
    pub counters: Line<RpcCounters>,
}

/// The fixed words at the start of each client slot.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::rpc::ClientSlotHeader>(), 32);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ClientSlotHeader {
    /// Id of the client's latest call (with [`WRITING`] while its request is being written).
    pub request_call: u64,
    /// Id of the latest call answered (with [`WRITING`] while a reply is being written).
    pub reply_call: u64,
    /// The client's futex word (1 while it may be asleep waiting for a reply).
    pub wait: u32,
    /// Unused.
    pub pad: u32,
    /// Unused.
    pub reserved: u64,
}

const _: () = {
    assert!(size_of::<RpcMeta>() == 96);
    assert!(offset_of!(RpcMeta, capacity) == 8);
    assert!(offset_of!(RpcMeta, max_clients) == 16);
    assert!(offset_of!(RpcMeta, request_fingerprint) == 24);
    assert!(offset_of!(RpcMeta, response_fingerprint) == 32);
    assert!(offset_of!(RpcMeta, request_size) == 40);
    assert!(offset_of!(RpcMeta, response_size) == 48);
    assert!(offset_of!(RpcMeta, queue_offset) == 56);
    assert!(offset_of!(RpcMeta, queue_len) == 64);
    assert!(offset_of!(RpcMeta, slots_offset) == 72);
    assert!(offset_of!(RpcMeta, slot_stride) == 80);
    assert!(offset_of!(RpcCounters, dropped_replies) == 8);
    assert!(offset_of!(RpcHeader, counters) == 128);
    assert!(size_of::<RpcHeader>() as u64 == QUEUE_OFFSET);
    assert!(offset_of!(ClientSlotHeader, reply_call) == 8);
    assert!(offset_of!(ClientSlotHeader, wait) == 16);
    assert!(size_of::<ClientSlotHeader>() == 32);
    // The library's atomic structures are this layout.
    use crate::rpc::layout as live;
    assert!(size_of::<live::RpcHeader>() == size_of::<RpcHeader>());
    assert!(offset_of!(live::RpcHeader, counters) == offset_of!(RpcHeader, counters));
    assert!(size_of::<live::Meta>() == size_of::<RpcMeta>());
    assert!(offset_of!(live::Meta, max_clients) == offset_of!(RpcMeta, max_clients));
    assert!(offset_of!(live::Meta, slot_stride) == offset_of!(RpcMeta, slot_stride));
    assert!(size_of::<live::Counters>() == size_of::<RpcCounters>());
    assert!(
        offset_of!(live::Counters, dropped_replies) == offset_of!(RpcCounters, dropped_replies)
    );
    assert!(size_of::<live::SlotHeader>() == size_of::<ClientSlotHeader>());
    assert!(offset_of!(live::SlotHeader, reply_call) == offset_of!(ClientSlotHeader, reply_call));
    assert!(offset_of!(live::SlotHeader, wait) == offset_of!(ClientSlotHeader, wait));
};

/// Splits a request token into (client slot, low 48 bits of the call id).
///
/// # Examples
///
/// ```
/// assert_eq!(shmchan::format::rpc::split_token(7 << 16 | 3), (3, 7));
/// ```
pub fn split_token(token: u64) -> (usize, u64) {
    (
        (token & ((1 << TOKEN_SLOT_BITS) - 1)) as usize,
        token >> TOKEN_SLOT_BITS,
    )
}

/// One registered client: its entry in the client table and its slot's call ids.
///
/// # Examples
///
/// ```
/// use shmchan::format::{mpmc::MpmcHolder, rpc::RpcClient};
/// let c = RpcClient { holder: MpmcHolder::from_entry(0, 42, 0), request_call: 3, reply_call: 2 };
/// assert_eq!(c.pending_call(), Some(3));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcClient {
    /// Its entry in the client table (pid, start time, queue position it is claiming).
    pub holder: MpmcHolder,
    /// Id of its latest call ([`WRITING`] set while the request is being written, [`ABANDONED`]
    /// once the call timed out).
    pub request_call: u64,
    /// Id of the latest call answered (the [`WRITING`] bit set while a reply is written).
    pub reply_call: u64,
}

impl RpcClient {
    /// The id of the call it waits on, if its latest call has no reply yet and has not timed
    /// out.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::{mpmc::MpmcHolder, rpc::RpcClient};
    /// let c = RpcClient { holder: MpmcHolder::from_entry(0, 42, 0), request_call: 3, reply_call: 3 };
    /// assert_eq!(c.pending_call(), None);
    /// ```
    pub fn pending_call(&self) -> Option<u64> {
        let req = self.request_call & !WRITING;
        (req != 0 && req & ABANDONED == 0 && req != self.reply_call & !WRITING).then_some(req)
    }

    /// Whether its latest call timed out (its request, if still queued, will be skipped).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::{mpmc::MpmcHolder, rpc::{ABANDONED, RpcClient}};
    /// let c = RpcClient { holder: MpmcHolder::from_entry(0, 42, 0), request_call: 3 | ABANDONED, reply_call: 2 };
    /// assert!(c.abandoned() && c.pending_call().is_none());
    /// ```
    pub fn abandoned(&self) -> bool {
        self.request_call & ABANDONED != 0
    }
}

/// An rpc channel's state, decoded from its header, its request queue and its client slots.
///
/// # Examples
///
/// ```
/// // A payload of zeros has no rpc magic: an error, not a panic.
/// let seg = shmchan::Segment::anonymous_raw(4096)?;
/// assert!(shmchan::format::rpc::RpcState::read(&seg, seg.header()).is_err());
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcState {
    /// The constant description (validated against the segment header).
    pub meta: RpcMeta,
    /// The counters.
    pub counters: RpcCounters,
    /// The request queue: pending requests (`queued`), recovery counters, and its holders
    /// (producers: the clients; consumers: the server handles).
    pub queue: MpmcState,
    /// The registered clients with their slots' call ids.
    pub clients: Vec<RpcClient>,
}

fn corrupted(what: String) -> Error {
    Error::Corrupted { what }
}

impl RpcState {
    /// The server handles (the request queue's consumers).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Segment, format::rpc::RpcState, rpc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-rpc-servers-{}", std::process::id()))?;
    /// let server = rpc::Server::<u64, u64>::create(key, 8)?;
    /// let seg = Segment::open_any(key, true)?;
    /// assert_eq!(RpcState::read(&seg, seg.header())?.servers().len(), 1);
    /// # drop(server);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn servers(&self) -> &[MpmcHolder] {
        &self.queue.consumers
    }

    /// Decodes the rpc channel of the segment whose header is `h` from `src` (the whole
    /// segment).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the channel has no magic, impossible sizes or offsets, a queue
    /// that does not decode, or lies outside `src`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::rpc::RpcState;
    /// use shmchan::{Key, Segment, rpc};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-rpc-state-{}", std::process::id()))?;
    /// let server = rpc::Server::<u64, u64>::create(key, 8)?;
    /// let client = rpc::Client::<u64, u64>::connect(key)?;
    /// let seg = Segment::open_any(key, true)?;
    /// let st = RpcState::read(&seg, seg.header())?;
    /// assert_eq!((st.meta.capacity, st.clients.len(), st.queue.queued), (8, 1, Some(0)));
    /// # drop((client, server));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read(src: &(impl ByteSource + ?Sized), h: &DecodedHeader) -> Result<RpcState> {
        let base = h.payload_off;
        if QUEUE_OFFSET > h.payload_len {
            return Err(corrupted(format!(
                "a {}-byte payload cannot hold an rpc header",
                h.payload_len
            )));
        }
        let word = |f: usize| src.load_u64(base.saturating_add(f as u64));
        let m = |f: usize| word(offset_of!(RpcHeader, meta) + f);
        let meta = RpcMeta {
            magic: m(offset_of!(RpcMeta, magic))?,
            capacity: m(offset_of!(RpcMeta, capacity))?,
            max_clients: m(offset_of!(RpcMeta, max_clients))?,
            request_fingerprint: m(offset_of!(RpcMeta, request_fingerprint))?,
            response_fingerprint: m(offset_of!(RpcMeta, response_fingerprint))?,
            request_size: m(offset_of!(RpcMeta, request_size))?,
            response_size: m(offset_of!(RpcMeta, response_size))?,
            queue_offset: m(offset_of!(RpcMeta, queue_offset))?,
            queue_len: m(offset_of!(RpcMeta, queue_len))?,
            slots_offset: m(offset_of!(RpcMeta, slots_offset))?,
            slot_stride: m(offset_of!(RpcMeta, slot_stride))?,
            reserved: m(offset_of!(RpcMeta, reserved))?,
        };
        if meta.magic != RPC_MAGIC {
            return Err(corrupted(format!(
                "no rpc magic (found {:#018x}): not initialised or overwritten",
                meta.magic
            )));
        }
        let n = meta.max_clients;
        let slot_min = SLOT_REQUEST_OFFSET
            .saturating_add(meta.request_size)
            .saturating_add(meta.response_size);
        let queue_end = meta.queue_offset.saturating_add(meta.queue_len);
        let cap = meta.capacity;
        if cap < 2 || !cap.is_power_of_two() || (h.capacity != 0 && cap != h.capacity) {
            return Err(corrupted(format!(
                "impossible rpc queue capacity {cap} (the header says {})",
                h.capacity
            )));
        }
        if n == 0
            || n > MAX_HOLDERS_LIMIT
            || meta.queue_offset != QUEUE_OFFSET
            || meta.slots_offset < queue_end
            || meta.slot_stride < slot_min
            || meta.request_size < h.type_size
            || meta
                .slots_offset
                .checked_add(n.saturating_mul(meta.slot_stride))
                .is_none_or(|end| end > h.payload_len)
        {
            return Err(corrupted(format!(
                "impossible rpc geometry: {n} client slots of {} bytes at {}, queue of {} bytes at {}, in a {}-byte payload",
                meta.slot_stride,
                meta.slots_offset,
                meta.queue_len,
                meta.queue_offset,
                h.payload_len
            )));
        }
        let queue_header = DecodedHeader {
            payload_off: base.saturating_add(meta.queue_offset),
            payload_len: meta.queue_len,
            type_size: 8,
            capacity: meta.capacity,
            ..h.clone()
        };
        let queue = MpmcState::read(src, &queue_header)?;
        if queue.meta.max_holders != n {
            return Err(corrupted(format!(
                "the rpc request queue has {} client entries, the channel {n}",
                queue.meta.max_holders
            )));
        }
        let c = |f: usize| word(offset_of!(RpcHeader, counters) + f);
        let counters = RpcCounters {
            stale_requests: c(offset_of!(RpcCounters, stale_requests))?,
            dropped_replies: c(offset_of!(RpcCounters, dropped_replies))?,
        };
        let mut clients = Vec::new();
        for holder in &queue.producers {
            // `index < n`: the queue decoder only returns entries of its n-entry table.
            let slot = base
                .saturating_add(meta.slots_offset)
                .saturating_add(holder.index as u64 * meta.slot_stride);
            let f = |o: usize| src.load_u64(slot.saturating_add(o as u64));
            clients.push(RpcClient {
                holder: *holder,
                request_call: f(offset_of!(ClientSlotHeader, request_call))?,
                reply_call: f(offset_of!(ClientSlotHeader, reply_call))?,
            });
        }
        Ok(RpcState {
            meta,
            counters,
            queue,
            clients,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ByteSource, HeaderState, header, layout as layout_codec};
    use crate::{LockKind, SegmentKind, ShmSafe};

    fn header_for(payload_len: u64, capacity: u64) -> DecodedHeader {
        DecodedHeader {
            version: header::VERSION,
            kind: SegmentKind::Rpc,
            lock_kind: LockKind::None,
            state: HeaderState::Ready,
            remove_when_unused: false,
            creator_pid: 1,
            creator_start_time: 1,
            fingerprint: <u64>::FINGERPRINT,
            type_size: 8,
            type_align: 8,
            payload_off: 256,
            payload_len,
            total_len: 256 + payload_len,
            type_name: "u64".into(),
            layout: layout_codec::decode(&layout_codec::encode(&<u64>::LAYOUT)).expect("layout"),
            lock_path: None,
            capacity,
        }
    }

    /// A well-formed channel of `u64` requests and responses built by the library's own
    /// initialiser (8-slot queue, 4 clients), as bytes at payload offset 256.
    fn valid() -> (Vec<u8>, DecodedHeader) {
        let g = crate::rpc::layout::RpcGeometry::for_types::<u64, u64>(8, 4).expect("geometry");
        let len = g.total_len().expect("fits");
        let mut words = vec![0u64; (256 + len) / 8 + 16];
        let base = words.as_mut_ptr().cast::<u8>();
        let off = (base as usize).next_multiple_of(128) - base as usize;
        // SAFETY: `off + 256 + len` bytes lie inside `words` (16 spare words cover the
        // alignment), the start is 128-aligned, and nothing else uses the buffer.
        unsafe { g.init(base.add(off + 256)) };
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        (
            bytes[off..off + 256 + len].to_vec(),
            header_for(len as u64, 8),
        )
    }

    fn put(b: &mut [u8], at: u64, v: u64) {
        let at = at as usize;
        b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }

    #[test]
    fn a_valid_channel_decodes_its_clients_and_queue() {
        let (mut b, h) = valid();
        let st = RpcState::read(&b, &h).expect("decodes");
        assert_eq!((st.meta.capacity, st.meta.max_clients), (8, 4));
        assert!(st.clients.is_empty());
        // Register client 2 in the producer table (owner word) and give it a pending call.
        let producers = 256 + QUEUE_OFFSET + st.queue.meta.producers_offset;
        put(&mut b, producers + 2 * 32, 42 | (7 << 32));
        let slot = 256 + st.meta.slots_offset + 2 * st.meta.slot_stride;
        put(&mut b, slot, 5);
        put(&mut b, slot + 8, 4);
        put(&mut b, 256 + 128, 9); // stale requests
        let st = RpcState::read(&b, &h).expect("decodes");
        assert_eq!(st.clients.len(), 1);
        assert_eq!(st.clients[0].holder.index, 2);
        assert_eq!(st.clients[0].holder.pid, 42);
        assert_eq!(st.clients[0].pending_call(), Some(5));
        assert_eq!(st.counters.stale_requests, 9);
    }

    #[test]
    fn hostile_geometry_is_an_error() {
        // Meta words: capacity, max clients, sizes, offsets, stride.
        for (field, value) in [
            (8, 0),
            (8, 3),
            (16, 0),
            (16, u64::MAX),
            (40, 0),
            (56, 0),
            (64, u64::MAX),
            (72, 0),
            (72, u64::MAX - 5),
            (80, 1),
            (80, u64::MAX),
        ] {
            let (mut b, h) = valid();
            put(&mut b, 256 + field, value);
            assert!(RpcState::read(&b, &h).is_err(), "meta +{field} = {value}");
        }
        let (b, h) = valid();
        assert!(RpcState::read(&b[..700], &h).is_err());
        assert!(b.as_slice().len_bytes() > 700);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2000 {
            let (mut b, h) = valid();
            let keep_meta = round % 2 == 0;
            for (i, byte) in b.iter_mut().enumerate().skip(256) {
                let in_meta = i < 256 + 96 || (512..512 + 64).contains(&i);
                if (!(keep_meta && in_meta) || next() % 16 == 0) && (next() % 4 == 0 || !keep_meta)
                {
                    *byte = next() as u8;
                }
            }
            if let Ok(st) = RpcState::read(&b, &h) {
                assert!(st.clients.len() as u64 <= st.meta.max_clients);
                assert!(st.queue.queued.is_none_or(|q| q <= st.queue.meta.capacity));
                for c in &st.clients {
                    let _ = c.pending_call();
                }
            }
        }
    }
}
