//! Reading and writing one whole [`ShmSafe`] value in place with atomic accesses: what views
//! (generated field getters and setters, `ArrayView`, primitives) use on the memory they view.
//!
//! Views read and write shared memory in place: a loaned slot, a message left in its slot. The
//! protocol gives such a slot to one process at a time, but a hostile or buggy peer may write
//! it anyway, concurrently. With ordinary or volatile accesses that overlap would be a data
//! race, which is undefined behaviour in Rust (volatile is not atomic). Relaxed atomic accesses
//! make it a race between atomics: the reader gets some mix of old and new bytes, which
//! `T: ShmSafe` accepts as a valid (if wrong) value, and the compiler assumes nothing about the
//! memory staying put. The accesses use the widest atomic width `T`'s alignment allows (8-byte
//! words for the 8-aligned types the channels' word copies also use), so a primitive field is
//! one load or store, as its volatile access was.

use core::mem::{MaybeUninit, align_of, size_of};
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

use crate::ShmSafe;

/// Copies the `size_of::<T>()` bytes at `src` into `dst` with `Relaxed` atomic loads of width
/// `W` (one of `u8`, `u16`, `u32`, `u64`).
///
/// # Safety
///
/// `src` and `dst` are `W`-aligned, valid for `size_of::<T>()` bytes (a multiple of `W`'s
/// size) of reads and writes respectively; anyone else accessing `src` meanwhile does so
/// atomically.
macro_rules! copy_in {
    ($atomic:ty, $word:ty, $src:expr, $dst:expr, $size:expr) => {{
        let (src, dst) = ($src.cast::<$word>(), $dst.cast::<$word>());
        for i in 0..$size / size_of::<$word>() {
            // SAFETY: in bounds and aligned by the caller's contract; every concurrent access
            // is atomic.
            let word = unsafe { <$atomic>::from_ptr(src.add(i).cast_mut()) };
            // SAFETY: `dst` is ours, in bounds and aligned.
            unsafe { dst.add(i).write(word.load(Ordering::Relaxed)) };
        }
    }};
}

/// The store twin of `copy_in`: `src` is private, `dst` shared.
macro_rules! copy_out {
    ($atomic:ty, $word:ty, $src:expr, $dst:expr, $size:expr) => {{
        let (src, dst) = ($src.cast::<$word>(), $dst.cast::<$word>());
        for i in 0..$size / size_of::<$word>() {
            // SAFETY: `src` is ours, in bounds and aligned.
            let bits = unsafe { src.add(i).read() };
            // SAFETY: in bounds and aligned by the caller's contract; every concurrent access
            // is atomic.
            let word = unsafe { <$atomic>::from_ptr(dst.add(i)) };
            word.store(bits, Ordering::Relaxed);
        }
    }};
}

/// Reads the `T` at `src` with `Relaxed` atomic loads.
///
/// # Safety
///
/// `src` must be aligned for `T` and valid for reads of `size_of::<T>()` bytes during the
/// call; anyone writing those bytes meanwhile must do so with atomic accesses (or be another
/// process, about which the compiler assumes nothing).
#[inline]
pub unsafe fn load_value<T: ShmSafe>(src: *const T) -> T {
    let mut out = MaybeUninit::<T>::uninit();
    let (src, dst, size) = (
        src.cast::<u8>(),
        out.as_mut_ptr().cast::<u8>(),
        size_of::<T>(),
    );
    // `size` is a multiple of `align_of::<T>()`, and both pointers are aligned for `T`, so each
    // branch's word width divides the size and the addresses.
    match align_of::<T>() {
        a if a >= 8 => copy_in!(AtomicU64, u64, src, dst, size),
        4 => copy_in!(AtomicU32, u32, src, dst, size),
        2 => copy_in!(AtomicU16, u16, src, dst, size),
        _ => copy_in!(AtomicU8, u8, src, dst, size),
    }
    // SAFETY: every byte of `out` was written from initialised memory, and `T: ShmSafe` makes
    // every bit pattern (a torn mix included) a valid `T`.
    unsafe { out.assume_init() }
}

/// Writes `value` at `dst` with `Relaxed` atomic stores.
///
/// # Safety
///
/// `dst` must be aligned for `T` and valid for writes of `size_of::<T>()` bytes during the
/// call; anyone accessing those bytes meanwhile must do so with atomic accesses (or be another
/// process).
#[inline]
pub unsafe fn store_value<T: ShmSafe>(dst: *mut T, value: T) {
    let value = MaybeUninit::new(value);
    let (src, dst, size) = (
        value.as_ptr().cast::<u8>(),
        dst.cast::<u8>(),
        size_of::<T>(),
    );
    match align_of::<T>() {
        a if a >= 8 => copy_out!(AtomicU64, u64, src, dst, size),
        4 => copy_out!(AtomicU32, u32, src, dst, size),
        2 => copy_out!(AtomicU16, u16, src, dst, size),
        _ => copy_out!(AtomicU8, u8, src, dst, size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn miri_values_of_every_alignment_round_trip() {
        let mut a = 0u8;
        let mut b = 0u16;
        let mut c = 0u32;
        let mut d = 0u64;
        let mut e = 0u128;
        let mut f = [0u32; 3];
        let mut g = [0.0f64; 2];
        // SAFETY: locals, aligned, nobody else touches them.
        unsafe {
            store_value(&mut a, 0xa5);
            store_value(&mut b, 0xbeef);
            store_value(&mut c, 0xdead_beef);
            store_value(&mut d, u64::MAX - 1);
            store_value(&mut e, u128::MAX / 3);
            store_value(&mut f, [1, 2, 3]);
            store_value(&mut g, [0.5, -1.5]);
            assert_eq!(load_value(&a), 0xa5);
            assert_eq!(load_value(&b), 0xbeef);
            assert_eq!(load_value(&c), 0xdead_beef);
            assert_eq!(load_value(&d), u64::MAX - 1);
            assert_eq!(load_value(&e), u128::MAX / 3);
            assert_eq!(load_value(&f), [1, 2, 3]);
            assert_eq!(load_value(&g), [0.5, -1.5]);
        }
    }

    /// A view's reads racing a writer that stores the same bytes as atomic words: with
    /// volatile reads (what views did before) Miri reports a data race here.
    #[test]
    fn miri_loads_racing_atomic_word_stores_are_not_a_data_race() {
        let shared = Arc::new([const { AtomicU64::new(0) }; 2]);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    shared[0].store(i, Ordering::Relaxed);
                    shared[1].store(!i, Ordering::Relaxed);
                }
            })
        };
        let p = shared.as_ptr().cast::<[u64; 2]>();
        for _ in 0..20 {
            // SAFETY: aligned, valid for the Arc's lifetime; the writer only stores atomically.
            let [x, y] = unsafe { load_value(p) };
            // A torn pair is possible (and valid): only the access is checked here.
            let _ = (x, y);
            // SAFETY: as above.
            let first: u64 = unsafe { load_value(p.cast::<u64>()) };
            let _ = first;
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }

    #[test]
    fn miri_stores_racing_atomic_word_loads_are_not_a_data_race() {
        let shared = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = 0;
                while !stop.load(Ordering::Relaxed) {
                    seen = seen.max(shared.load(Ordering::Relaxed));
                }
                seen
            })
        };
        for i in 1..=20u64 {
            // SAFETY: aligned, valid for the Arc's lifetime; the reader only loads atomically.
            unsafe { store_value(shared.as_ptr(), i) };
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() <= 20);
    }
}
