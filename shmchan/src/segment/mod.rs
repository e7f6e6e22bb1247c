//! Where shared bytes live: anonymous mappings, System V segments and POSIX shared memory
//! objects, each starting with a validated header.
//!
//! # For the engineers building on it (`Shared`, channels, the CLI)
//!
//! A [`Segment`] owns one mapping: `[header | payload]`. The header (see [`crate::format::header`]) records
//! what the payload holds; the payload is yours, starts 128-aligned and is `payload_len` bytes.
//!
//! ```ignore
//! use crate::segment::{Expect, Key, LockKind, Segment, SegmentKind, SegmentSpec};
//!
//! let spec = SegmentSpec::new(SegmentKind::Value, LockKind::SeqLock, &T::LAYOUT, T::FINGERPRINT,
//!                             payload_len);       // + .lock_path(..), .capacity(..), .mode(..)
//! // Creator: writes the header, runs `init` on the zeroed payload, then publishes READY.
//! let seg = Segment::anonymous(&spec, |payload: *mut u8| { /* write lock words, value */ })?;
//! let seg = Segment::create(key, &spec, |p| ..)?;           // EEXIST -> Error::Exists
//! // Opener: waits (≤ 1 s) while the creator initialises, then validates everything.
//! let seg = Segment::open(key, &expect, read_only)?;       // expect: Expect { kind, .. }
//! let seg = Segment::open_or_create(key, &spec, &expect, |p| ..)?;
//! let p: *mut u8 = seg.payload_ptr();   // never turn it into &T / &mut T: other processes write
//! let n = seg.payload_len();
//! let h = seg.header();                 // creator pid/start time, capacity, lock path, layout...
//! ```
//!
//! `init` runs before anyone can open the segment (state INITIALISING), so it may write the
//! payload with plain stores. After `create` returns, every access must follow your lock
//! protocol. A read-only segment ([`Segment::is_read_only`]) is mapped without `PROT_WRITE`:
//! read through such handles only.
//!
//! Cleanup: anonymous mappings are unmapped on drop. A keyed System V segment is
//! removed by whichever handle detaches last, unless someone called [`Segment::persist`]. A POSIX
//! object is unlinked when its creating handle drops, unless persisted. [`Segment::remove`]
//! wipes the payload and removes the segment at once.
//!
//! Tools without the Rust type: [`Segment::open_any`] / [`Segment::open_sysv_id`] validate only
//! the header; [`DecodedHeader::parse`] decodes header bytes copied from anywhere and
//! [`crate::format::layout::decode`] gives the stored layout as an owned [`LayoutDesc`] tree.

mod anon;
mod backing;
pub(crate) mod header;
mod key;
mod kind;
mod lifecycle;
mod limits;
mod metadata;
mod posix;
mod raw;
mod restart;
mod spec;
mod sysv;

pub use crate::format::{DecodedHeader, HeaderState};
pub use crate::format::{FieldDesc, LayoutDesc, TypeDescOwned};
pub use key::Key;
pub use kind::{LockKind, SegmentKind};
pub use limits::{Limits, limits};
pub use metadata::SegmentInfo;
pub(crate) use spec::{Expect, SegmentSpec};

use crate::error::{Error, Result, Target};
use crate::sys::mman::{Region, Width};
use backing::{Backing, Cleanup};
use header::{FLAG_REMOVE_WHEN_UNUSED, OFF_FLAGS, OFF_STATE, STATE_POISONED};
use std::sync::atomic::Ordering;

/// A mapped shared memory segment: anonymous, System V or POSIX, with a validated header.
///
/// Users reach segments through `Shared` and channels; this type carries the operations on the
/// segment itself (`info`, `set_mode`, `remove`, `persist`, `lock_in_memory`...), and lets tools
/// open any shmchan segment without knowing its type ([`Segment::open_any`]).
///
/// Dropping it unmaps or detaches; see the [module docs](self) for when it also removes.
///
/// # Examples
///
/// ```
/// use shmchan::{Error, Key, Segment};
///
/// // A segment that does not exist:
/// let key = Key::name(&format!("/shmchan-doc-missing-{}", std::process::id()))?;
/// assert!(matches!(Segment::open_any(key, true), Err(Error::NotFound { .. })));
/// # Ok::<(), shmchan::Error>(())
/// ```
#[derive(Debug)]
pub struct Segment {
    backing: Backing,
    header: DecodedHeader,
    key: Option<Key>,
    target: Target,
    read_only: bool,
}

impl Segment {
    fn region(&self) -> Option<Region<'_>> {
        self.backing.region()
    }

    /// [`region`](Self::region) cut to what still exists (a peer may shrink a POSIX object):
    /// the library's own byte copies, `persist` and `remove` go through it, so they fail or do
    /// less instead of dying of SIGBUS. Costs an `fstat` for POSIX objects.
    fn live_region(&self) -> Option<Region<'_>> {
        self.backing.live_region()
    }
    /// The payload's address: 128-aligned, `payload_len` bytes. Never dereference it as `&T`:
    /// other processes write this memory. On a read-only segment ([`is_read_only`]) writing
    /// through it faults: read only.
    ///
    /// [`is_read_only`]: Self::is_read_only
    pub(crate) fn payload_ptr(&self) -> *mut u8 {
        // The header was validated against the mapping size, so the offset is in bounds.
        self.region()
            .and_then(|r| r.ptr_at(self.header.payload_off as usize))
            .unwrap_or(std::ptr::null_mut())
    }

    /// The payload's length in bytes (the header's `payload_len`).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::Segment::anonymous_raw(100)?.payload_len(), 100);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn payload_len(&self) -> usize {
        self.header.payload_len as usize
    }

    /// The decoded header, as validated when the segment was created or opened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) {
    /// let h = seg.header();
    /// println!("{} ({} fields), created by pid {}", h.type_name, h.layout.fields.len(), h.creator_pid);
    /// # }
    /// ```
    pub fn header(&self) -> &DecodedHeader {
        &self.header
    }

    /// Copies `out.len()` bytes of the segment starting at `offset` (from the segment start, not
    /// the payload) with atomic loads, so that copying while other threads or processes write
    /// is no data race. The bytes may be mid-update: read through the
    /// segment's lock protocol when they must be consistent.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside the segment.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) -> shmchan::Result<()> {
    /// let mut magic = [0u8; 8];
    /// seg.copy_out(0, &mut magic)?;
    /// assert_eq!(&magic, b"SHMCHAN\0");
    /// # Ok(()) }
    /// ```
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        // The header's words are copied as the 4-byte atomics its live words (state, flags)
        // are, the payload as the 8-byte words the locks and rings store.
        let split = (self.header.payload_off as usize)
            .saturating_sub(offset)
            .min(out.len());
        let end = offset.saturating_add(out.len());
        let (head, payload) = out.split_at_mut(split);
        let live = self.live_region();
        live.and_then(|r| {
            r.read_into(offset, head, Width::W4)?;
            r.read_into(offset + split, payload, Width::W8)
        })
        .ok_or_else(|| Error::InvalidArgument {
            what: format!(
                "bytes {offset}..{end} are outside {}{}",
                self.target,
                self.shrunk_note(live)
            ),
        })
    }

    /// The segment's total mapped length.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) {
    /// assert!(seg.len() as u64 >= seg.header().total_len);
    /// # }
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.region().map_or(0, |r| r.len())
    }

    /// Whether the segment is mapped read-only (`SHM_RDONLY` / `PROT_READ`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) {
    /// if seg.is_read_only() { println!("no writes through this handle"); }
    /// # }
    /// ```
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The key the segment was created or opened with (`None` for anonymous segments and those
    /// opened by id).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: &shmchan::Segment) {
    /// if let Some(k) = seg.key() { println!("remove it with `shmchan rm {k}`"); }
    /// # }
    /// ```
    pub fn key(&self) -> Option<Key> {
        self.key
    }

    /// ", which was shrunk to N bytes by another process" when `live` is shorter than the
    /// mapping.
    fn shrunk_note(&self, live: Option<Region<'_>>) -> String {
        match (live, self.region()) {
            (Some(l), Some(r)) if l.len() < r.len() => format!(
                ", whose object another process shrank to {} bytes (the mapping has {}); remove it and create it again",
                l.len(),
                r.len()
            ),
            _ => String::new(),
        }
    }

    /// Keeps a keyed segment after its handles are gone: clears the header's remove-when-unused
    /// flag, so no handle (in any process) removes it on drop. Remove it later with
    /// [`remove`](Self::remove) or `shmchan rm`. No effect on anonymous segments.
    ///
    /// A read-only handle cannot clear the shared flag; it only stops removing on its own drop.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(mut seg: shmchan::Segment) {
    /// seg.persist();
    /// drop(seg); // still listed by `ipcs -m`
    /// # }
    /// ```
    pub fn persist(&mut self) {
        let flags = self.live_region().and_then(|r| r.atomic_u32(OFF_FLAGS));
        if let (Some(flags), false) = (flags, self.read_only) {
            flags.fetch_and(!FLAG_REMOVE_WHEN_UNUSED, Ordering::AcqRel);
        }
        self.backing.set_cleanup(Cleanup::Never);
        self.header.remove_when_unused = false;
    }

    /// Wipes the payload with atomic stores (confidential data must not reach the next user of
    /// the memory, and other processes may still be reading it), marks the header poisoned, then removes the segment:
    /// `IPC_RMID` (the key is free at once; the memory goes at the last detach) or
    /// `shm_unlink`. For an anonymous segment it wipes and unmaps.
    ///
    /// A read-only handle cannot wipe; it only removes.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] (`EPERM`) if this process is neither the owner, the creator
    /// nor root; [`Error::NotFound`] if a POSIX name was already unlinked.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(seg: shmchan::Segment) -> shmchan::Result<()> {
    /// seg.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn remove(mut self) -> Result<()> {
        if let Some(r) = self.live_region().filter(|r| r.writable()) {
            // Pages a peer truncated away hold nothing any more: wipe what is left.
            let off = self.header.payload_off as usize;
            let _ = r.wipe(off, r.len().saturating_sub(off));
            if let Some(s) = r.atomic_u32(OFF_STATE) {
                s.store(STATE_POISONED, Ordering::Release);
            }
        }
        let result = self.backing.remove(&self.target);
        self.backing.set_cleanup(Cleanup::Never);
        result
    }
}

#[cfg(test)]
mod tests;
