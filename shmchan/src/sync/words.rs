//! Copying a [`ShmSafe`] value into and out of shared memory as 64-bit atomic words.
//!
//! A sequence-lock reader may overlap a writer. If it read the bytes with ordinary or volatile
//! loads, that overlap would be a data race, which is undefined behaviour in Rust even when the
//! value is thrown away afterwards. Copying through `AtomicU64` loads and stores (`Relaxed`: the
//! ordering comes from the sequence counter's fences) makes every overlapping access an atomic
//! one: the reader may get a mix of old and new words, which the sequence check then rejects, but
//! never UB. Shared copies are therefore padded to a multiple of 8 bytes and 8-byte aligned.

use crate::ShmSafe;
use core::mem::{MaybeUninit, size_of};
use core::sync::atomic::{AtomicU64, Ordering};

/// The number of 64-bit words that hold a `T` (its size rounded up to 8 bytes).
pub(crate) const fn words_for<T>() -> usize {
    size_of::<T>().div_ceil(8)
}

/// The shared word at `p`, as an atomic.
///
/// # Safety
///
/// `p` must be 8-aligned, valid for reads and writes for `'a` (reads only, if only loads are
/// made), and accessed only atomically by anyone else during `'a`.
#[inline]
unsafe fn atomic_at<'a>(p: *const u64) -> &'a AtomicU64 {
    // SAFETY: forwarded to the caller.
    unsafe { AtomicU64::from_ptr(p.cast_mut()) }
}

/// Loads `words_for::<T>()` words from `src` with `Relaxed` atomic loads and returns them as a
/// `T`.
///
/// # Safety
///
/// `src` must be 8-aligned and valid for reads of `words_for::<T>() * 8` bytes for the duration
/// of the call, and every access to those bytes by anyone else during the call must be atomic
/// (through [`store_words`] or other `AtomicU64` operations).
#[inline]
pub(crate) unsafe fn load_words<T: ShmSafe>(src: *const u64) -> T {
    let mut out = MaybeUninit::<T>::uninit();
    // SAFETY: forwarded contract for `src`; `out` is ours.
    unsafe { load_words_into(src, &mut out) };
    // SAFETY: `load_words_into` initialised all `size_of::<T>()` bytes from initialised shared
    // words, and `T: ShmSafe` makes every bit pattern a valid `T`, so even a torn mix of two
    // values is a valid (if wrong) `T`.
    unsafe { out.assume_init() }
}

/// [`load_words`] into a caller-provided slot (no intermediate copy of the value): on return
/// every byte of `out` is initialised.
///
/// # Safety
///
/// As for [`load_words`].
#[inline]
pub(crate) unsafe fn load_words_into<T: ShmSafe>(src: *const u64, out: &mut MaybeUninit<T>) {
    let size = size_of::<T>();
    let (full, rem) = (size / 8, size % 8);
    let dst = out.as_mut_ptr().cast::<u8>();
    for i in 0..full {
        // SAFETY: word `i < words_for::<T>()` is in bounds, aligned and atomically accessed
        // (caller).
        let v = unsafe { atomic_at(src.add(i)) }.load(Ordering::Relaxed);
        // SAFETY: bytes `8i..8i+8` lie inside the local `T` (`i < size / 8`); unaligned because
        // `T` may be less than 8-aligned.
        unsafe { dst.add(i * 8).cast::<u64>().write_unaligned(v) };
    }
    if rem != 0 {
        // SAFETY: word `full < words_for::<T>()` (there is a tail), same contract.
        let v = unsafe { atomic_at(src.add(full)) }.load(Ordering::Relaxed);
        // SAFETY: the last `rem` bytes of the local `T` start at `full * 8`; the source is a
        // local array of 8 >= rem bytes. Native byte order keeps memory order.
        unsafe { core::ptr::copy_nonoverlapping(v.to_ne_bytes().as_ptr(), dst.add(full * 8), rem) };
    }
}

/// Stores `value` into `words_for::<T>()` words at `dst` with `Relaxed` atomic stores; the bytes
/// past `size_of::<T>()` in the last word are written as zero.
///
/// # Safety
///
/// `dst` must be 8-aligned and valid for writes of `words_for::<T>() * 8` bytes for the call, and
/// every other access to them during the call must be atomic.
#[inline]
pub(crate) unsafe fn store_words<T: ShmSafe>(dst: *mut u64, value: &T) {
    let size = size_of::<T>();
    let (full, rem) = (size / 8, size % 8);
    let src = (value as *const T).cast::<u8>();
    for i in 0..full {
        // SAFETY: bytes `8i..8i+8` lie inside `*value`, initialised (`ShmSafe`: no padding).
        let v = unsafe { src.add(i * 8).cast::<u64>().read_unaligned() };
        // SAFETY: word `i < words_for::<T>()` is in bounds, aligned and atomically accessed
        // (caller).
        unsafe { atomic_at(dst.add(i)) }.store(v, Ordering::Relaxed);
    }
    if rem != 0 {
        let mut tail = [0u8; 8];
        // SAFETY: the last `rem` bytes of `*value` are initialised; `tail` holds 8 >= rem.
        unsafe { core::ptr::copy_nonoverlapping(src.add(full * 8), tail.as_mut_ptr(), rem) };
        // SAFETY: word `full < words_for::<T>()` (there is a tail), same contract.
        unsafe { atomic_at(dst.add(full)) }.store(u64::from_ne_bytes(tail), Ordering::Relaxed);
    }
}

/// Copies `n` words from `src` to `dst`, both accessed atomically (`Relaxed`).
///
/// # Safety
///
/// Both ranges must be 8-aligned, valid for `n` words, and only accessed atomically by others
/// during the call.
pub(crate) unsafe fn copy_words(src: *const u64, dst: *mut u64, n: usize) {
    for i in 0..n {
        // SAFETY: word `i < n` of each range is in bounds, aligned and atomically accessed
        // (caller).
        let (s, d) = unsafe { (atomic_at(src.add(i)), atomic_at(dst.add(i))) };
        d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Which atomic width a byte copy uses for the words it covers.
///
/// Racing atomic accesses that partially overlap (a 1-byte store into a word another thread
/// loads as 8 bytes) are undefined behaviour too, so a copy must access each location with the
/// same width as whoever writes it concurrently: 8-byte words for payloads (the sequence lock
/// and the channels store `AtomicU64` words), 4-byte words for the header (whose only words
/// written after publication, the state and the flags, are `AtomicU32`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Width {
    /// Aligned `AtomicU32` words.
    W4,
    /// Aligned `AtomicU64` words.
    W8,
}

impl Width {
    const fn bytes(self) -> usize {
        match self {
            Width::W4 => 4,
            Width::W8 => 8,
        }
    }
}

/// One piece of a byte range inside a window: an aligned word of the window, of which bytes
/// `lo..hi` belong to the range, or a lone byte whose aligned word sticks out of the window
/// (only at a window edge that is not word-aligned). `pos` is the range index of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Word {
        at: usize,
        lo: usize,
        hi: usize,
        pos: usize,
    },
    Byte {
        at: usize,
        pos: usize,
    },
}

/// Splits window bytes `off..off + n` into pieces that depend only on the bytes' addresses,
/// never on `off` and `n`: two copies of overlapping ranges then access every shared location
/// with the same (aligned, same-sized) atomic operation.
fn pieces(
    base_addr: usize,
    window: usize,
    off: usize,
    n: usize,
    w: Width,
) -> impl Iterator<Item = Piece> {
    let size = w.bytes();
    let end = off + n;
    let mut cur = off;
    core::iter::from_fn(move || {
        if cur >= end {
            return None;
        }
        let mis = base_addr.wrapping_add(cur) % size;
        let piece = match cur.checked_sub(mis) {
            Some(at) if at + size <= window => {
                let hi = size.min(end - at);
                let p = Piece::Word {
                    at,
                    lo: mis,
                    hi,
                    pos: cur - off,
                };
                cur = at + hi;
                p
            }
            _ => {
                let p = Piece::Byte {
                    at: cur,
                    pos: cur - off,
                };
                cur += 1;
                p
            }
        };
        Some(piece)
    })
}

/// The bytes `lo..hi` of a word set (mask) or taken from `bits` (value), native byte order.
fn masked(lo: usize, hi: usize, src: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut mask, mut bits) = ([0u8; 8], [0u8; 8]);
    mask[lo..hi].fill(0xff);
    bits[lo..hi].copy_from_slice(src);
    (mask, bits)
}

/// Loads the word at `p` (`Relaxed`) as native-order bytes (the first `w.bytes()` are valid).
///
/// # Safety
///
/// `p` is `w`-aligned, valid for reads of `w.bytes()` bytes, and accessed only atomically with
/// that width by anyone else during the call.
unsafe fn load_word(p: *const u8, w: Width) -> [u8; 8] {
    let mut out = [0u8; 8];
    match w {
        Width::W4 => {
            // SAFETY: forwarded to the caller.
            let a = unsafe { core::sync::atomic::AtomicU32::from_ptr(p.cast_mut().cast()) };
            out[..4].copy_from_slice(&a.load(Ordering::Relaxed).to_ne_bytes());
        }
        Width::W8 => {
            // SAFETY: forwarded to the caller.
            let a = unsafe { atomic_at(p.cast()) };
            out = a.load(Ordering::Relaxed).to_ne_bytes();
        }
    }
    out
}

/// Replaces bytes `lo..hi` of the word at `p` with `src` (`Relaxed`), leaving the others as
/// another thread or process may be changing them: a plain store for a whole word, else an
/// atomic AND then OR (no retry loop, so a peer hammering the word cannot stall us).
///
/// # Safety
///
/// As [`load_word`], and valid for writes.
unsafe fn store_word(p: *mut u8, w: Width, lo: usize, hi: usize, src: &[u8]) {
    let (mask, bits) = masked(lo, hi, src);
    let whole = lo == 0 && hi == w.bytes();
    match w {
        Width::W4 => {
            // SAFETY: forwarded to the caller.
            let a = unsafe { core::sync::atomic::AtomicU32::from_ptr(p.cast()) };
            let word = |b: [u8; 8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            if whole {
                a.store(word(bits), Ordering::Relaxed);
            } else {
                a.fetch_and(!word(mask), Ordering::Relaxed);
                a.fetch_or(word(bits), Ordering::Relaxed);
            }
        }
        Width::W8 => {
            // SAFETY: forwarded to the caller.
            let a = unsafe { atomic_at(p.cast_const().cast()) };
            if whole {
                a.store(u64::from_ne_bytes(bits), Ordering::Relaxed);
            } else {
                a.fetch_and(!u64::from_ne_bytes(mask), Ordering::Relaxed);
                a.fetch_or(u64::from_ne_bytes(bits), Ordering::Relaxed);
            }
        }
    }
}

/// Copies window bytes `off..off + out.len()` into `out` with `Relaxed` atomic loads of `w`
/// words (and of single bytes where a word would stick out of the window). The bytes may be
/// mid-update: the caller orders the copy with an `Acquire` load of a flag it checked first.
///
/// # Safety
///
/// `base..base + window` must be valid for reads for the call, `off + out.len() <= window`, and
/// every concurrent access to the window by anyone else must be atomic, with width `w` on the
/// words these copies use.
pub(crate) unsafe fn load_bytes(
    base: *const u8,
    window: usize,
    off: usize,
    out: &mut [u8],
    w: Width,
) {
    for piece in pieces(base.addr(), window, off, out.len(), w) {
        match piece {
            Piece::Word { at, lo, hi, pos } => {
                // SAFETY: `at` is `w`-aligned (by `pieces`), `at + w.bytes() <= window`; the
                // caller's contract covers the rest.
                let word = unsafe { load_word(base.add(at), w) };
                out[pos..pos + hi - lo].copy_from_slice(&word[lo..hi]);
            }
            Piece::Byte { at, pos } => {
                // SAFETY: `at < off + out.len() <= window`; the caller's contract covers the rest.
                let a = unsafe { core::sync::atomic::AtomicU8::from_ptr(base.add(at).cast_mut()) };
                out[pos] = a.load(Ordering::Relaxed);
            }
        }
    }
}

/// Copies `data` to window bytes `off..off + data.len()` with `Relaxed` atomic stores (or
/// AND/OR on the words the range covers only in part, so neighbouring bytes are never
/// rewritten with stale values). Publish the bytes with a `Release` store to a flag.
///
/// # Safety
///
/// As [`load_bytes`], with the window valid for writes.
pub(crate) unsafe fn store_bytes(base: *mut u8, window: usize, off: usize, data: &[u8], w: Width) {
    for piece in pieces(base.addr(), window, off, data.len(), w) {
        match piece {
            Piece::Word { at, lo, hi, pos } => {
                // SAFETY: as in `load_bytes`.
                unsafe { store_word(base.add(at), w, lo, hi, &data[pos..pos + hi - lo]) };
            }
            Piece::Byte { at, pos } => {
                // SAFETY: as in `load_bytes`.
                let a = unsafe { core::sync::atomic::AtomicU8::from_ptr(base.add(at)) };
                a.store(data[pos], Ordering::Relaxed);
            }
        }
    }
}

/// Zeroes window bytes `off..off + len` as [`store_bytes`] would store zeroes; atomic stores
/// cannot be elided, so the wipe really happens.
///
/// # Safety
///
/// As [`store_bytes`].
pub(crate) unsafe fn zero_bytes(base: *mut u8, window: usize, off: usize, len: usize, w: Width) {
    const ZEROES: [u8; 8] = [0; 8];
    for piece in pieces(base.addr(), window, off, len, w) {
        match piece {
            Piece::Word { at, lo, hi, .. } => {
                // SAFETY: as in `load_bytes`.
                unsafe { store_word(base.add(at), w, lo, hi, &ZEROES[lo..hi]) };
            }
            Piece::Byte { at, .. } => {
                // SAFETY: as in `load_bytes`.
                let a = unsafe { core::sync::atomic::AtomicU8::from_ptr(base.add(at)) };
                a.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Values up to this size are copied on the stack; larger ones into a heap buffer (a 64 MiB
/// value would overflow any thread's stack).
const STACK_COPY_MAX: usize = 16 * 1024;

/// Runs `f` on a scratch slot for a `T`: on the stack for small types, on the heap for large
/// ones, so that no caller ever puts a large `T` on its stack.
#[inline]
pub(crate) fn with_scratch<T, R>(f: impl FnOnce(&mut MaybeUninit<T>) -> R) -> R {
    if size_of::<T>() <= STACK_COPY_MAX {
        on_stack(f)
    } else {
        on_heap(f)
    }
}

// Two functions, not two branches: a stack slot for a large `T` in a branch that is never taken
// would still be part of the frame in unoptimised builds.
#[inline]
fn on_stack<T, R>(f: impl FnOnce(&mut MaybeUninit<T>) -> R) -> R {
    f(&mut MaybeUninit::uninit())
}

#[inline(never)]
fn on_heap<T, R>(f: impl FnOnce(&mut MaybeUninit<T>) -> R) -> R {
    f(&mut Box::<T>::new_uninit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miri_word_copy_round_trips_odd_sizes() {
        let mut mem = [u64::MAX; 4];
        let v: [u8; 13] = core::array::from_fn(|i| i as u8 + 1);
        // SAFETY: `mem` has 4 >= words_for::<[u8; 13]>() = 2 aligned words, owned by the test.
        unsafe { store_words(mem.as_mut_ptr(), &v) };
        // The slack bytes of the last word are zeroed, the next word untouched.
        assert_eq!(mem[1] >> 40, 0);
        assert_eq!(mem[2], u64::MAX);
        // SAFETY: as above.
        let back: [u8; 13] = unsafe { load_words(mem.as_mut_ptr()) };
        assert_eq!(back, v);
        assert_eq!(words_for::<[u8; 13]>(), 2);
        assert_eq!(words_for::<[u64; 8]>(), 8);
    }

    #[test]
    fn miri_byte_pieces_depend_only_on_addresses() {
        // A window starting 3 bytes past a word boundary, 30 bytes long: its first 5 bytes and
        // its last ones stick out of whole words, the middle is whole 8-byte words.
        let all: Vec<Piece> = pieces(3, 30, 0, 30, Width::W8).collect();
        assert_eq!(
            all[..5]
                .iter()
                .filter(|p| matches!(p, Piece::Byte { .. }))
                .count(),
            5
        );
        assert_eq!(
            all[5],
            Piece::Word {
                at: 5,
                lo: 0,
                hi: 8,
                pos: 5
            }
        );
        // A sub-range uses the same words, cut to its bytes.
        let sub: Vec<Piece> = pieces(3, 30, 7, 4, Width::W8).collect();
        assert_eq!(
            sub,
            [Piece::Word {
                at: 5,
                lo: 2,
                hi: 6,
                pos: 0
            }]
        );
        assert_eq!(pieces(0, 16, 6, 4, Width::W4).count(), 2);
    }

    #[test]
    fn miri_byte_copies_round_trip_every_alignment_and_width() {
        for w in [Width::W4, Width::W8] {
            for off in 0..12 {
                for n in 0..20 {
                    let mut mem = [0u64; 5];
                    let base = mem.as_mut_ptr().cast::<u8>();
                    let data: Vec<u8> = (0..n as u8).map(|i| i + 1).collect();
                    // SAFETY: `mem` holds 40 bytes, `off + n <= 31`; this thread alone uses it.
                    unsafe { store_bytes(base, 40, off, &data, w) };
                    let mut back = vec![0u8; n];
                    // SAFETY: as above.
                    unsafe { load_bytes(base, 40, off, &mut back, w) };
                    assert_eq!(back, data, "{w:?} {off} {n}");
                    let mut whole = [0u8; 40];
                    // SAFETY: as above.
                    unsafe { load_bytes(base, 40, 0, &mut whole, w) };
                    for (i, b) in whole.iter().enumerate() {
                        let inside = (off..off + n).contains(&i);
                        assert_eq!(*b != 0, inside, "{w:?} {off} {n} byte {i}");
                    }
                    // SAFETY: as above.
                    unsafe { zero_bytes(base, 40, off, n, w) };
                    assert_eq!(mem, [0; 5]);
                }
            }
        }
    }
}
