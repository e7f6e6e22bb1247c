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
#[cfg(test)]
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
}
