//! The client slots: where a client's request and its reply are written, and the call-id
//! protocol that keeps a late reply from being taken for the answer to a later call.
//!
//! Each slot has two words, `request_call` and `reply_call`, both written like a seqlock's
//! sequence: the id with [`WRITING`] set while the words are being written, the bare id once
//! they are complete (Release). A reader loads the id (Acquire), copies the words with
//! relaxed atomic loads, issues an Acquire fence and loads the id again: the copy is accepted
//! only if both loads return the id it expected, so a writer that overlapped the copy (a
//! client that timed out and started its next call, or a second reply) is always detected.
//! Copies are atomic words (`sync::words`): another process may write the same bytes at any
//! time without a data race.
//!
//! A client whose call timed out sets [`ABANDONED`] in `request_call` (a compare-and-swap from
//! the bare id): the request is then skipped by a server that had not read it yet (its
//! re-check fails), and a reply to it is dropped.
//!
//! `reply_call` only grows: a replier takes it from `r < c` to `c | WRITING` by a
//! compare-and-swap and publishes `c` with another one, so of two repliers of one slot only
//! one writes at a time, and a reply to an older call can never overwrite a newer one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering, fence};

use super::layout::{Counters, RpcGeometry, RpcHeader, SlotHeader};
use crate::ShmSafe;
use crate::channel::wait::notify;
use crate::format::rpc::{ABANDONED, SLOT_REQUEST_OFFSET, TOKEN_SLOT_BITS, WRITING};
use crate::mpmc::memory::QueueMemory;
use crate::sync::words::{load_words, store_words};

/// The flag bits of a call word.
const FLAGS: u64 = WRITING | ABANDONED;
/// Bits of a call id carried in a token.
const CALL_BITS: u32 = 64 - TOKEN_SLOT_BITS;
/// Mask of the call id bits carried in a token.
const CALL_MASK: u64 = (1 << CALL_BITS) - 1;
/// Attempts a replier makes to take a slot another replier is writing (a few microseconds).
const REPLY_SPINS: u32 = 10_000;

/// What a reply attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Written; the client was woken.
    Delivered,
    /// The client has moved on (timed out and called again, or its slot has a newer call):
    /// nothing was written.
    Stale,
}

/// The slots of one mapping: raw pointers, the private geometry, and the mapping itself.
pub(crate) struct Slots {
    header: *const RpcHeader,
    slots: *mut u8,
    geometry: RpcGeometry,
    // Keeps the pointers above mapped.
    _memory: Arc<QueueMemory>,
}

// SAFETY: every access through the raw pointers is atomic (slot header words, atomic word
// copies), and the mapping they point into lives as long as `_memory`, so the value may be used
// from any thread, by several at once.
unsafe impl Send for Slots {}
// SAFETY: as above.
unsafe impl Sync for Slots {}

/// The token naming call `call` of slot `slot`.
pub(crate) fn token(slot: usize, call: u64) -> u64 {
    (call << TOKEN_SLOT_BITS) | slot as u64
}

impl Slots {
    /// The slots of a channel whose memory is `memory`, validated or initialised for
    /// `geometry`.
    pub(crate) fn new(memory: Arc<QueueMemory>, geometry: RpcGeometry) -> Slots {
        let base = memory.segment().payload_ptr();
        Slots {
            header: base as *const RpcHeader,
            slots: base.wrapping_add(geometry.slots_offset as usize),
            geometry,
            _memory: memory,
        }
    }

    pub(crate) fn geometry(&self) -> &RpcGeometry {
        &self.geometry
    }

    pub(crate) fn header(&self) -> &RpcHeader {
        // SAFETY: the payload starts with an rpc header (initialised or validated), mapped
        // while `_memory` lives; atomics only.
        unsafe { &*self.header }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.header().counters.0
    }

    fn start(&self, slot: usize) -> Option<*mut u8> {
        (slot < self.geometry.max_clients as usize).then(|| {
            self.slots
                .wrapping_add(slot * self.geometry.slot_stride as usize)
        })
    }

    /// The fixed words of slot `slot`, `None` if there is no such slot.
    pub(crate) fn slot(&self, slot: usize) -> Option<&SlotHeader> {
        let p = self.start(slot)?;
        // SAFETY: slot `slot < max_clients` lies inside the mapping (private geometry), is
        // 128-aligned (slots offset and stride are multiples of 128), and holds atomics only.
        Some(unsafe { &*(p as *const SlotHeader) })
    }

    /// The futex word client `slot` sleeps on.
    pub(crate) fn wait_word(&self, slot: usize) -> Option<&AtomicU32> {
        self.slot(slot).map(|s| &s.wait)
    }

    fn request_words(&self, slot: usize) -> Option<*mut u64> {
        self.start(slot)
            .map(|p| p.wrapping_add(SLOT_REQUEST_OFFSET as usize).cast())
    }

    fn response_words(&self, slot: usize) -> Option<*mut u64> {
        self.request_words(slot)
            .map(|p| p.wrapping_add(self.geometry.request_size as usize / 8))
    }

    /// The id for the next call of slot `slot`: one more than its latest (or its latest
    /// reply), never 0, no flag bit set, and distinct in its low 48 bits from the latest.
    pub(crate) fn next_call(&self, slot: &SlotHeader) -> u64 {
        let last = slot.request_call.load(Ordering::Acquire) & !FLAGS;
        let reply = slot.reply_call.load(Ordering::Acquire) & !FLAGS;
        let next = last.max(reply).wrapping_add(1) & !FLAGS;
        if next & CALL_MASK == 0 {
            next + 1
        } else {
            next
        }
    }

    /// Marks call `call` of slot `index` as given up (its call timed out): a server that has
    /// not taken the request yet skips it, and a reply to it is dropped.
    pub(crate) fn abandon(&self, index: usize, call: u64) {
        if let Some(slot) = self.slot(index) {
            let _ = slot.request_call.compare_exchange(
                call,
                call | ABANDONED,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// Writes `req` as call `call` of slot `index` (the client's half of the protocol).
    pub(crate) fn write_request<Req: ShmSafe>(&self, index: usize, call: u64, req: &Req) {
        let (Some(slot), Some(words)) = (self.slot(index), self.request_words(index)) else {
            return;
        };
        slot.request_call.store(call | WRITING, Ordering::Relaxed);
        // Release fence: keeps the marker before the word stores (a seqlock writer's order). A
        // reader that copies any word stored below, then issues its Acquire fence, sees the
        // marker (or a later id) when it loads the id again, and rejects its copy.
        fence(Ordering::Release);
        // SAFETY: the request words lie inside slot `index` (stride covers them), 8-aligned,
        // `words_for::<Req>()` words (request size), accessed atomically by everyone.
        unsafe { store_words(words, req) };
        slot.request_call.store(call, Ordering::Release);
    }

    /// Reads the request of `token` (the server's half): `Some((slot, call, req))` if the
    /// token names a slot whose latest call it is and the request was read whole, `None` for a
    /// stale or impossible token (counted).
    pub(crate) fn read_request<Req: ShmSafe>(&self, token: u64) -> Option<(usize, u64, Req)> {
        let (index, low) = crate::format::rpc::split_token(token);
        let found = self
            .slot(index)
            .zip(self.request_words(index))
            .and_then(|(slot, words)| {
                let c1 = slot.request_call.load(Ordering::Acquire);
                if c1 & FLAGS != 0 || c1 & CALL_MASK != low {
                    return None;
                }
                // SAFETY: as in `write_request`; `Req: ShmSafe` makes any bytes a valid value.
                let req = unsafe { load_words::<Req>(words) };
                fence(Ordering::Acquire);
                (slot.request_call.load(Ordering::Relaxed) == c1).then_some((index, c1, req))
            });
        if found.is_none() {
            self.counters()
                .stale_requests
                .fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Whether slot `index`'s latest call is still `call` and unanswered.
    pub(crate) fn is_current(&self, index: usize, call: u64) -> bool {
        self.slot(index).is_some_and(|s| {
            s.request_call.load(Ordering::Acquire) == call
                && s.reply_call.load(Ordering::Acquire) & !FLAGS != call
        })
    }

    /// Writes `resp` as the reply to call `call` of slot `index` and wakes its client, unless
    /// the client has moved on.
    pub(crate) fn write_reply<Resp: ShmSafe>(
        &self,
        index: usize,
        call: u64,
        resp: &Resp,
    ) -> Delivery {
        let (Some(slot), Some(words)) = (self.slot(index), self.response_words(index)) else {
            return Delivery::Stale;
        };
        if slot.request_call.load(Ordering::Acquire) != call {
            return self.dropped();
        }
        let mut taken = false;
        for _ in 0..REPLY_SPINS {
            let r = slot.reply_call.load(Ordering::Acquire);
            if r & !FLAGS >= call {
                // Answered already (a duplicate token), or a newer reply exists.
                return self.dropped();
            }
            if r & WRITING != 0 {
                // Another replier of this slot (an older call's) is writing: let it finish.
                std::hint::spin_loop();
                continue;
            }
            if slot
                .reply_call
                .compare_exchange(r, call | WRITING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                taken = true;
                break;
            }
        }
        if !taken {
            return self.dropped();
        }
        // Release fence: the client's re-check after its copy sees the marker if the copy
        // overlapped these stores (as in `write_request`).
        fence(Ordering::Release);
        // SAFETY: the response words lie inside slot `index` after the request words (stride
        // covers both), 8-aligned, `words_for::<Resp>()` words, accessed atomically by
        // everyone.
        unsafe { store_words(words, resp) };
        if slot
            .reply_call
            .compare_exchange(call | WRITING, call, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // Someone else (only a hostile process) rewrote the word meanwhile.
            return self.dropped();
        }
        notify(&slot.wait);
        Delivery::Delivered
    }

    fn dropped(&self) -> Delivery {
        self.counters()
            .dropped_replies
            .fetch_add(1, Ordering::Relaxed);
        Delivery::Stale
    }

    /// The reply to call `call` of slot `index`, if it is complete.
    pub(crate) fn read_reply<Resp: ShmSafe>(&self, index: usize, call: u64) -> Option<Resp> {
        let slot = self.slot(index)?;
        let words = self.response_words(index)?;
        if slot.reply_call.load(Ordering::Acquire) != call {
            return None;
        }
        // SAFETY: as in `write_reply`; `Resp: ShmSafe` makes any bytes a valid value.
        let resp = unsafe { load_words::<Resp>(words) };
        fence(Ordering::Acquire);
        (slot.reply_call.load(Ordering::Relaxed) == call).then_some(resp)
    }

    /// Whether the reply to `call` of slot `index` looks complete (a cheap probe for
    /// spinning).
    pub(crate) fn probe_reply(&self, index: usize, call: u64) -> bool {
        self.slot(index)
            .is_some_and(|s| s.reply_call.load(Ordering::Relaxed) == call)
    }

    /// Wakes every client (the server is leaving: they must look at its liveness).
    pub(crate) fn wake_all_clients(&self) {
        for i in 0..self.geometry.max_clients as usize {
            if let Some(w) = self.wait_word(i) {
                notify(w);
            }
        }
    }
}
