//! A broadcast channel's payload: the header, the publisher's holder entries, the subscriber
//! table, then the slots.
//!
//! ```text
//!    0  meta         magic "SHMBCST2", capacity, slot size, slots offset, message fingerprint,
//!                    max subscribers, subscriber table offset, overflow mode (constant)
//!  128  tail         u64: the publisher's cursor, the next position it publishes
//!  256  counters     missed u64 (messages subscribers were told they lost), publisher and
//!                    subscriber departures u32 (bumped when a handle leaves), publisher and
//!                    subscriber attached u32 (1 once a handle registered)
//!  384  sub_wait     u32: the subscribers' futex word (1 while one may be asleep)
//!  512  pub_wait     u32: the publisher's futex word
//!  640  publisher    PUBLISHER_ENTRIES (4) x HolderEntry (see `format::mpmc`): the publisher,
//!                    then the successors a `fork` reserved for the child's copy
//!  768  subscribers  max_subscribers x SubscriberEntry { owner, intent (0), start time, cursor }
//!   ..  slots        capacity x { stamp u64, value: the message as 8-byte words }, at the slots
//!                    offset (a multiple of 128)
//! ```
//!
//! Position `p` lives in slot `p % capacity`. Its stamp is `p + 1` once the slot holds
//! message `p` completely, `(p + 1) | WRITING` while the publisher writes it or has it on
//! loan (also after a loan dropped unsent, until the next write; 0: never written).
//! A subscriber copies a slot's words between two reads of the stamp; a stamp that changed, or
//! that names another position, means the publisher lapped it there (in `DropOldest` mode).
//!
//! Publisher entry 0 is the publisher: the one handle that may write. Entries 1 to 3 are
//! *successors*: a forked child's copy of the publisher, reserved by the parent before `fork`
//! returns. A successor cannot publish; it keeps the subscribers connected (it is a live
//! publisher handle), and takes entry 0 with a compare-and-swap on its first send once entry
//! 0 is free or its holder is dead. (Version 1, `SHMBCST1`, had entry 0 alone, and the
//! subscriber table at 672.)
//!
//! A subscriber entry's `owner` word is that of an mpmc holder entry (pid, low 32 bits of the
//! start time, the reservation bit of a fork); its `cursor` is `c + 1` where `c` is the next
//! position the subscriber will read, 0 while it has not joined. In `Block` mode the publisher
//! never publishes position `c + capacity` while such a cursor is registered and its holder
//! lives.

use super::DecodedHeader;
use super::liveness::Liveness;
use super::mpmc::{HolderEntry, MpmcHolder};
use super::ring::Line;
use super::source::ByteSource;
use crate::error::{Error, Result};
use core::mem::{offset_of, size_of};

/// `b"SHMBCST2"` (little-endian word): marks an initialised broadcast channel of this format.
pub const BROADCAST_MAGIC: u64 = u64::from_le_bytes(*b"SHMBCST2");

/// Publisher holder entries: the publisher (entry 0), then its fork successors.
pub const PUBLISHER_ENTRIES: u64 = 4;

/// Set in a slot's stamp while the publisher writes it or has it on loan.
pub const WRITING: u64 = 1 << 63;

/// The most subscribers a channel may have room for.
pub const MAX_SUBSCRIBERS_LIMIT: u64 = 4096;

/// The largest capacity (messages).
pub const MAX_CAPACITY: u64 = 1 << 32;

/// Offset of a slot's message words from the slot's start (after the stamp).
pub const SLOT_VALUE_OFFSET: u64 = 8;

/// `overflow` value: the publisher waits for the slowest live subscriber.
pub const OVERFLOW_BLOCK: u64 = 0;
/// `overflow` value: the publisher overwrites the oldest message; laggards are told.
pub const OVERFLOW_DROP_OLDEST: u64 = 1;

/// The channel's constant description, written once by the creator.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::broadcast::BroadcastMeta>(), 64);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BroadcastMeta {
    /// [`BROADCAST_MAGIC`].
    pub magic: u64,
    /// Slots (a power of two, at least 2).
    pub capacity: u64,
    /// Bytes per slot: 8 (the stamp) plus the message rounded up to 8 bytes.
    pub slot_size: u64,
    /// Offset of slot 0 from the payload's start.
    pub slots_offset: u64,
    /// `ShmSafe::FINGERPRINT` of the message type.
    pub fingerprint: u64,
    /// Entries in the subscriber table.
    pub max_subscribers: u64,
    /// Offset of the subscriber table.
    pub subscribers_offset: u64,
    /// [`OVERFLOW_BLOCK`] or [`OVERFLOW_DROP_OLDEST`].
    pub overflow: u64,
}

/// The counters line.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::broadcast::BroadcastCounters>(), 24);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BroadcastCounters {
    /// Messages subscribers missed (reported to them as `Lagged`), summed over subscribers.
    pub missed: u64,
    /// Bumped each time the publisher handle leaves.
    pub publisher_departed: u32,
    /// Bumped each time a subscriber handle leaves.
    pub subscribers_departed: u32,
    /// 1 once the publisher registered.
    pub publisher_attached: u32,
    /// 1 once any subscriber registered.
    pub subscribers_attached: u32,
}

/// The fixed part of the channel header.
///
/// # Examples
///
/// ```
/// use shmchan::format::broadcast::BroadcastHeader;
/// assert_eq!(std::mem::offset_of!(BroadcastHeader, tail), 128);
/// assert_eq!(size_of::<BroadcastHeader>(), 640);
/// ```
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct BroadcastHeader {
    /// Constant description.
    pub meta: Line<BroadcastMeta>,
    /// The publisher's cursor.
    pub tail: Line<u64>,
    /// Counters and per-side flags.
    pub counters: Line<BroadcastCounters>,
    /// The subscribers' futex word.
    pub sub_wait: Line<u32>,
    /// The publisher's futex word.
    pub pub_wait: Line<u32>,
}

/// One entry of the subscriber table as stored (the layout of an mpmc holder entry whose last
/// word is the subscriber's cursor).
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::broadcast::SubscriberEntry>(), 32);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SubscriberEntry {
    /// pid (low 32 bits; 0 = free) and low 32 bits of its start time (high 32 bits).
    pub owner: u64,
    /// Unused (0).
    pub intent: u64,
    /// The holder's full start time (clock ticks since boot; 0 if unknown), for tools.
    pub start_time: u64,
    /// `c + 1`, `c` the next position the subscriber reads; 0 while it has not joined.
    pub cursor: u64,
}

/// Offset of the publisher's holder entries from the payload's start.
pub const PUBLISHER_OFFSET: u64 = size_of::<BroadcastHeader>() as u64;

/// Offset of the subscriber table from the payload's start.
pub const SUBSCRIBERS_OFFSET: u64 =
    PUBLISHER_OFFSET + PUBLISHER_ENTRIES * size_of::<HolderEntry>() as u64;

const _: () = {
    assert!(offset_of!(BroadcastHeader, tail) == 128);
    assert!(offset_of!(BroadcastHeader, counters) == 256);
    assert!(offset_of!(BroadcastHeader, sub_wait) == 384);
    assert!(offset_of!(BroadcastHeader, pub_wait) == 512);
    assert!(size_of::<BroadcastHeader>() == 640);
    assert!(size_of::<BroadcastMeta>() == 64);
    assert!(offset_of!(BroadcastMeta, overflow) == 56);
    assert!(offset_of!(BroadcastCounters, publisher_departed) == 8);
    assert!(offset_of!(BroadcastCounters, subscribers_departed) == 12);
    assert!(offset_of!(BroadcastCounters, publisher_attached) == 16);
    assert!(offset_of!(BroadcastCounters, subscribers_attached) == 20);
    assert!(size_of::<SubscriberEntry>() == size_of::<HolderEntry>());
    assert!(offset_of!(SubscriberEntry, intent) == offset_of!(HolderEntry, intent));
    assert!(offset_of!(SubscriberEntry, start_time) == offset_of!(HolderEntry, start_time));
    assert!(offset_of!(SubscriberEntry, cursor) == offset_of!(HolderEntry, reserved));
    assert!(PUBLISHER_OFFSET == 640);
    assert!(SUBSCRIBERS_OFFSET == 768);
    // The library's atomic header is this layout.
    use crate::broadcast::layout as live;
    assert!(size_of::<live::BroadcastHeader>() == size_of::<BroadcastHeader>());
    assert!(offset_of!(live::BroadcastHeader, tail) == offset_of!(BroadcastHeader, tail));
    assert!(offset_of!(live::BroadcastHeader, counters) == offset_of!(BroadcastHeader, counters));
    assert!(offset_of!(live::BroadcastHeader, sub_wait) == offset_of!(BroadcastHeader, sub_wait));
    assert!(offset_of!(live::BroadcastHeader, pub_wait) == offset_of!(BroadcastHeader, pub_wait));
    assert!(size_of::<live::Meta>() == size_of::<BroadcastMeta>());
    assert!(offset_of!(live::Meta, overflow) == offset_of!(BroadcastMeta, overflow));
    assert!(
        offset_of!(live::Meta, subscribers_offset) == offset_of!(BroadcastMeta, subscribers_offset)
    );
    assert!(size_of::<live::Counters>() == size_of::<BroadcastCounters>());
    assert!(
        offset_of!(live::Counters, publisher_attached)
            == offset_of!(BroadcastCounters, publisher_attached)
    );
    assert!(
        offset_of!(live::Counters, subscribers_departed)
            == offset_of!(BroadcastCounters, subscribers_departed)
    );
};

/// A registered subscriber, as decoded.
///
/// # Examples
///
/// ```
/// use shmchan::format::broadcast::BroadcastSubscriber;
/// let s = BroadcastSubscriber::from_entry(2, std::process::id() as u64, 8, 10);
/// assert_eq!((s.holder.pid, s.cursor, s.lag), (std::process::id(), Some(7), Some(3)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastSubscriber {
    /// Its entry, pid and start time (as for an mpmc holder; `holding` is always `None`).
    pub holder: MpmcHolder,
    /// Its full start time as recorded (clock ticks since boot; 0 if unknown or not yet
    /// filled in after a fork).
    pub start_time: u64,
    /// The next position it reads, `None` while it has not joined.
    pub cursor: Option<u64>,
    /// Messages published that it has not read yet (`tail - cursor`), `None` if it has not
    /// joined or its cursor is ahead of the publisher (impossible on a sound channel).
    pub lag: Option<u64>,
}

impl BroadcastSubscriber {
    /// Decodes entry `index` from its `owner` and `cursor` words, given the publisher's `tail`
    /// (`start_time` is left 0: [`BroadcastState::read`] fills it in).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::broadcast::BroadcastSubscriber;
    /// assert_eq!(BroadcastSubscriber::from_entry(0, 5, 0, 9).cursor, None);
    /// assert_eq!(BroadcastSubscriber::from_entry(0, 5, 20, 9).lag, None);
    /// ```
    pub fn from_entry(index: usize, owner: u64, cursor: u64, tail: u64) -> BroadcastSubscriber {
        let cursor = cursor.checked_sub(1);
        BroadcastSubscriber {
            holder: MpmcHolder::from_entry(index, owner, 0),
            start_time: 0,
            cursor,
            lag: cursor.and_then(|c| tail.checked_sub(c)),
        }
    }

    /// Whether it still runs (reads `/proc`; a fork reservation counts as alive).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::{broadcast::BroadcastSubscriber, liveness::Liveness};
    /// let s = BroadcastSubscriber::from_entry(0, std::process::id() as u64, 1, 0);
    /// assert_eq!(s.liveness(), Liveness::Alive);
    /// ```
    pub fn liveness(&self) -> Liveness {
        self.holder.liveness()
    }
}

/// A broadcast channel's state, decoded from its header and tables.
///
/// # Examples
///
/// ```
/// // A payload of zeros has no broadcast magic: an error, not a panic.
/// let seg = shmchan::Segment::anonymous_raw(4096)?;
/// assert!(shmchan::format::broadcast::BroadcastState::read(&seg, seg.header()).is_err());
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastState {
    /// The constant description (validated against the segment header).
    pub meta: BroadcastMeta,
    /// The publisher's cursor (messages published so far).
    pub tail: u64,
    /// Whether the publisher overwrites the oldest message instead of waiting.
    pub drop_oldest: bool,
    /// Messages subscribers were told they missed.
    pub missed: u64,
    /// The publisher has registered (at creation).
    pub publisher_attached: bool,
    /// Some subscriber has registered.
    pub subscribers_attached: bool,
    /// The publisher's holder entry (entry 0), if registered.
    pub publisher: Option<MpmcHolder>,
    /// The registered successors (entries 1 to 3): forked copies of the publisher, which take
    /// its place once it is gone.
    pub successors: Vec<MpmcHolder>,
    /// The registered subscribers (free entries left out).
    pub subscribers: Vec<BroadcastSubscriber>,
}

fn corrupted(what: String) -> Error {
    Error::Corrupted { what }
}

impl BroadcastState {
    /// Decodes the channel of the broadcast segment whose header is `h` from `src` (the whole
    /// segment).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the channel has no magic, an impossible capacity, table size or
    /// overflow mode, slots outside the payload, or lies outside `src`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::broadcast::BroadcastState;
    /// use shmchan::{Key, Segment, broadcast};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-bc-state-{}", std::process::id()))?;
    /// let tx = broadcast::Publisher::<u64>::create(key, 8)?;
    /// let rx = broadcast::Subscriber::<u64>::open(key)?;
    /// tx.send(5)?;
    /// let seg = Segment::open_any(key, true)?;
    /// let st = BroadcastState::read(&seg, seg.header())?;
    /// assert_eq!((st.meta.capacity, st.tail), (8, 1));
    /// assert_eq!(st.subscribers[0].lag, Some(1));
    /// # drop(rx);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read(src: &(impl ByteSource + ?Sized), h: &DecodedHeader) -> Result<BroadcastState> {
        let base = h.payload_off;
        if SUBSCRIBERS_OFFSET > h.payload_len {
            return Err(corrupted(format!(
                "a {}-byte payload cannot hold a broadcast header",
                h.payload_len
            )));
        }
        let word = |f: u64| src.load_u64(base.saturating_add(f));
        let m = |f: usize| word((offset_of!(BroadcastHeader, meta) + f) as u64);
        let meta = BroadcastMeta {
            magic: m(offset_of!(BroadcastMeta, magic))?,
            capacity: m(offset_of!(BroadcastMeta, capacity))?,
            slot_size: m(offset_of!(BroadcastMeta, slot_size))?,
            slots_offset: m(offset_of!(BroadcastMeta, slots_offset))?,
            fingerprint: m(offset_of!(BroadcastMeta, fingerprint))?,
            max_subscribers: m(offset_of!(BroadcastMeta, max_subscribers))?,
            subscribers_offset: m(offset_of!(BroadcastMeta, subscribers_offset))?,
            overflow: m(offset_of!(BroadcastMeta, overflow))?,
        };
        if meta.magic != BROADCAST_MAGIC {
            return Err(corrupted(format!(
                "no broadcast magic (found {:#018x}): not initialised or overwritten",
                meta.magic
            )));
        }
        let cap = meta.capacity;
        if cap < 2
            || !cap.is_power_of_two()
            || cap > MAX_CAPACITY
            || (h.capacity != 0 && cap != h.capacity)
        {
            return Err(corrupted(format!(
                "impossible broadcast capacity {cap} (the header says {})",
                h.capacity
            )));
        }
        let n = meta.max_subscribers;
        let table = n.saturating_mul(size_of::<SubscriberEntry>() as u64);
        if n == 0
            || n > MAX_SUBSCRIBERS_LIMIT
            || meta.subscribers_offset != SUBSCRIBERS_OFFSET
            || meta.slots_offset < SUBSCRIBERS_OFFSET + table
        {
            return Err(corrupted(format!(
                "impossible broadcast subscriber table: {n} entries at {}, slots at {}",
                meta.subscribers_offset, meta.slots_offset
            )));
        }
        if meta.overflow > OVERFLOW_DROP_OLDEST {
            return Err(corrupted(format!(
                "unknown broadcast overflow mode {}",
                meta.overflow
            )));
        }
        if meta.slot_size < SLOT_VALUE_OFFSET.saturating_add(h.type_size)
            || meta
                .slots_offset
                .checked_add(cap.saturating_mul(meta.slot_size))
                .is_none_or(|end| end > h.payload_len)
        {
            return Err(corrupted(format!(
                "slots ({cap} x {} bytes at {}) do not fit the {}-byte payload or the {}-byte message",
                meta.slot_size, meta.slots_offset, h.payload_len, h.type_size
            )));
        }
        let tail = word(offset_of!(BroadcastHeader, tail) as u64)?;
        let counters = offset_of!(BroadcastHeader, counters);
        let mut flags = [0u8; 16];
        src.read_at(
            base.saturating_add(
                (counters + offset_of!(BroadcastCounters, publisher_departed)) as u64,
            ),
            &mut flags,
        )?;
        let flag = |i: usize| flags[i..i + 4] != [0; 4];
        let entry = |at: u64, f: usize| word(at.saturating_add(f as u64));
        let mut publisher = None;
        let mut successors = Vec::new();
        for i in 0..PUBLISHER_ENTRIES {
            let at = PUBLISHER_OFFSET + i * size_of::<HolderEntry>() as u64;
            let owner = entry(at, offset_of!(HolderEntry, owner))?;
            if owner as u32 == 0 {
                continue;
            }
            let holder = MpmcHolder::from_entry(i as usize, owner, 0);
            if i == 0 {
                publisher = Some(holder);
            } else {
                successors.push(holder);
            }
        }
        let mut subscribers = Vec::new();
        for i in 0..n {
            // Inside the payload: checked against `slots_offset` above.
            let at = SUBSCRIBERS_OFFSET + i * size_of::<SubscriberEntry>() as u64;
            let owner = entry(at, offset_of!(SubscriberEntry, owner))?;
            if owner as u32 == 0 {
                continue;
            }
            let cursor = entry(at, offset_of!(SubscriberEntry, cursor))?;
            let mut s = BroadcastSubscriber::from_entry(i as usize, owner, cursor, tail);
            s.start_time = entry(at, offset_of!(SubscriberEntry, start_time))?;
            subscribers.push(s);
        }
        Ok(BroadcastState {
            meta,
            tail,
            drop_oldest: meta.overflow == OVERFLOW_DROP_OLDEST,
            missed: word((counters + offset_of!(BroadcastCounters, missed)) as u64)?,
            publisher_attached: flag(8),
            subscribers_attached: flag(12),
            publisher,
            successors,
            subscribers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::layout as layout_codec;
    use crate::format::{HeaderState, header};
    use crate::{LockKind, SegmentKind, ShmSafe};

    fn header_for(payload_len: u64, capacity: u64) -> DecodedHeader {
        DecodedHeader {
            version: header::VERSION,
            kind: SegmentKind::Broadcast,
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

    fn put(b: &mut [u8], at: u64, v: u64) {
        let at = at as usize;
        b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }

    /// A well-formed 8-slot, 4-subscriber channel of `u64` at offset 256.
    fn valid() -> (Vec<u8>, DecodedHeader) {
        let n = 4u64;
        let slots = (SUBSCRIBERS_OFFSET + n * 32).next_multiple_of(128);
        let len = slots + 8 * 16;
        let mut b = vec![0u8; (256 + len) as usize];
        let meta = [BROADCAST_MAGIC, 8, 16, slots, 0, n, SUBSCRIBERS_OFFSET, 0];
        for (i, w) in meta.iter().enumerate() {
            put(&mut b, 256 + i as u64 * 8, *w);
        }
        (b, header_for(len, 8))
    }

    #[test]
    fn a_valid_channel_decodes_its_cursors_lag_and_holders() {
        let (mut b, h) = valid();
        put(&mut b, 256 + 128, 9); // tail
        put(&mut b, 256 + 256, 4); // missed
        put(&mut b, 256 + 256 + 16, 1 | (1 << 32)); // both attached
        put(&mut b, 256 + PUBLISHER_OFFSET, 77);
        put(&mut b, 256 + PUBLISHER_OFFSET + 2 * 32, 78); // a fork successor
        let e1 = 256 + SUBSCRIBERS_OFFSET + 32;
        put(&mut b, e1, 42 | (7 << 32));
        put(&mut b, e1 + 16, 1234); // start time
        put(&mut b, e1 + 24, 7); // next position 6: lag 3
        let e3 = 256 + SUBSCRIBERS_OFFSET + 3 * 32;
        put(&mut b, e3, 43); // registered, not joined
        let st = BroadcastState::read(&b, &h).expect("decodes");
        assert_eq!((st.tail, st.missed, st.drop_oldest), (9, 4, false));
        assert!(st.publisher_attached && st.subscribers_attached);
        assert_eq!(st.publisher.map(|p| p.pid), Some(77));
        assert_eq!(
            st.successors
                .iter()
                .map(|p| (p.index, p.pid))
                .collect::<Vec<_>>(),
            [(2, 78)]
        );
        assert_eq!(st.subscribers.len(), 2);
        let s = st.subscribers[0];
        assert_eq!(
            (s.holder.index, s.holder.pid, s.cursor, s.lag),
            (1, 42, Some(6), Some(3))
        );
        assert_eq!(s.start_time, 1234);
        assert_eq!(
            (st.subscribers[1].cursor, st.subscribers[1].lag),
            (None, None)
        );
    }

    #[test]
    fn hostile_meta_fields_are_errors() {
        for (field, value) in [
            (0u64, 0u64),
            (1, 0),
            (1, 3),
            (1, u64::MAX),
            (2, 8),
            (3, 0),
            (3, u64::MAX - 3),
            (5, 0),
            (5, u64::MAX),
            (6, 0),
            (7, 2),
        ] {
            let (mut b, h) = valid();
            put(&mut b, 256 + field * 8, value);
            assert!(
                BroadcastState::read(&b, &h).is_err(),
                "field {field} = {value}"
            );
        }
        let (b, h) = valid();
        assert!(BroadcastState::read(&b[..700], &h).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let (mut b, h) = valid();
            let keep_meta = round % 2 == 0;
            for (i, byte) in b.iter_mut().enumerate().skip(256) {
                if !(keep_meta && i < 256 + 64) || next() % 16 == 0 {
                    *byte = next() as u8;
                }
            }
            if round % 3 == 0 {
                put(&mut b, 256, BROADCAST_MAGIC);
            }
            if let Ok(st) = BroadcastState::read(&b, &h) {
                assert!(st.subscribers.len() as u64 <= st.meta.max_subscribers);
                for s in &st.subscribers {
                    assert!(s.lag.is_none_or(|l| l <= st.tail));
                    let _ = s.liveness();
                }
            }
        }
    }
}
