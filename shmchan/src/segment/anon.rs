//! Anonymous segments, the technique of Kerrisk, TLPI ch. 49: `mmap(MAP_SHARED |
//! MAP_ANONYMOUS, fd -1)`, shared with children after `fork` and gone after `exec`; or
//! `MAP_PRIVATE`, copy-on-write after `fork`.

use crate::error::{Errno, Error, Result, Target};
use crate::sys::mman::{Mapping, Sharing};

/// Maps `len` zeroed bytes.
pub(super) fn map(len: usize, sharing: Sharing) -> Result<Mapping> {
    Mapping::anonymous(len, sharing).map_err(|errno| match errno {
        // mmap's EINVAL here can only be about the length.
        Errno::EINVAL => Error::InvalidSize {
            call: "mmap",
            target: Target::Anonymous,
            requested: len as u64,
            reason: "the kernel refused the length".into(),
        },
        errno => Error::from_errno("mmap", errno, Target::Anonymous),
    })
}
