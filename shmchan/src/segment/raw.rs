//! Raw segments: a header plus `len` bytes with no stored type ([`SegmentKind::Raw`]), accessed
//! through atomic words and atomic byte copies. What C programs do with a bare `int *` into
//! shared memory (a counter shared with forked children, a message left for another process),
//! without undefined behaviour.
//!
//! Byte copies reach each byte through the aligned 8-byte atomic word that holds it, so copies
//! racing with each other or with [`Segment::atomic_u64`] words are defined. Racing them with an
//! [`Segment::atomic_u32`] over the same bytes *in the same process* mixes access sizes, which
//! Rust's memory model does not define: keep 32-bit words and byte copies on different bytes
//! (other processes are not bound by it; the hardware makes every aligned access atomic).

use super::{Expect, LockKind, Segment, SegmentKind, SegmentSpec};
use crate::error::{Error, Result};
use crate::shm_safe::ShmSafe;
use crate::sys;
use crate::sys::mman::Width;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

fn raw_spec(len: usize, mode: u32) -> SegmentSpec<'static> {
    SegmentSpec {
        mode,
        ..SegmentSpec::new(
            SegmentKind::Raw,
            LockKind::None,
            &<u8 as ShmSafe>::LAYOUT,
            <u8 as ShmSafe>::FINGERPRINT,
            len,
        )
    }
}

const RAW_EXPECT: Expect = Expect {
    kind: SegmentKind::Raw,
    lock_kind: LockKind::None,
    fingerprint: <u8 as ShmSafe>::FINGERPRINT,
    type_name: "u8",
    payload_len: None,
};

impl Segment {
    /// An anonymous `MAP_SHARED` raw segment of `len` zeroed payload bytes, shared with the
    /// children this process `fork`s afterwards (the anonymous-mapping technique of Kerrisk,
    /// TLPI ch. 49).
    ///
    /// # Errors
    ///
    /// [`Error::NoMemory`] or [`Error::InvalidSize`] if the kernel refuses the mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    ///
    /// let seg = shmchan::Segment::anonymous_raw(64)?;
    /// let counter = seg.atomic_u64(0).expect("in bounds and writable");
    /// counter.store(1, Ordering::Relaxed);
    /// // ... fork: the child's `fetch_add` is seen here.
    /// assert_eq!(seg.load_u64(0), Some(1));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn anonymous_raw(len: usize) -> Result<Segment> {
        Self::anonymous(&raw_spec(len, 0o600), drop)
    }

    /// An anonymous `MAP_PRIVATE` raw segment: after `fork`, parent and child each write their
    /// own copy-on-write copy and never see each other's writes (`MAP_PRIVATE` instead of `MAP_SHARED`).
    ///
    /// # Errors
    ///
    /// As [`anonymous_raw`](Self::anonymous_raw).
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = shmchan::Segment::anonymous_private_raw(8)?;
    /// assert_eq!(seg.load_u64(0), Some(0));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn anonymous_private_raw(len: usize) -> Result<Segment> {
        Self::anonymous_private(&raw_spec(len, 0o600), drop)
    }

    /// Creates a keyed raw segment (System V or POSIX, by `key`) of `len` zeroed payload bytes
    /// with permission bits `mode` (e.g. `0o600`).
    ///
    /// # Errors
    ///
    /// [`Error::Exists`] if the key is taken, [`Error::InvalidSize`] / [`Error::NoSpace`] if the
    /// size exceeds the system limits, [`Error::PermissionDenied`], [`Error::NoMemory`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Segment};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-raw-{}", std::process::id()))?;
    /// let seg = Segment::create_raw(key, 4096, 0o600)?;
    /// assert!(matches!(Segment::create_raw(key, 4096, 0o600), Err(shmchan::Error::Exists { .. })));
    /// seg.remove()?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn create_raw(key: super::Key, len: usize, mode: u32) -> Result<Segment> {
        Self::create(key, &raw_spec(len, mode), drop)
    }

    /// Opens an existing raw segment.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::PermissionDenied`], [`Error::KindMismatch`] if it holds a
    /// typed value or a channel, [`Error::NotShmchan`] if it has no shmchan header.
    ///
    /// # Examples
    ///
    /// ```
    /// let key = shmchan::Key::raw(0x7fff_fff2);
    /// assert!(shmchan::Segment::open_raw(key, false).is_err());
    /// ```
    pub fn open_raw(key: super::Key, read_only: bool) -> Result<Segment> {
        Self::open(key, &RAW_EXPECT, read_only)
    }

    /// Opens the keyed raw segment if it exists, else creates it with `len` bytes and `mode`.
    /// Safe against another process doing the same at the same time.
    ///
    /// # Errors
    ///
    /// As [`create_raw`](Self::create_raw) and [`open_raw`](Self::open_raw).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::{Key, Segment};
    ///
    /// let key = Key::name(&format!("/shmchan-doc-ooc-{}", std::process::id()))?;
    /// let a = Segment::open_or_create_raw(key, 64, 0o600)?;
    /// let b = Segment::open_or_create_raw(key, 64, 0o600)?;
    /// assert_eq!(a.header().creator_pid, b.header().creator_pid);
    /// a.remove()?;
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn open_or_create_raw(key: super::Key, len: usize, mode: u32) -> Result<Segment> {
        Self::open_or_create(key, &raw_spec(len, mode), &RAW_EXPECT, drop)
    }

    fn payload_region(&self) -> Option<(sys::mman::Region<'_>, usize)> {
        Some((self.region()?, self.header.payload_off as usize))
    }

    fn live_payload_region(&self) -> Option<(sys::mman::Region<'_>, usize)> {
        Some((self.live_region()?, self.header.payload_off as usize))
    }

    fn word_off(&self, index: usize, size: usize) -> Option<usize> {
        let rel = index.checked_mul(size)?;
        let end = rel.checked_add(size)?;
        (end <= self.payload_len()).then_some(rel + self.header.payload_off as usize)
    }

    /// The `index`-th 32-bit word of the payload as an atomic, or `None` if it is out of bounds
    /// or the segment is read-only (a store through it would fault).
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = shmchan::Segment::anonymous_raw(8)?;
    /// assert!(seg.atomic_u32(1).is_some());
    /// assert!(seg.atomic_u32(2).is_none());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn atomic_u32(&self, index: usize) -> Option<&AtomicU32> {
        if self.read_only {
            return None;
        }
        let (r, _) = self.payload_region()?;
        r.atomic_u32(self.word_off(index, 4)?)
    }

    /// The `index`-th 64-bit word of the payload as an atomic, or `None` if it is out of bounds
    /// or the segment is read-only.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = shmchan::Segment::anonymous_raw(16)?;
    /// assert!(seg.atomic_u64(1).is_some());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn atomic_u64(&self, index: usize) -> Option<&AtomicU64> {
        if self.read_only {
            return None;
        }
        let (r, _) = self.payload_region()?;
        r.atomic_u64(self.word_off(index, 8)?)
    }

    /// Loads the `index`-th 32-bit payload word (`Acquire`); works on read-only segments.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::Segment::anonymous_raw(4)?.load_u32(0), Some(0));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn load_u32(&self, index: usize) -> Option<u32> {
        let (r, _) = self.payload_region()?;
        r.atomic_u32(self.word_off(index, 4)?)
            .map(|a| a.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Loads the `index`-th 64-bit payload word (`Acquire`); works on read-only segments.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::Segment::anonymous_raw(8)?.load_u64(0), Some(0));
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn load_u64(&self, index: usize) -> Option<u64> {
        let (r, _) = self.payload_region()?;
        r.atomic_u64(self.word_off(index, 8)?)
            .map(|a| a.load(std::sync::atomic::Ordering::Acquire))
    }

    fn payload_range_error(&self, offset: usize, len: usize) -> Error {
        Error::InvalidArgument {
            what: format!(
                "payload bytes {offset}..{} are outside the {}-byte payload of {}{}",
                offset.saturating_add(len),
                self.payload_len(),
                self.target,
                self.shrunk_note(self.live_region())
            ),
        }
    }

    /// Copies `data` into the payload at `offset` with atomic stores (8-byte words where the
    /// range covers whole aligned words, so a concurrent [`read_bytes`](Self::read_bytes) is no
    /// data race). Publish it to readers with a `Release` store to an atomic word they load with
    /// `Acquire`. Within one process, do not race it with an [`atomic_u32`](Self::atomic_u32)
    /// over the same bytes: mixed-size racing atomics are undefined in Rust's memory model.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside the payload or the segment is
    /// read-only.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = shmchan::Segment::anonymous_raw(16)?;
    /// seg.write_bytes(8, b"hi")?;
    /// let mut out = [0u8; 2];
    /// seg.read_bytes(8, &mut out)?;
    /// assert_eq!(&out, b"hi");
    /// assert!(seg.write_bytes(15, b"hi").is_err());
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<()> {
        if self.read_only {
            return Err(Error::InvalidArgument {
                what: format!("{} is attached read-only", self.target),
            });
        }
        let end = offset.checked_add(data.len());
        match (self.live_payload_region(), end) {
            (Some((r, base)), Some(end)) if end <= self.payload_len() => r
                .write_from(base + offset, data, Width::W8)
                .ok_or_else(|| self.payload_range_error(offset, data.len())),
            _ => Err(self.payload_range_error(offset, data.len())),
        }
    }

    /// Copies payload bytes at `offset` into `out` with atomic loads. Bytes a writer is changing
    /// at the same time may come out old or new, each byte one or the other.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is outside the payload.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = shmchan::Segment::anonymous_raw(4)?;
    /// let mut out = [1u8; 4];
    /// seg.read_bytes(0, &mut out)?;
    /// assert_eq!(out, [0; 4]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(out.len());
        match (self.live_payload_region(), end) {
            (Some((r, base)), Some(end)) if end <= self.payload_len() => r
                .read_into(base + offset, out, Width::W8)
                .ok_or_else(|| self.payload_range_error(offset, out.len())),
            _ => Err(self.payload_range_error(offset, out.len())),
        }
    }

    /// Sleeps while the `index`-th 32-bit payload word equals `expected`, at most `timeout`
    /// (a shared futex: another process's [`wake_u32`](Self::wake_u32) ends it). Returns the
    /// word's value when it returns; it may still equal `expected` (timeout or spurious wake-up):
    /// loop on your condition.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let seg = shmchan::Segment::anonymous_raw(4)?;
    /// assert_eq!(seg.wait_u32(0, 1, Duration::from_secs(1)), Some(0)); // not 1: returns at once
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wait_u32(&self, index: usize, expected: u32, timeout: Duration) -> Option<u32> {
        let (r, _) = self.payload_region()?;
        let word = r.atomic_u32(self.word_off(index, 4)?)?;
        sys::futex::wait(word, expected, Some(timeout));
        Some(word.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Wakes every process sleeping in [`wait_u32`](Self::wait_u32) on the `index`-th word.
    ///
    /// # Examples
    ///
    /// ```
    /// let seg = shmchan::Segment::anonymous_raw(4)?;
    /// seg.wake_u32(0); // nobody waits: a no-op
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    pub fn wake_u32(&self, index: usize) {
        let word = self
            .payload_region()
            .and_then(|(r, _)| r.atomic_u32(self.word_off(index, 4)?));
        if let Some(w) = word {
            sys::futex::wake(w, u32::MAX);
        }
    }
}
