//! Where a ring's bytes live: a shmchan segment (anonymous, System V or POSIX), or, in unit
//! tests, the heap.

use std::alloc::Layout as AllocLayout;

use super::ring::Geometry;
use crate::{Error, Result};

/// The mapping that holds one ring; shared by the handles of one process through an `Arc`, and
/// unmapped when the last of them drops.
pub(crate) struct RingMemory {
    base: *mut u8,
    len: usize,
    owner: Owner,
}

enum Owner {
    #[allow(dead_code)]
    Heap(AllocLayout),
    Mmap,
}

// SAFETY: the memory is accessed only through the ring protocol (atomics, and slots owned by
// one side at a time); the handle that frees it is the last `Arc` owner.
unsafe impl Send for RingMemory {}
// SAFETY: as above; `RingMemory` itself has no interior mutability.
unsafe impl Sync for RingMemory {}

impl RingMemory {
    /// Fresh process-private memory for `geometry`, initialised (threads only).
    pub(crate) fn heap(geometry: &Geometry) -> Result<RingMemory> {
        let len = geometry.total_len().ok_or_else(|| Error::InvalidArgument {
            what: "channel too large".into(),
        })?;
        let layout =
            AllocLayout::from_size_align(len, 128).map_err(|_| Error::InvalidArgument {
                what: "channel too large".into(),
            })?;
        // SAFETY: `layout` has a non-zero size (the header alone is ~2 KiB).
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        if base.is_null() {
            return Err(Error::NoMemory {
                call: "alloc",
                target: crate::Target::Other {
                    what: "channel ring".into(),
                },
            });
        }
        // SAFETY: `base` is 128-aligned, `len` bytes, private to us.
        unsafe { geometry.init(base) };
        Ok(RingMemory {
            base,
            len,
            owner: Owner::Heap(layout),
        })
    }

    /// TEMPORARY until segments land: an anonymous shared mapping.
    pub(crate) fn mmap(geometry: &Geometry) -> Result<RingMemory> {
        let len = geometry.total_len().unwrap();
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let base = base as *mut u8;
        unsafe { geometry.init(base) };
        Ok(RingMemory {
            base,
            len,
            owner: Owner::Mmap,
        })
    }

    /// The ring's base address (128-byte aligned).
    pub(crate) fn base(&self) -> *mut u8 {
        self.base
    }

    /// Mapped bytes from [`Self::base`].
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for RingMemory {
    fn drop(&mut self) {
        match self.owner {
            // SAFETY: allocated in `heap` with this layout, freed once (last Arc owner).
            Owner::Heap(layout) => unsafe { std::alloc::dealloc(self.base, layout) },
            Owner::Mmap => unsafe {
                libc::munmap(self.base.cast(), self.len);
            },
        }
    }
}
