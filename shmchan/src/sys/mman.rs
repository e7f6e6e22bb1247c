//! Memory mappings (`mmap`/`munmap`) and [`Region`], the bounds-checked window on mapped bytes
//! that the segment code uses instead of raw pointer arithmetic.
//!
//! Everything that dereferences a pointer into a segment's header lives here, behind methods
//! that check the offset against the mapped length first: offsets read from shared memory may
//! have been written by a hostile or buggy process.

use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// A raw `errno` value.
pub(crate) type Errno = i32;

/// `EINVAL`, for callers above `sys` that interpret a wrapper's error.
pub(crate) const EINVAL: Errno = libc::EINVAL;

/// An `mmap`ed range, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: a `Mapping` is an address range owned by this handle; the bytes it covers are only
// accessed through `Region`'s volatile/atomic methods or by callers that follow a cross-process
// protocol anyway, so moving or sharing the handle between threads adds no new hazard.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`: `&Mapping` only hands out `Region`s, whose accessors are thread-safe.
unsafe impl Sync for Mapping {}

/// How an anonymous mapping is shared with `fork`ed children (seed 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// `MAP_SHARED`: parent and children see each other's writes.
    Shared,
    /// `MAP_PRIVATE`: copy-on-write; after `fork` each process has its own copy.
    Private,
}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_ANONYMOUS|MAP_SHARED or MAP_PRIVATE, -1, 0)`.
    /// The kernel zero-fills the pages.
    pub(crate) fn anonymous(len: usize, sharing: Sharing) -> Result<Mapping, Errno> {
        let flags = libc::MAP_ANONYMOUS
            | match sharing {
                Sharing::Shared => libc::MAP_SHARED,
                Sharing::Private => libc::MAP_PRIVATE,
            };
        // SAFETY: a fresh anonymous mapping at a kernel-chosen address aliases no Rust object;
        // `fd` -1 and offset 0 are what MAP_ANONYMOUS requires.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        Self::from_mmap(p, len, true)
    }

    /// `mmap(NULL, len, PROT_READ[|PROT_WRITE], MAP_SHARED, fd, 0)` of a shared memory object.
    pub(crate) fn of_fd(fd: BorrowedFd<'_>, len: usize, writable: bool) -> Result<Mapping, Errno> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new mapping at a kernel-chosen address aliases no Rust object; `fd` is a
        // live descriptor for the duration of the call (borrowed).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        Self::from_mmap(p, len, writable)
    }

    fn from_mmap(p: *mut libc::c_void, len: usize, writable: bool) -> Result<Mapping, Errno> {
        if p == libc::MAP_FAILED {
            return Err(super::last_errno());
        }
        match NonNull::new(p.cast::<u8>()) {
            Some(ptr) => Ok(Mapping { ptr, len, writable }),
            None => Err(libc::EFAULT),
        }
    }

    /// `mlock` (`lock == true`) or `munlock` the whole mapping: keep it out of swap.
    pub(crate) fn lock(&self, lock: bool) -> Result<(), Errno> {
        // SAFETY: `ptr`/`len` describe this live mapping; (un)locking changes no contents.
        let r = unsafe {
            if lock {
                libc::mlock(self.ptr.as_ptr().cast(), self.len)
            } else {
                libc::munlock(self.ptr.as_ptr().cast(), self.len)
            }
        };
        if r == -1 {
            Err(super::last_errno())
        } else {
            Ok(())
        }
    }

    /// The mapped bytes.
    pub(crate) fn region(&self) -> Region<'_> {
        Region {
            ptr: self.ptr,
            len: self.len,
            writable: self.writable,
            _owner: PhantomData,
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and nothing else unmaps them;
        // `Region`s borrow `self`, so none outlives this call.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A borrowed window on `len` mapped bytes starting at `ptr`.
///
/// Every accessor checks its offset and length against `len` and returns `None` when they do
/// not fit (or when writing to a read-only mapping), so a hostile offset can never reach memory
/// outside the mapping. Byte copies are volatile: the bytes may be written by another process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region<'a> {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
    _owner: PhantomData<&'a ()>,
}

impl<'a> Region<'a> {
    /// Builds a region over memory owned by another `sys` type.
    ///
    /// # Safety
    ///
    /// `ptr..ptr+len` must stay mapped (readable, and writable if `writable`) for `'a`.
    pub(super) unsafe fn new(ptr: NonNull<u8>, len: usize, writable: bool) -> Region<'a> {
        Region {
            ptr,
            len,
            writable,
            _owner: PhantomData,
        }
    }

    /// The number of mapped bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping allows writes.
    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// The address of byte `off` (`off == len` gives the one-past-the-end address).
    pub(crate) fn ptr_at(&self, off: usize) -> Option<*mut u8> {
        (off <= self.len).then(|| self.ptr.as_ptr().wrapping_add(off))
    }

    fn span(&self, off: usize, len: usize) -> Option<*mut u8> {
        let end = off.checked_add(len)?;
        (end <= self.len).then(|| self.ptr.as_ptr().wrapping_add(off))
    }

    /// The `AtomicU32` at `off` (must be 4-aligned and inside the region).
    pub(crate) fn atomic_u32(&self, off: usize) -> Option<&'a AtomicU32> {
        let p = self.span(off, 4)?;
        if (p as usize) % 4 != 0 {
            return None;
        }
        // SAFETY: `p` is in bounds, aligned, and mapped for `'a`; `AtomicU32` has the layout of
        // `u32`, every bit pattern is valid, and atomics may be shared with other processes.
        Some(unsafe { AtomicU32::from_ptr(p.cast()) })
    }

    /// The `AtomicU64` at `off` (must be 8-aligned and inside the region).
    pub(crate) fn atomic_u64(&self, off: usize) -> Option<&'a AtomicU64> {
        let p = self.span(off, 8)?;
        if (p as usize) % 8 != 0 {
            return None;
        }
        // SAFETY: as for `atomic_u32`.
        Some(unsafe { AtomicU64::from_ptr(p.cast()) })
    }

    /// Copies `out.len()` bytes starting at `off` into `out` with volatile reads.
    pub(crate) fn read_into(&self, off: usize, out: &mut [u8]) -> Option<()> {
        let p = self.span(off, out.len())?;
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: `p + i` is inside the checked span, mapped and readable for `'a`.
            *b = unsafe { std::ptr::read_volatile(p.add(i)) };
        }
        Some(())
    }

    /// Copies `data` to `off` with volatile writes; `None` if out of bounds or read-only.
    pub(crate) fn write_from(&self, off: usize, data: &[u8]) -> Option<()> {
        if !self.writable {
            return None;
        }
        let p = self.span(off, data.len())?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: `p + i` is inside the checked span, mapped writable for `'a`.
            unsafe { std::ptr::write_volatile(p.add(i), *b) };
        }
        Some(())
    }

    /// Overwrites `len` bytes at `off` with zeroes using volatile writes, so the compiler cannot
    /// elide the wipe (seed 002: clear confidential data before removing a segment).
    pub(crate) fn wipe(&self, off: usize, len: usize) -> Option<()> {
        if !self.writable {
            return None;
        }
        let p = self.span(off, len)?;
        // Bytes up to the first 8-aligned address, then whole words (8x fewer stores: a 64 MiB
        // segment is wiped in ~10 ms instead of ~80), then the tail bytes.
        let head = p.align_offset(8).min(len);
        let words = (len - head) / 8;
        for i in 0..head {
            // SAFETY: `p + i` is inside the checked span, mapped writable for `'a`.
            unsafe { std::ptr::write_volatile(p.add(i), 0) };
        }
        for w in 0..words {
            // SAFETY: `p + head` is 8-aligned and `head + 8 * (w + 1) <= len`, so each word is
            // inside the checked span, aligned, and mapped writable for `'a`.
            unsafe { std::ptr::write_volatile(p.add(head).cast::<u64>().add(w), 0) };
        }
        for i in head + 8 * words..len {
            // SAFETY: `i < len`: inside the checked span, mapped writable for `'a`.
            unsafe { std::ptr::write_volatile(p.add(i), 0) };
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn region_accessors_refuse_out_of_bounds_and_misaligned() {
        let m = Mapping::anonymous(4096, Sharing::Shared).expect("mmap");
        let r = m.region();
        assert!(r.atomic_u32(4092).is_some());
        assert!(r.atomic_u32(4093).is_none());
        assert!(r.atomic_u32(4096).is_none());
        assert!(r.atomic_u64(4).is_none());
        assert!(r.atomic_u64(usize::MAX - 3).is_none());
        let mut buf = [0u8; 8];
        assert!(r.read_into(4090, &mut buf).is_none());
        assert!(r.read_into(usize::MAX, &mut buf).is_none());
        assert!(r.write_from(4089, &[1; 8]).is_none());
        assert!(r.wipe(1, 4096).is_none());
        assert!(r.ptr_at(4097).is_none());
    }

    #[test]
    fn region_round_trips_bytes_and_atomics() {
        let m = Mapping::anonymous(4096, Sharing::Private).expect("mmap");
        let r = m.region();
        r.write_from(10, b"hello").expect("in bounds");
        let mut out = [0u8; 5];
        r.read_into(10, &mut out).expect("in bounds");
        assert_eq!(&out, b"hello");
        r.atomic_u32(16)
            .expect("aligned")
            .store(7, Ordering::Relaxed);
        r.wipe(0, 4096).expect("in bounds");
        assert_eq!(
            r.atomic_u32(16).expect("aligned").load(Ordering::Relaxed),
            0
        );
    }

    /// Runs under Miri (`.ci/run` selects `miri_` tests): the region's unsafe accessors over
    /// plain heap memory, including every wipe alignment case and the out-of-bounds refusals.
    #[test]
    fn miri_region_accessors_over_heap_memory() {
        let mut words = vec![u64::MAX; 16]; // 128 bytes, 8-aligned
        let ptr = NonNull::new(words.as_mut_ptr().cast::<u8>()).expect("non-null");
        // SAFETY: `words` outlives `r` and is not touched through anything else meanwhile.
        let r = unsafe { Region::new(ptr, 128, true) };
        for (off, len) in [
            (0, 128),
            (3, 50),
            (8, 8),
            (1, 6),
            (120, 8),
            (127, 1),
            (5, 0),
        ] {
            r.write_from(0, &[0xee; 128]).expect("in bounds");
            r.wipe(off, len).expect("in bounds");
            let mut all = [0u8; 128];
            r.read_into(0, &mut all).expect("in bounds");
            for (i, b) in all.iter().enumerate() {
                let wiped = (off..off + len).contains(&i);
                assert_eq!(
                    *b,
                    if wiped { 0 } else { 0xee },
                    "wipe({off}, {len}) at {i}"
                );
            }
        }
        r.atomic_u64(120)
            .expect("last word")
            .store(7, Ordering::Relaxed);
        assert_eq!(
            r.atomic_u32(120).expect("aligned").load(Ordering::Relaxed),
            7
        );
        assert!(r.atomic_u64(121).is_none() && r.atomic_u64(128).is_none());
        assert!(r.wipe(127, 2).is_none() && r.write_from(128, &[1]).is_none());
        assert!(r.read_into(usize::MAX, &mut [0u8; 2]).is_none());
        // SAFETY: as above; a read-only view of the same memory.
        let ro = unsafe { Region::new(ptr, 128, false) };
        assert!(ro.write_from(0, &[1]).is_none() && ro.wipe(0, 1).is_none());
        drop(words);
    }

    #[test]
    fn huge_anonymous_mapping_fails_with_enomem() {
        assert_eq!(
            Mapping::anonymous(usize::MAX - 4095, Sharing::Shared).err(),
            Some(libc::ENOMEM)
        );
    }
}
