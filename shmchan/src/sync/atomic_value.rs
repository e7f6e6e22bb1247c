//! Reading one whole [`ShmSafe`] value in place with atomic loads: what shared views
//! ([`ShmSafe::view_shared`], `from_shared`) use on the memory they view.
//!
//! An in-place receive reads a message in its slot. The protocol gives the slot to this reader
//! until it releases it, but a hostile or buggy peer may write it anyway, concurrently. With
//! ordinary or volatile reads that overlap would be a data race, which is undefined behaviour in
//! Rust (volatile is not atomic). Relaxed atomic loads make it a race between atomics: the
//! reader gets some mix of old and new bytes, which `T: ShmSafe` accepts as a valid (if wrong)
//! value, and the compiler assumes nothing about the memory staying put. The loads use the
//! widest atomic width `T`'s alignment allows (8-byte words for the 8-aligned types the
//! channels' word copies also use), so a primitive field is one load, as its volatile read was.
//!
//! Racing atomics must also have the same width: a 4-byte load racing an 8-byte store is still
//! undefined behaviour in Rust's model (Miri reports it). Under the channels' protocols nothing
//! races a shared view at all, so the width matters only for a peer that breaks the protocol:
//! 8-byte fields (and 8-aligned values read whole) then match the 8-byte words the channels
//! write with; narrower fields are read at their own width, and such a peer is another process,
//! outside what this process's compiler can see either way.
//!
//! Only loads: atomic stores of one width over bytes that atomic stores of another width wrote
//! (a field setter after a whole-message word copy) are mixed-size atomics, which Rust's memory
//! model restricts and Miri cannot emulate, so read-write views, whose memory is the caller's
//! alone under its protocol, write with volatile stores.

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn miri_values_of_every_alignment_round_trip() {
        fn round_trip<T: ShmSafe + PartialEq + core::fmt::Debug>(value: T) {
            // Atomics need writable memory: an `UnsafeCell`, as a mapping would be.
            let cell = core::cell::UnsafeCell::new(MaybeUninit::<T>::zeroed());
            let p = cell.get().cast::<T>();
            // SAFETY: aligned, valid for writes, nobody else touches it.
            unsafe { p.write(value) };
            // SAFETY: as above.
            assert_eq!(unsafe { load_value(p) }, value);
        }
        round_trip(0xa5u8);
        round_trip(0xbeefu16);
        round_trip(0xdead_beefu32);
        round_trip(u64::MAX - 1);
        round_trip(u128::MAX / 3);
        round_trip([1u32, 2, 3]);
        round_trip([0.5f64, -1.5]);
        round_trip([[7i16; 3]; 2]);
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
}
