//! The two-copy ("latch") sequence lock over a raw memory region.
//!
//! Region layout (all offsets from a 128-aligned base):
//!
//! ```text
//! 0    SeqControl                                                          256 bytes
//!        0    owner lock words (OwnerWord: owner u64, info u64, wake u32, waiters u32)
//!        128  sequence counter u64
//!        136  change notification (ChangeWords: changed u32, watchers u32)
//! 256  copy 0: words_for::<T>() words, padded to 128 bytes
//! ...  copy 1: same size
//! ```
//!
//! These offsets are the ones named by the `OFF_*` constants below, the single place that
//! states them (tools decoding a segment use them too).
//!
//! Readers load `seq` (Acquire), read copy `seq & 1` with relaxed atomic word loads, issue an
//! Acquire fence and reload `seq` (Relaxed); they accept the copy when the two loads agree.
//! The writer (holding the owner lock) makes `seq` odd (readers move to copy 1), writes copy 0,
//! makes `seq` even (readers move back to copy 0), then writes copy 1. At every instant one copy
//! is complete and is the one readers are directed to, so a writer killed at any point leaves
//! readers a complete value and never makes them wait. `docs/locking.md` gives the full
//! memory-ordering argument.

use super::notify::ChangeWords;
use super::owner_lock::OwnerWord;
use super::words::{copy_words, load_words_into, store_words, words_for};
use crate::ShmSafe;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};

/// Alignment of the region and of each copy (two cache lines: no false sharing with prefetch).
pub(crate) const REGION_ALIGN: usize = 128;

/// The lock words at the start of the region. Only atomics, so a shared reference to it is
/// sound even while other processes write it.
#[repr(C, align(128))]
pub(crate) struct SeqControl {
    owner: OwnerWord,
    _pad0: [AtomicU8; 128 - size_of::<OwnerWord>()],
    seq: AtomicU64,
    changes: ChangeWords,
    _pad1: [AtomicU8; 128 - 8 - size_of::<ChangeWords>()],
}

/// Offset of the owner lock words in the region.
pub(crate) const OFF_OWNER: usize = core::mem::offset_of!(SeqControl, owner);
/// Offset of the sequence counter (on its own cache line: readers load it, the owner words
/// are written by waiting writers).
pub(crate) const OFF_SEQ: usize = core::mem::offset_of!(SeqControl, seq);
/// Offset of the change notification words (next to the counter that they announce).
pub(crate) const OFF_CHANGES: usize = core::mem::offset_of!(SeqControl, changes);
/// Offset of copy 0; copy 1 follows at `OFF_COPIES + stride`, the stride being the value's size
/// rounded up to 8 bytes, then to [`REGION_ALIGN`].
pub(crate) const OFF_COPIES: usize = size_of::<SeqControl>();

const CONTROL_LEN: usize = OFF_COPIES;
const _: () = assert!(OFF_OWNER == 0 && OFF_SEQ == 128 && OFF_CHANGES == 136 && CONTROL_LEN == 256);

/// A sequence lock for a `T` living in a region it does not own.
pub(crate) struct RawSeqLock<T> {
    base: *mut u8,
    _t: PhantomData<T>,
}

// SAFETY: the region is only accessed through atomics; the pointer is valid as long as the owner
// of the mapping (the `Shared` holding this) keeps it mapped, which outlives every access.
unsafe impl<T: ShmSafe> Send for RawSeqLock<T> {}
// SAFETY: as above: all accesses are atomic, so concurrent use through `&self` is race-free.
unsafe impl<T: ShmSafe> Sync for RawSeqLock<T> {}

impl<T: ShmSafe> RawSeqLock<T> {
    const COPY_STRIDE: usize = (words_for::<T>() * 8).next_multiple_of(REGION_ALIGN);

    /// Bytes the region needs for a `T`.
    pub(crate) const fn region_len() -> usize {
        CONTROL_LEN + 2 * Self::COPY_STRIDE
    }

    /// Writes a fresh region: free lock, sequence 0, both copies = `value`.
    ///
    /// # Safety
    ///
    /// `base` must be `REGION_ALIGN`-aligned, valid for writes of [`region_len`](Self::region_len)
    /// bytes, and not yet visible to any other thread or process (it is being created).
    /// `None` leaves both copies all-zero bytes (a valid `T`), never building a `T`.
    pub(crate) unsafe fn init(base: *mut u8, value: Option<&T>) {
        // SAFETY: in bounds and exclusively ours (caller); zero bytes are a free lock and
        // sequence 0 (all-zero atomics), and zeroed padding in the copies.
        unsafe { base.write_bytes(0, Self::region_len()) };
        let Some(value) = value else { return };
        // SAFETY: constructing over the region we just initialised, with the same contract.
        let lock = unsafe { Self::from_raw(base) };
        // SAFETY: both copies are in bounds, 8-aligned, and nobody else accesses them yet.
        unsafe { store_words(lock.copy(0), value) };
        // SAFETY: as above.
        unsafe { store_words(lock.copy(1), value) };
    }

    /// A handle over an initialised region.
    ///
    /// # Safety
    ///
    /// `base` must be `REGION_ALIGN`-aligned and valid for reads (and for writes, if any writer
    /// method is called) of [`region_len`](Self::region_len) bytes for as long as the handle is
    /// used, and every other access to it must be through this module's protocol (atomics only).
    pub(crate) unsafe fn from_raw(base: *mut u8) -> Self {
        RawSeqLock {
            base,
            _t: PhantomData,
        }
    }

    fn control(&self) -> &SeqControl {
        // SAFETY: `base` is aligned and valid (from_raw contract), and `SeqControl` holds only
        // atomics, so a shared reference to it tolerates concurrent writes by anyone.
        unsafe { &*self.base.cast::<SeqControl>() }
    }

    fn copy(&self, i: usize) -> *mut u64 {
        // SAFETY: `i` is 0 or 1, so the offset stays inside the region (from_raw contract).
        unsafe {
            self.base
                .add(CONTROL_LEN + (i & 1) * Self::COPY_STRIDE)
                .cast::<u64>()
        }
    }

    /// The writer lock word of this value.
    pub(crate) fn owner(&self) -> &OwnerWord {
        &self.control().owner
    }

    /// The change notification words of this value.
    pub(crate) fn changes(&self) -> &ChangeWords {
        &self.control().changes
    }

    /// How many writes completed: each write moves the sequence by two (odd while copy 0 is
    /// written, even again once readers see the new value), and a write that died half-way is
    /// completed by the next, so this halves it.
    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.control().seq.load(Ordering::Acquire) >> 1
    }

    /// The current sequence number (even: no write in progress or copy 1 being written; odd:
    /// copy 0 being written).
    #[cfg(test)]
    pub(crate) fn sequence(&self) -> u64 {
        self.control().seq.load(Ordering::Relaxed)
    }

    /// One read attempt into `out`; `true` when the copy is a consistent snapshot. Every byte of
    /// `out` is written either way (possibly with a torn mix on `false`).
    #[inline]
    pub(crate) fn try_read_into(&self, out: &mut MaybeUninit<T>) -> bool {
        let seq = &self.control().seq;
        let s1 = seq.load(Ordering::Acquire);
        // SAFETY: the copy is in bounds and 8-aligned; all concurrent accesses are atomic.
        unsafe { load_words_into::<T>(self.copy((s1 & 1) as usize), out) };
        // Orders the data loads above before the re-check below: if any of them saw a store
        // made after the writer's Release fence, this fence synchronises with it and the reload
        // sees the sequence the writer stored before that fence.
        fence(Ordering::Acquire);
        let s2 = seq.load(Ordering::Relaxed);
        s1 == s2
    }

    /// A consistent snapshot. Retries only while writes complete during the copy; never waits
    /// for a writer (a dead writer leaves a complete copy that readers are directed to).
    #[inline]
    pub(crate) fn read(&self) -> T {
        let mut out = MaybeUninit::uninit();
        let mut attempts = 0u32;
        while !self.try_read_into(&mut out) {
            attempts = attempts.wrapping_add(1);
            if attempts % 64 == 0 {
                std::thread::yield_now();
            } else {
                core::hint::spin_loop();
            }
        }
        // SAFETY: the last attempt wrote every byte of `out` consistently, and any bit pattern
        // is a valid `T` (`ShmSafe`).
        unsafe { out.assume_init() }
    }

    /// [`current_into`](Self::current_into), returned by value (tests).
    ///
    /// # Safety
    ///
    /// As for [`current_into`](Self::current_into).
    #[cfg(test)]
    pub(crate) unsafe fn current(&self) -> T {
        let mut out = MaybeUninit::uninit();
        // SAFETY: forwarded.
        unsafe { self.current_into(&mut out) };
        // SAFETY: every byte was written, and any bit pattern is a `T`.
        unsafe { out.assume_init() }
    }

    /// The latest complete value, for a writer that holds the lock, into `out` (no copy of the
    /// value on the stack); every byte of `out` is written.
    ///
    /// # Safety
    ///
    /// The caller holds the owner lock (no concurrent writer) and has repaired the region after
    /// a takeover ([`repair`](Self::repair)).
    pub(crate) unsafe fn current_into(&self, out: &mut MaybeUninit<T>) {
        let s = self.control().seq.load(Ordering::Relaxed);
        // Even: copy 0 holds the last complete value. Odd: a writer died while writing copy 0,
        // and copy 1 holds the last complete value.
        // SAFETY: in bounds, aligned, only atomic accesses by others.
        unsafe { load_words_into::<T>(self.copy((s & 1) as usize), out) }
    }

    /// Publishes `value`: the latch write protocol.
    ///
    /// # Safety
    ///
    /// The caller holds the owner lock (no concurrent writer), the region is writable, and after
    /// a takeover [`repair`](Self::repair) ran first.
    pub(crate) unsafe fn publish(&self, value: &T) {
        let seq = &self.control().seq;
        let s = seq.load(Ordering::Relaxed);
        let odd = if s & 1 == 0 {
            // Release: copy 1 (written by the previous writer, whose lock release we acquired)
            // is complete for any reader that sees this odd value and reads copy 1.
            let odd = s.wrapping_add(1);
            seq.store(odd, Ordering::Release);
            odd
        } else {
            // A writer died while writing copy 0: readers already use copy 1, which is complete.
            s
        };
        // Everything after this fence (copy 0 stores) is ordered after the sequence change
        // above, for readers that observe any of those stores (fence-fence synchronisation).
        fence(Ordering::Release);
        // SAFETY: copy 0 is in bounds, aligned, writable; we are the only writer.
        unsafe { store_words(self.copy(0), value) };
        // Release: copy 0 is complete for readers that see this even value.
        seq.store(odd.wrapping_add(1), Ordering::Release);
        fence(Ordering::Release);
        // SAFETY: as above for copy 1; readers now use copy 0.
        unsafe { store_words(self.copy(1), value) };
    }

    /// Makes both copies complete again after taking the lock over from a dead writer.
    ///
    /// With an even sequence the dead writer may have been writing copy 1 (readers use copy 0,
    /// which is complete): copy 0 is copied into copy 1, so the next write can send readers to
    /// copy 1. With an odd sequence nothing is needed: readers use copy 1, which is complete,
    /// and [`publish`](Self::publish) rewrites copy 0 before making the sequence even.
    ///
    /// # Safety
    ///
    /// The caller holds the owner lock and the region is writable.
    pub(crate) unsafe fn repair(&self) {
        let s = self.control().seq.load(Ordering::Relaxed);
        if s & 1 == 0 {
            // Readers still inside copy 1 under an older odd sequence must see a sequence change
            // if they see any repaired word: same fence as in `publish`.
            fence(Ordering::Release);
            // SAFETY: both copies in bounds, aligned, writable; we are the only writer.
            unsafe { copy_words(self.copy(0), self.copy(1), words_for::<T>()) };
        }
    }

    /// Sets the sequence counter (tests that simulate a crash or a hostile process).
    #[cfg(test)]
    pub(crate) fn set_sequence_for_test(&self, s: u64) {
        self.control().seq.store(s, Ordering::Release);
    }

    /// Writes one copy directly (tests that simulate a torn copy).
    #[cfg(test)]
    pub(crate) fn store_copy_for_test(&self, i: usize, value: &T) {
        // SAFETY: in bounds, aligned; tests own the region.
        unsafe { store_words(self.copy(i), value) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{Layout, alloc_zeroed, dealloc};

    /// A heap region standing in for a segment.
    struct HeapRegion<T: ShmSafe> {
        ptr: *mut u8,
        layout: Layout,
        _t: PhantomData<T>,
    }

    // SAFETY: the region is only accessed atomically through `RawSeqLock`.
    unsafe impl<T: ShmSafe> Sync for HeapRegion<T> {}

    impl<T: ShmSafe> HeapRegion<T> {
        fn new(value: T) -> Self {
            let layout =
                Layout::from_size_align(RawSeqLock::<T>::region_len(), REGION_ALIGN).unwrap();
            // SAFETY: non-zero size.
            let ptr = unsafe { alloc_zeroed(layout) };
            assert!(!ptr.is_null());
            // SAFETY: freshly allocated, aligned, region_len bytes, not shared yet.
            unsafe { RawSeqLock::<T>::init(ptr, Some(&value)) };
            HeapRegion {
                ptr,
                layout,
                _t: PhantomData,
            }
        }

        fn lock(&self) -> RawSeqLock<T> {
            // SAFETY: initialised region, alive while `self` is, accessed atomically only.
            unsafe { RawSeqLock::from_raw(self.ptr) }
        }
    }

    impl<T: ShmSafe> Drop for HeapRegion<T> {
        fn drop(&mut self) {
            // SAFETY: allocated with this layout in `new`.
            unsafe { dealloc(self.ptr, self.layout) };
        }
    }

    fn all_equal<const N: usize>(v: &[u64; N]) -> bool {
        v.iter().all(|&x| x == v[0])
    }

    /// One writer thread publishes values whose words all equal a counter; reader threads check
    /// every snapshot is uniform and never goes backwards. Under Miri (weak memory emulation)
    /// this is what catches a missing fence.
    fn stress<const N: usize>(writes: u64, readers: usize) {
        let region = HeapRegion::new([0u64; N]);
        std::thread::scope(|s| {
            for _ in 0..readers {
                s.spawn(|| {
                    let lock = region.lock();
                    let mut last = 0;
                    loop {
                        let v = lock.read();
                        assert!(all_equal(&v), "torn read: {v:?}");
                        assert!(v[0] >= last, "went backwards: {} after {last}", v[0]);
                        last = v[0];
                        if last == writes {
                            break;
                        }
                    }
                });
            }
            s.spawn(|| {
                let lock = region.lock();
                for i in 1..=writes {
                    // SAFETY: the only writer thread; the heap region is writable.
                    unsafe { lock.publish(&[i; N]) };
                }
            });
        });
    }

    #[test]
    fn miri_reader_never_sees_torn_value() {
        let writes = if cfg!(miri) { 60 } else { 20_000 };
        stress::<3>(writes, 2);
    }

    #[test]
    fn miri_reader_never_sees_torn_value_of_a_large_value() {
        let writes = if cfg!(miri) { 20 } else { 5_000 };
        stress::<20>(writes, 2);
    }

    #[test]
    fn miri_reader_never_sees_torn_value_with_a_partial_last_word() {
        // 20 bytes: two whole words and a half-used third one.
        let writes: u32 = if cfg!(miri) { 40 } else { 10_000 };
        let region = HeapRegion::new([0u32; 5]);
        std::thread::scope(|s| {
            s.spawn(|| {
                let lock = region.lock();
                let mut last = 0;
                while last != writes {
                    let v = lock.read();
                    assert!(v.iter().all(|&x| x == v[0]), "torn read: {v:?}");
                    assert!(v[0] >= last);
                    last = v[0];
                }
            });
            s.spawn(|| {
                let lock = region.lock();
                for i in 1..=writes {
                    // SAFETY: the only writer thread; the heap region is writable.
                    unsafe { lock.publish(&[i; 5]) };
                }
            });
        });
    }

    #[test]
    fn miri_writer_killed_while_writing_copy0_leaves_old_value_readable() {
        let region = HeapRegion::new([7u64; 4]);
        let lock = region.lock();
        // The dead writer made the sequence odd and wrote half of copy 0.
        lock.set_sequence_for_test(1);
        lock.store_copy_for_test(0, &[9, 9, 0, 0]);
        assert_eq!(lock.read(), [7; 4]);
        // SAFETY: single-threaded test; we act as the writer that took over.
        unsafe {
            lock.repair();
            assert_eq!(lock.current(), [7; 4]);
            lock.publish(&[8; 4]);
        }
        assert_eq!(lock.read(), [8; 4]);
        assert_eq!(lock.sequence() & 1, 0);
    }

    #[test]
    fn miri_writer_killed_while_writing_copy1_is_repaired_before_next_write() {
        let region = HeapRegion::new([7u64; 4]);
        let lock = region.lock();
        // The dead writer finished copy 0 (sequence even again) and tore copy 1.
        lock.store_copy_for_test(0, &[8; 4]);
        lock.set_sequence_for_test(2);
        lock.store_copy_for_test(1, &[8, 8, 7, 7]);
        assert_eq!(lock.read(), [8; 4]);
        // SAFETY: single-threaded test; we act as the writer that took over.
        unsafe {
            lock.repair();
            assert_eq!(lock.current(), [8; 4]);
        }
        // A reader directed to copy 1 (odd sequence, as during the next write) sees it whole.
        lock.set_sequence_for_test(3);
        assert_eq!(lock.read(), [8; 4]);
    }

    #[test]
    fn miri_any_sequence_value_yields_a_value_without_waiting() {
        let region = HeapRegion::new([5u64; 2]);
        let lock = region.lock();
        for s in [u64::MAX, u64::MAX - 1, 12345, 1] {
            lock.set_sequence_for_test(s);
            assert_eq!(lock.read(), [5; 2]);
        }
        // A writer copes with a wrapping counter.
        lock.set_sequence_for_test(u64::MAX);
        // SAFETY: single-threaded test; sole writer.
        unsafe { lock.publish(&[6; 2]) };
        assert_eq!(lock.read(), [6; 2]);
    }
}
