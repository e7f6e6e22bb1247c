//! An mpmc queue's payload: the queue header, a producer table and a consumer table of holder
//! entries, then the slots.
//!
//! ```text
//!    0  meta       magic "SHMMPMC1", capacity, slot size, slots offset, message fingerprint,
//!                  max holders, producer table offset, consumer table offset (constant)
//!  128  tail       u64: the next position a producer claims (CAS by producers)
//!  256  head       u64: the next position a consumer claims (CAS by consumers)
//!  384  counters   recovered u64, lost u64, producer/consumer departures u32 (bumped when a
//!                  handle drops), producer/consumer attached u32 (1 once a handle registered)
//!  512  rx_wait    u32: the consumers' futex word (1 while one may be asleep)
//!  640  tx_wait    u32: the producers' futex word
//!  768  producers  max_holders x HolderEntry { owner u64, intent u64, start time u64, unused }
//!   ..  consumers  max_holders x HolderEntry
//!   ..  slots      capacity x { seq u64, value: the message as 8-byte words }, at the slots
//!                  offset (a multiple of 128)
//! ```
//!
//! Slot `i` starts with `seq = i`. Position `p` lives in slot `p % capacity`: a producer may
//! write it when `seq == p`, publishes it with `seq = p + 1`; a consumer may read it when
//! `seq == p + 1` and releases it with `seq = p + capacity`. A `seq` with [`SKIP`] set
//! (`(p + 1) | SKIP`) marks a slot whose producer died between claiming and publishing: the
//! consumer that takes it releases it without a message.
//!
//! A holder entry's `owner` word packs the holder's pid (low 32 bits, 0 = free entry, bit 31 =
//! a reservation a parent made for a child it is forking) and the low 32 bits of its start time
//! (high 32 bits; for a reservation, the wall-clock milliseconds when it was made). `intent` is
//! `p + 1` while the holder claims or holds position `p`, 0 otherwise.

use super::DecodedHeader;
use super::liveness::Liveness;
use super::ring::Line;
use super::source::ByteSource;
use crate::error::{Error, Result};
use core::mem::{offset_of, size_of};

/// `b"SHMMPMC1"` (little-endian word): marks an initialised mpmc queue.
pub const MPMC_MAGIC: u64 = u64::from_le_bytes(*b"SHMMPMC1");

/// Set in a slot's `seq`: the slot was skipped (its producer died before publishing).
pub const SKIP: u64 = 1 << 63;

/// Set in the pid half of a holder's `owner` word: a reservation for a child being forked.
pub const RESERVED: u32 = 1 << 31;

/// The most holder entries a table may have.
pub const MAX_HOLDERS_LIMIT: u64 = 4096;

/// The largest capacity (messages).
pub const MAX_CAPACITY: u64 = 1 << 32;

/// Offset of a slot's message words from the slot's start.
pub const SLOT_VALUE_OFFSET: u64 = 8;

/// The queue's constant description, written once by the creator.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::mpmc::MpmcMeta>(), 64);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MpmcMeta {
    /// [`MPMC_MAGIC`].
    pub magic: u64,
    /// Slots (a power of two, at least 2).
    pub capacity: u64,
    /// Bytes per slot: 8 (`seq`) plus the message rounded up to 8 bytes.
    pub slot_size: u64,
    /// Offset of slot 0 from the payload's start.
    pub slots_offset: u64,
    /// `ShmSafe::FINGERPRINT` of the message type.
    pub fingerprint: u64,
    /// Entries per holder table.
    pub max_holders: u64,
    /// Offset of the producer table.
    pub producers_offset: u64,
    /// Offset of the consumer table.
    pub consumers_offset: u64,
}

/// The counters line.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::mpmc::MpmcCounters>(), 32);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MpmcCounters {
    /// Slots skipped because their producer died between claiming and publishing.
    pub recovered: u64,
    /// Messages lost because their consumer died between claiming and releasing them.
    pub lost: u64,
    /// Bumped each time a producer handle leaves.
    pub producers_departed: u32,
    /// Bumped each time a consumer handle leaves.
    pub consumers_departed: u32,
    /// 1 once any producer registered.
    pub producers_attached: u32,
    /// 1 once any consumer registered.
    pub consumers_attached: u32,
}

/// The fixed part of the queue header.
///
/// # Examples
///
/// ```
/// use shmchan::format::mpmc::MpmcHeader;
/// assert_eq!(std::mem::offset_of!(MpmcHeader, head), 256);
/// assert_eq!(size_of::<MpmcHeader>(), 768);
/// ```
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct MpmcHeader {
    /// Constant description.
    pub meta: Line<MpmcMeta>,
    /// The producers' claim index.
    pub tail: Line<u64>,
    /// The consumers' claim index.
    pub head: Line<u64>,
    /// Recovery counters and per-side flags.
    pub counters: Line<MpmcCounters>,
    /// The consumers' futex word.
    pub rx_wait: Line<u32>,
    /// The producers' futex word.
    pub tx_wait: Line<u32>,
}

/// One entry of a holder table as stored.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::mpmc::HolderEntry>(), 32);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HolderEntry {
    /// pid (low 32 bits; 0 = free) and low 32 bits of its start time (high 32 bits).
    pub owner: u64,
    /// `position + 1` while the holder claims or holds that position, else 0.
    pub intent: u64,
    /// The holder's full start time (clock ticks since boot; 0 if unknown), for tools.
    pub start_time: u64,
    /// Unused.
    pub reserved: u64,
}

const _: () = {
    assert!(offset_of!(MpmcHeader, tail) == 128);
    assert!(offset_of!(MpmcHeader, head) == 256);
    assert!(offset_of!(MpmcHeader, counters) == 384);
    assert!(offset_of!(MpmcHeader, rx_wait) == 512);
    assert!(offset_of!(MpmcHeader, tx_wait) == 640);
    assert!(size_of::<MpmcHeader>() == 768);
    assert!(size_of::<MpmcMeta>() == 64);
    assert!(offset_of!(MpmcCounters, lost) == 8);
    assert!(offset_of!(MpmcCounters, producers_departed) == 16);
    assert!(offset_of!(MpmcCounters, consumers_departed) == 20);
    assert!(offset_of!(MpmcCounters, producers_attached) == 24);
    assert!(offset_of!(MpmcCounters, consumers_attached) == 28);
    assert!(offset_of!(HolderEntry, intent) == 8);
    assert!(offset_of!(HolderEntry, start_time) == 16);
    assert!(size_of::<HolderEntry>() == 32);
    // The library's atomic header is this layout.
    use crate::mpmc::layout as live;
    assert!(size_of::<live::MpmcHeader>() == size_of::<MpmcHeader>());
    assert!(offset_of!(live::MpmcHeader, tail) == offset_of!(MpmcHeader, tail));
    assert!(offset_of!(live::MpmcHeader, head) == offset_of!(MpmcHeader, head));
    assert!(offset_of!(live::MpmcHeader, counters) == offset_of!(MpmcHeader, counters));
    assert!(offset_of!(live::MpmcHeader, rx_wait) == offset_of!(MpmcHeader, rx_wait));
    assert!(offset_of!(live::MpmcHeader, tx_wait) == offset_of!(MpmcHeader, tx_wait));
    assert!(size_of::<live::Meta>() == size_of::<MpmcMeta>());
    assert!(offset_of!(live::Meta, max_holders) == offset_of!(MpmcMeta, max_holders));
    assert!(offset_of!(live::Meta, consumers_offset) == offset_of!(MpmcMeta, consumers_offset));
    assert!(size_of::<live::Counters>() == size_of::<MpmcCounters>());
    assert!(offset_of!(live::Counters, lost) == offset_of!(MpmcCounters, lost));
    assert!(
        offset_of!(live::Counters, consumers_attached)
            == offset_of!(MpmcCounters, consumers_attached)
    );
    assert!(size_of::<live::Entry>() == size_of::<HolderEntry>());
    assert!(offset_of!(live::Entry, intent) == offset_of!(HolderEntry, intent));
    assert!(offset_of!(live::Entry, start_time) == offset_of!(HolderEntry, start_time));
};

/// Splits an `owner` word into (pid, low 32 bits of the start time or reservation time).
///
/// # Examples
///
/// ```
/// assert_eq!(shmchan::format::mpmc::split_owner(7 | (9 << 32)), (7, 9));
/// ```
pub fn split_owner(owner: u64) -> (u32, u32) {
    (owner as u32, (owner >> 32) as u32)
}

/// A registered holder of one side of the queue.
///
/// # Examples
///
/// ```
/// use shmchan::format::mpmc::MpmcHolder;
/// let h = MpmcHolder::from_entry(3, std::process::id() as u64, 5);
/// assert_eq!((h.index, h.pid, h.holding), (3, std::process::id(), Some(4)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MpmcHolder {
    /// Its entry in the table.
    pub index: usize,
    /// Its pid (without the reservation bit).
    pub pid: u32,
    /// Low 32 bits of its start time (0: unknown); for a reservation, the wall-clock
    /// milliseconds (low 32 bits) when it was made.
    pub start_low32: u32,
    /// A reservation a parent made for a child it is forking.
    pub reservation: bool,
    /// The position it claims or holds, if any.
    pub holding: Option<u64>,
}

impl MpmcHolder {
    /// Decodes entry `index` from its `owner` and `intent` words.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::mpmc::{MpmcHolder, RESERVED};
    /// assert!(MpmcHolder::from_entry(0, u64::from(RESERVED | 12), 0).reservation);
    /// ```
    pub fn from_entry(index: usize, owner: u64, intent: u64) -> MpmcHolder {
        let (pid, start_low32) = split_owner(owner);
        MpmcHolder {
            index,
            pid: pid & !RESERVED,
            start_low32,
            reservation: pid & RESERVED != 0,
            holding: intent.checked_sub(1),
        }
    }

    /// Whether it still runs (reads `/proc`; a reservation counts as alive).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::{liveness::Liveness, mpmc::MpmcHolder};
    /// let h = MpmcHolder::from_entry(0, std::process::id() as u64, 0);
    /// assert_eq!(h.liveness(), Liveness::Alive);
    /// ```
    pub fn liveness(&self) -> Liveness {
        if self.reservation {
            Liveness::Alive
        } else {
            crate::sys::proc::liveness_low32(self.pid, self.start_low32)
        }
    }
}

/// An mpmc queue's state, decoded from its header and tables.
///
/// # Examples
///
/// ```
/// // A payload of zeros has no mpmc magic: an error, not a panic.
/// let seg = shmchan::Segment::anonymous_raw(4096)?;
/// assert!(shmchan::format::mpmc::MpmcState::read(&seg, seg.header()).is_err());
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MpmcState {
    /// The constant description (validated against the segment header).
    pub meta: MpmcMeta,
    /// The consumers' claim index.
    pub head: u64,
    /// The producers' claim index.
    pub tail: u64,
    /// Positions claimed by producers and not yet claimed by consumers (`tail - head`), `None`
    /// when the indices are impossible (`head > tail` or more than the capacity apart).
    pub queued: Option<u64>,
    /// Slots skipped because their producer died between claiming and publishing.
    pub recovered: u64,
    /// Messages lost because their consumer died while holding them.
    pub lost: u64,
    /// Some producer has registered.
    pub producers_attached: bool,
    /// Some consumer has registered.
    pub consumers_attached: bool,
    /// The registered producers (free entries left out).
    pub producers: Vec<MpmcHolder>,
    /// The registered consumers.
    pub consumers: Vec<MpmcHolder>,
}

fn corrupted(what: String) -> Error {
    Error::Corrupted { what }
}

/// Reads a holder table of `n` entries at `at`.
fn read_table(src: &(impl ByteSource + ?Sized), at: u64, n: u64) -> Result<Vec<MpmcHolder>> {
    let entry = size_of::<HolderEntry>() as u64;
    let mut out = Vec::new();
    for i in 0..n {
        // In the payload: `read` checked `at + n * entry` against it.
        let e = at.saturating_add(i * entry);
        let owner = src.load_u64(e + offset_of!(HolderEntry, owner) as u64)?;
        if owner as u32 == 0 {
            continue;
        }
        let intent = src.load_u64(e + offset_of!(HolderEntry, intent) as u64)?;
        out.push(MpmcHolder::from_entry(i as usize, owner, intent));
    }
    Ok(out)
}

impl MpmcState {
    /// Decodes the queue of the mpmc segment whose header is `h` from `src` (the whole
    /// segment).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the queue has no magic, an impossible capacity or table size,
    /// tables or slots outside the payload, or lies outside `src`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::mpmc::MpmcState;
    /// use shmchan::{Key, Segment};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-mpmc-state-{}", std::process::id()))?;
    /// let rx = shmchan::mpmc::Receiver::<u64>::create(key, 8)?;
    /// let tx = shmchan::mpmc::Sender::<u64>::open(key)?;
    /// tx.send(5)?;
    /// let seg = Segment::open_any(key, true)?;
    /// let st = MpmcState::read(&seg, seg.header())?;
    /// assert_eq!((st.meta.capacity, st.queued), (8, Some(1)));
    /// assert_eq!((st.producers.len(), st.consumers.len()), (1, 1));
    /// # drop(rx);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read(src: &(impl ByteSource + ?Sized), h: &DecodedHeader) -> Result<MpmcState> {
        let base = h.payload_off;
        let header_len = size_of::<MpmcHeader>() as u64;
        if header_len > h.payload_len {
            return Err(corrupted(format!(
                "a {}-byte payload cannot hold an mpmc header",
                h.payload_len
            )));
        }
        let word = |f: usize| src.load_u64(base.saturating_add(f as u64));
        let m = |f: usize| word(offset_of!(MpmcHeader, meta) + f);
        let meta = MpmcMeta {
            magic: m(offset_of!(MpmcMeta, magic))?,
            capacity: m(offset_of!(MpmcMeta, capacity))?,
            slot_size: m(offset_of!(MpmcMeta, slot_size))?,
            slots_offset: m(offset_of!(MpmcMeta, slots_offset))?,
            fingerprint: m(offset_of!(MpmcMeta, fingerprint))?,
            max_holders: m(offset_of!(MpmcMeta, max_holders))?,
            producers_offset: m(offset_of!(MpmcMeta, producers_offset))?,
            consumers_offset: m(offset_of!(MpmcMeta, consumers_offset))?,
        };
        if meta.magic != MPMC_MAGIC {
            return Err(corrupted(format!(
                "no mpmc magic (found {:#018x}): not initialised or overwritten",
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
                "impossible mpmc capacity {cap} (the header says {})",
                h.capacity
            )));
        }
        let n = meta.max_holders;
        let table = n.saturating_mul(size_of::<HolderEntry>() as u64);
        if n == 0
            || n > MAX_HOLDERS_LIMIT
            || meta.producers_offset != header_len
            || meta.consumers_offset != header_len + table
            || meta.slots_offset < header_len + 2 * table
        {
            return Err(corrupted(format!(
                "impossible mpmc holder tables: {n} entries at {} and {}, slots at {}",
                meta.producers_offset, meta.consumers_offset, meta.slots_offset
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
        // Head first: it only moves towards tail, so `tail - head` stays non-negative on a live
        // queue.
        let head = word(offset_of!(MpmcHeader, head))?;
        let tail = word(offset_of!(MpmcHeader, tail))?;
        let queued = tail.wrapping_sub(head);
        let c = |f: usize| word(offset_of!(MpmcHeader, counters) + f);
        let mut flags = [0u8; 8];
        src.read_at(
            base.saturating_add(
                (offset_of!(MpmcHeader, counters) + offset_of!(MpmcCounters, producers_attached))
                    as u64,
            ),
            &mut flags,
        )?;
        let flag = |i: usize| flags[i..i + 4] != [0; 4];
        Ok(MpmcState {
            meta,
            head,
            tail,
            queued: (queued <= cap).then_some(queued),
            recovered: c(offset_of!(MpmcCounters, recovered))?,
            lost: c(offset_of!(MpmcCounters, lost))?,
            producers_attached: flag(0),
            consumers_attached: flag(4),
            producers: read_table(src, base.saturating_add(meta.producers_offset), n)?,
            consumers: read_table(src, base.saturating_add(meta.consumers_offset), n)?,
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
            kind: SegmentKind::Mpmc,
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

    fn put(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }

    /// A well-formed 8-slot, 4-holder queue of `u64` at offset 256.
    fn valid() -> (Vec<u8>, DecodedHeader) {
        let n = 4u64;
        let slots = 768 + 2 * n * 32;
        let len = slots + 8 * 16;
        let mut b = vec![0u8; (256 + len) as usize];
        let meta = [MPMC_MAGIC, 8, 16, slots, 0, n, 768, 768 + n * 32];
        for (i, w) in meta.iter().enumerate() {
            put(&mut b, 256 + i * 8, *w);
        }
        (b, header_for(len, 8))
    }

    #[test]
    fn a_valid_queue_decodes_its_indices_counters_and_holders() {
        let (mut b, h) = valid();
        put(&mut b, 256 + 128, 5); // tail
        put(&mut b, 256 + 256, 2); // head
        put(&mut b, 256 + 384, 3); // recovered
        put(&mut b, 256 + 392, 1); // lost
        put(&mut b, 256 + 768 + 32, 42 | (7 << 32)); // producer entry 1
        put(&mut b, 256 + 768 + 40, 5); // holding position 4
        let st = MpmcState::read(&b, &h).expect("decodes");
        assert_eq!((st.head, st.tail, st.queued), (2, 5, Some(3)));
        assert_eq!((st.recovered, st.lost), (3, 1));
        assert_eq!(st.producers.len(), 1);
        assert_eq!(st.producers[0].index, 1);
        assert_eq!(st.producers[0].pid, 42);
        assert_eq!(st.producers[0].holding, Some(4));
        assert!(st.consumers.is_empty());
    }

    #[test]
    fn hostile_indices_capacity_and_tables_are_errors_or_bounded() {
        let (mut b, h) = valid();
        put(&mut b, 256 + 128, u64::MAX);
        put(&mut b, 256 + 256, 3);
        assert_eq!(MpmcState::read(&b, &h).expect("decodes").queued, None);
        for (field, value) in [(1, 0), (1, 3), (1, u64::MAX), (5, 0), (5, u64::MAX), (6, 0)] {
            let (mut b, h) = valid();
            put(&mut b, 256 + field * 8, value);
            assert!(MpmcState::read(&b, &h).is_err(), "field {field} = {value}");
        }
        let (mut b, h) = valid();
        put(&mut b, 256 + 24, u64::MAX - 3); // slots offset
        assert!(MpmcState::read(&b, &h).is_err());
        let (b, h) = valid();
        assert!(MpmcState::read(&b[..600], &h).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
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
                put(&mut b, 256, MPMC_MAGIC);
            }
            if let Ok(st) = MpmcState::read(&b, &h) {
                assert!(st.queued.is_none_or(|q| q <= st.meta.capacity));
                assert!(st.producers.len() as u64 <= st.meta.max_holders);
                for holder in st.producers.iter().chain(&st.consumers) {
                    let _ = holder.liveness();
                }
            }
        }
    }
}
