//! A channel's payload: the ring header, then the slots.
//!
//! ```text
//!    0  meta      magic "SHMRING1", capacity, slot size, slot align, slots offset,
//!                 message fingerprint (constant after creation)
//!  128  tail      u64: the producer's free-running index (written by the producer only)
//!  256  head      u64: the consumer's free-running index (written by the consumer only)
//!  384  rx_wait   u32: the consumer's futex word (1 while it may be asleep)
//!  512  tx_wait   u32: the producer's futex word
//!  640  sender    the sending end's liveness table (see [`super::liveness`])
//! 1280  receiver  the receiving end's liveness table
//! 1920  slots     capacity x { value, stamp: u64 = index + 1 of the message it holds }, at
//!                 the slots offset (rounded up to the slot's alignment)
//! ```
//!
//! Each hot word has its own 128-byte line, so the producer's and the consumer's stores never
//! contend for a cache line. Message `i` lives in slot `i % capacity`; `tail - head` messages
//! are queued. The consumer may take a stamped message before the producer has published
//! `tail`, so `tail` may lag `head` by exactly one on a live channel.

use super::DecodedHeader;
use super::liveness::{SideRecord, SideState};
use super::source::ByteSource;
use crate::error::{Error, Result};
use core::mem::{offset_of, size_of};
use std::sync::atomic::{Ordering, fence};

/// `b"SHMRING1"` (little-endian word): marks an initialised ring.
pub const RING_MAGIC: u64 = u64::from_le_bytes(*b"SHMRING1");

/// A value alone on a 128-byte line.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::ring::Line<u32>>(), 128);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(128))]
pub struct Line<T>(pub T);

/// The ring's constant description, written once by the creator.
///
/// # Examples
///
/// ```
/// assert_eq!(size_of::<shmchan::format::ring::RingMeta>(), 48);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RingMeta {
    /// [`RING_MAGIC`].
    pub magic: u64,
    /// Slots (a power of two).
    pub capacity: u64,
    /// Bytes per slot.
    pub slot_size: u64,
    /// Alignment of a slot.
    pub slot_align: u64,
    /// Offset of slot 0 from the ring's start.
    pub slots_offset: u64,
    /// `ShmSafe::FINGERPRINT` of the message type.
    pub fingerprint: u64,
}

/// The ring header as stored at the start of a channel's payload.
///
/// # Examples
///
/// ```
/// use shmchan::format::ring::RingHeader;
/// assert_eq!(std::mem::offset_of!(RingHeader, head), 256);
/// assert_eq!(size_of::<RingHeader>(), 1920);
/// ```
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct RingHeader {
    /// Constant description.
    pub meta: Line<RingMeta>,
    /// The producer's index.
    pub tail: Line<u64>,
    /// The consumer's index.
    pub head: Line<u64>,
    /// The consumer's futex word.
    pub rx_wait: Line<u32>,
    /// The producer's futex word.
    pub tx_wait: Line<u32>,
    /// The sending end's liveness table.
    pub sender: Line<SideRecord>,
    /// The receiving end's liveness table.
    pub receiver: Line<SideRecord>,
}

const _: () = {
    assert!(offset_of!(RingHeader, tail) == 128);
    assert!(offset_of!(RingHeader, head) == 256);
    assert!(offset_of!(RingHeader, rx_wait) == 384);
    assert!(offset_of!(RingHeader, tx_wait) == 512);
    assert!(offset_of!(RingHeader, sender) == 640);
    assert!(offset_of!(RingHeader, receiver) == 1280);
    assert!(size_of::<RingHeader>() == 1920);
    // The library's atomic ring header is this layout.
    use crate::channel::layout::RingHeader as Live;
    assert!(size_of::<Live>() == size_of::<RingHeader>());
    assert!(offset_of!(Live, tail) == offset_of!(RingHeader, tail));
    assert!(offset_of!(Live, head) == offset_of!(RingHeader, head));
    assert!(offset_of!(Live, rx_wait) == offset_of!(RingHeader, rx_wait));
    assert!(offset_of!(Live, tx_wait) == offset_of!(RingHeader, tx_wait));
    assert!(offset_of!(Live, sender) == offset_of!(RingHeader, sender));
    assert!(offset_of!(Live, receiver) == offset_of!(RingHeader, receiver));
    assert!(size_of::<crate::channel::liveness::Side>() == size_of::<SideRecord>());
};

/// The most messages [`RingState::peek`] copies.
pub const PEEK_MAX: u64 = 64;

/// A channel's state, decoded from its ring header.
///
/// # Examples
///
/// ```
/// // A payload of zeros has no ring magic: an error, not a panic.
/// let seg = shmchan::Segment::anonymous_raw(4096)?;
/// assert!(shmchan::format::ring::RingState::read(&seg, seg.header()).is_err());
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingState {
    /// The constant description (validated against the segment header).
    pub meta: RingMeta,
    /// The consumer's index.
    pub head: u64,
    /// The producer's index.
    pub tail: u64,
    /// Messages queued, `None` when the indices are impossible (`tail - head > capacity`: a
    /// process wrote outside the protocol).
    pub queued: Option<u64>,
    /// The sending end.
    pub sender: SideState,
    /// The receiving end.
    pub receiver: SideState,
}

fn corrupted(what: String) -> Error {
    Error::Corrupted { what }
}

impl RingState {
    /// Decodes the ring of the channel segment whose header is `h` from `src` (the whole
    /// segment).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the ring has no magic, an impossible capacity, slots outside the
    /// payload, or lies outside `src`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::ring::RingState;
    /// use shmchan::{Key, Segment, Sender};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-ring-{}", std::process::id()))?;
    /// let tx = Sender::<u64>::create(key, 8)?;
    /// tx.send(5)?;
    /// let seg = Segment::open_any(key, true)?;
    /// let st = RingState::read(&seg, seg.header())?;
    /// assert_eq!((st.meta.capacity, st.queued), (8, Some(1)));
    /// let msgs = st.peek(&seg, seg.header(), 8);
    /// assert_eq!(msgs, vec![(0, 5u64.to_ne_bytes().to_vec())]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read(src: &(impl ByteSource + ?Sized), h: &DecodedHeader) -> Result<RingState> {
        let base = h.payload_off;
        if (size_of::<RingHeader>() as u64) > h.payload_len {
            return Err(corrupted(format!(
                "a {}-byte payload cannot hold a ring header",
                h.payload_len
            )));
        }
        let word = |f: usize| src.load_u64(base + f as u64);
        let m = |f: usize| word(offset_of!(RingHeader, meta) + f);
        let meta = RingMeta {
            magic: m(offset_of!(RingMeta, magic))?,
            capacity: m(offset_of!(RingMeta, capacity))?,
            slot_size: m(offset_of!(RingMeta, slot_size))?,
            slot_align: m(offset_of!(RingMeta, slot_align))?,
            slots_offset: m(offset_of!(RingMeta, slots_offset))?,
            fingerprint: m(offset_of!(RingMeta, fingerprint))?,
        };
        if meta.magic != RING_MAGIC {
            return Err(corrupted(format!(
                "no ring magic (found {:#018x}): not initialised or overwritten",
                meta.magic
            )));
        }
        let cap = meta.capacity;
        if !cap.is_power_of_two() || (h.capacity != 0 && cap != h.capacity) {
            return Err(corrupted(format!(
                "impossible ring capacity {cap} (the header says {})",
                h.capacity
            )));
        }
        if meta.slot_size < h.type_size
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
        // Head first: the consumer only moves it towards tail, so reading tail second keeps
        // `tail - head` from going negative on a live channel.
        let head = word(offset_of!(RingHeader, head))?;
        let tail = word(offset_of!(RingHeader, tail))?;
        let lagging = head == tail.wrapping_add(1);
        let queued = if lagging { 0 } else { tail.wrapping_sub(head) };
        Ok(RingState {
            meta,
            head,
            tail,
            queued: (queued <= cap).then_some(queued),
            sender: SideState::read(src, base + offset_of!(RingHeader, sender) as u64)?,
            receiver: SideState::read(src, base + offset_of!(RingHeader, receiver) as u64)?,
        })
    }

    /// Copies up to `n` (at most [`PEEK_MAX`]) queued messages from `head` on, oldest first,
    /// without disturbing the channel: `(index, message bytes)`.
    ///
    /// Slot `j` holds message `j` until the consumer moves `head` past `j` (only then may the
    /// producer reuse it), so the copies are made, then `head` is re-read and only copies of
    /// indices still at or past it are returned: those were stable while copied. Messages
    /// the consumer took meanwhile are left out.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::ring::RingState;
    /// use shmchan::{Key, Segment, Sender};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-peek-{}", std::process::id()))?;
    /// let tx = Sender::<u32>::create(key, 4)?;
    /// tx.send(1)?;
    /// tx.send(2)?;
    /// let seg = Segment::open_any(key, true)?;
    /// let st = RingState::read(&seg, seg.header())?;
    /// let ids: Vec<u64> = st.peek(&seg, seg.header(), 10).into_iter().map(|(i, _)| i).collect();
    /// assert_eq!(ids, [0, 1]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn peek(
        &self,
        src: &(impl ByteSource + ?Sized),
        h: &DecodedHeader,
        n: u64,
    ) -> Vec<(u64, Vec<u8>)> {
        let Some(queued) = self.queued else {
            return Vec::new();
        };
        let cap = self.meta.capacity;
        let base = h.payload_off;
        let mut copies = Vec::new();
        for k in 0..queued.min(n).min(PEEK_MAX) {
            let j = self.head.wrapping_add(k);
            // In the payload: checked by `read` (slots_offset + cap * slot_size <= payload_len).
            let at = base + self.meta.slots_offset + (j & (cap - 1)) * self.meta.slot_size;
            match src.read_vec(at, h.type_size) {
                Ok(b) => copies.push((j, b)),
                Err(_) => break,
            }
        }
        fence(Ordering::Acquire);
        let Ok(head_now) = src.load_u64(base + offset_of!(RingHeader, head) as u64) else {
            return Vec::new();
        };
        copies
            .into_iter()
            .filter(|(j, _)| j.wrapping_sub(head_now) < cap)
            .collect()
    }
}
