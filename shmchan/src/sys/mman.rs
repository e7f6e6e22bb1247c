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

use crate::sync::words;
pub(crate) use crate::sync::words::Width;

pub(crate) use super::Errno;

/// An `mmap`ed range, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: a `Mapping` is an address range owned by this handle; the bytes it covers are only
// accessed through `Region`'s atomic methods or by callers that follow a cross-process
// protocol anyway, so moving or sharing the handle between threads adds no new hazard.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`: `&Mapping` only hands out `Region`s, whose accessors are thread-safe.
unsafe impl Sync for Mapping {}

/// How an anonymous mapping is shared with `fork`ed children.
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
            return Err(Errno::last());
        }
        match NonNull::new(p.cast::<u8>()) {
            Some(ptr) => Ok(Mapping { ptr, len, writable }),
            None => Err(Errno::EFAULT),
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
        Errno::result(r).map(drop)
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
/// outside the mapping. Byte copies are atomic ([`words`]): the bytes may be written by another
/// thread or process at the same time, and an ordinary or volatile copy would then be a data race.
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

    /// The first `len` bytes of this region (all of it if it is shorter): the part of a mapped
    /// file that still exists after the file shrank.
    pub(crate) fn prefix(self, len: usize) -> Region<'a> {
        Region {
            len: self.len.min(len),
            ..self
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

    /// Copies `out.len()` bytes starting at `off` into `out` with atomic loads of `width`
    /// words ([`words::load_bytes`]): another thread or process may be writing them.
    pub(crate) fn read_into(&self, off: usize, out: &mut [u8], width: Width) -> Option<()> {
        self.span(off, out.len())?;
        // SAFETY: `off + out.len() <= len` (checked by `span`), the region is mapped readable
        // for `'a`, and every access to mapped segment memory is atomic (`Region`'s accessors,
        // `sync::words`, the lock and channel words).
        unsafe { words::load_bytes(self.ptr.as_ptr(), self.len, off, out, width) };
        Some(())
    }

    /// Copies `data` to `off` with atomic stores of `width` words; `None` if out of bounds or
    /// read-only.
    pub(crate) fn write_from(&self, off: usize, data: &[u8], width: Width) -> Option<()> {
        if !self.writable {
            return None;
        }
        self.span(off, data.len())?;
        // SAFETY: as in `read_into`, and the region is mapped writable.
        unsafe { words::store_bytes(self.ptr.as_ptr(), self.len, off, data, width) };
        Some(())
    }

    /// Overwrites `len` bytes at `off` with zeroes using atomic 8-byte stores (the payload's
    /// width), which the compiler cannot elide: confidential data must not reach the next user
    /// of the memory.
    pub(crate) fn wipe(&self, off: usize, len: usize) -> Option<()> {
        if !self.writable {
            return None;
        }
        self.span(off, len)?;
        // SAFETY: as in `write_from`.
        unsafe { words::zero_bytes(self.ptr.as_ptr(), self.len, off, len, Width::W8) };
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
        assert!(r.read_into(4090, &mut buf, Width::W8).is_none());
        assert!(r.read_into(usize::MAX, &mut buf, Width::W8).is_none());
        assert!(r.write_from(4089, &[1; 8], Width::W8).is_none());
        assert!(r.wipe(1, 4096).is_none());
        assert!(r.ptr_at(4097).is_none());
    }

    #[test]
    fn region_round_trips_bytes_and_atomics() {
        let m = Mapping::anonymous(4096, Sharing::Private).expect("mmap");
        let r = m.region();
        r.write_from(10, b"hello", Width::W8).expect("in bounds");
        let mut out = [0u8; 5];
        r.read_into(10, &mut out, Width::W8).expect("in bounds");
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
            r.write_from(0, &[0xee; 128], Width::W8).expect("in bounds");
            r.wipe(off, len).expect("in bounds");
            let mut all = [0u8; 128];
            r.read_into(0, &mut all, Width::W8).expect("in bounds");
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
        assert!(r.wipe(127, 2).is_none() && r.write_from(128, &[1], Width::W8).is_none());
        assert!(r.read_into(usize::MAX, &mut [0u8; 2], Width::W8).is_none());
        // SAFETY: as above; a read-only view of the same memory.
        let ro = unsafe { Region::new(ptr, 128, false) };
        assert!(ro.write_from(0, &[1], Width::W8).is_none() && ro.wipe(0, 1).is_none());
        drop(words);
    }

    /// A region's address, to hand to another thread in a test.
    #[derive(Clone, Copy)]
    struct SharedPtr(NonNull<u8>);
    // SAFETY: only used by tests whose threads access the memory through `Region`'s methods.
    unsafe impl Send for SharedPtr {}
    // SAFETY: see `Send`.
    unsafe impl Sync for SharedPtr {}

    /// Runs under Miri: two threads copy the same bytes in and out at once (a `Segment` is
    /// `Sync`, and other processes write segments anyway). Every access must be atomic, or Miri
    /// reports a data race; and the accesses of copies with different ranges must not partially
    /// overlap (mixed-size atomics are undefined behaviour too). The bytes read are always
    /// bytes some write stored, never anything else.
    #[test]
    fn miri_region_copies_race_without_data_race() {
        let rounds: u8 = if cfg!(miri) { 12 } else { 200 };
        let mut words = vec![0u64; 8]; // 64 bytes, 8-aligned
        let ptr = SharedPtr(NonNull::new(words.as_mut_ptr().cast::<u8>()).expect("non-null"));
        std::thread::scope(|s| {
            s.spawn(move || {
                let ptr = ptr;
                // SAFETY: `words` outlives the scope and is only accessed through regions.
                let r = unsafe { Region::new(ptr.0, 64, true) };
                for k in 1..=rounds {
                    r.write_from(3, &[k; 50], Width::W8).expect("in bounds");
                    r.write_from(0, &[k; 64], Width::W8).expect("in bounds");
                    r.wipe(5, 20).expect("in bounds");
                }
            });
            s.spawn(move || {
                let ptr = ptr;
                // SAFETY: as above.
                let r = unsafe { Region::new(ptr.0, 64, true) };
                for _ in 0..rounds {
                    let mut out = [0xffu8; 61];
                    r.read_into(1, &mut out, Width::W8).expect("in bounds");
                    assert!(out.iter().all(|b| *b <= rounds), "{out:?}");
                    let mut word = [0xffu8; 8];
                    r.read_into(8, &mut word, Width::W8).expect("in bounds");
                    assert!(word.iter().all(|b| *b <= rounds), "{word:?}");
                }
            });
        });
        let mut all = [0u8; 64];
        // SAFETY: as above; the threads are joined.
        let r = unsafe { Region::new(ptr.0, 64, false) };
        r.read_into(0, &mut all, Width::W8).expect("in bounds");
        assert!(all[..5].iter().chain(&all[25..]).all(|b| *b == rounds));
        assert!(all[5..25].iter().all(|b| *b == 0));
        drop(words);
    }

    #[test]
    fn huge_anonymous_mapping_fails_with_enomem() {
        assert_eq!(
            Mapping::anonymous(usize::MAX - 4095, Sharing::Shared).err(),
            Some(Errno::ENOMEM)
        );
    }
}
