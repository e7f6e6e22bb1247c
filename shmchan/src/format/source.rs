//! Where a decoder's bytes come from.

use crate::error::{Error, Result};
use std::sync::atomic::{Ordering, fence};

/// Bytes of a segment that a decoder may read: a copy, a file read with `pread`, or a live
/// mapping.
///
/// Implementations over memory other processes write must copy with atomic loads (see
/// [`Segment`](crate::Segment)'s implementation): the decoders then see wrong-but-valid bytes
/// under a race, never undefined behaviour. Reads outside the source fail; they never panic.
///
/// # Examples
///
/// ```
/// use shmchan::format::ByteSource;
///
/// let bytes = [1u8, 0, 0, 0, 0, 0, 0, 0, 9];
/// let src: &[u8] = &bytes;
/// assert_eq!(src.len_bytes(), 9);
/// assert_eq!(src.load_u64(0)?, u64::from_ne_bytes([1, 0, 0, 0, 0, 0, 0, 0]));
/// assert!(src.load_u64(8).is_err()); // past the end
/// # Ok::<(), shmchan::Error>(())
/// ```
pub trait ByteSource {
    /// The number of bytes readable.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::ByteSource;
    /// assert_eq!(vec![0u8; 3].len_bytes(), 3);
    /// ```
    fn len_bytes(&self) -> u64;

    /// Copies `buf.len()` bytes starting at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] if the range lies outside the source (an offset read from the
    /// segment pointed past its end), or the error of the underlying read.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::ByteSource;
    /// let v = vec![1u8, 2, 3];
    /// let mut b = [0u8; 2];
    /// v.read_at(1, &mut b)?;
    /// assert_eq!(b, [2, 3]);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Loads the aligned native-endian `u64` at `offset` with `Acquire` ordering: the reads
    /// made after it see at least what the writer published before storing that word (the
    /// sequence words of the seqlock and the ring indices rely on it).
    ///
    /// # Errors
    ///
    /// As [`read_at`](Self::read_at).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::ByteSource;
    /// let v = 5u64.to_ne_bytes().to_vec();
    /// assert_eq!(v.load_u64(0)?, 5);
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    fn load_u64(&self, offset: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_at(offset, &mut b)?;
        // The copy came before this fence in program order: later reads are ordered after it.
        fence(Ordering::Acquire);
        Ok(u64::from_ne_bytes(b))
    }

    /// Copies `len` bytes from `offset` into a new vector; `len` is checked against
    /// [`len_bytes`](Self::len_bytes) before anything is allocated.
    ///
    /// # Errors
    ///
    /// As [`read_at`](Self::read_at).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::format::ByteSource;
    /// let v = vec![9u8; 4];
    /// assert_eq!(v.read_vec(2, 2)?, [9, 9]);
    /// assert!(v.read_vec(0, u64::MAX).is_err()); // nothing allocated
    /// # Ok::<(), shmchan::Error>(())
    /// ```
    fn read_vec(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_range(offset, len, self.len_bytes())?;
        // `len` fits the source, which is in memory or a file of that size.
        let mut v = vec![0u8; usize::try_from(len).map_err(|_| outside(offset, len, 0))?];
        self.read_at(offset, &mut v)?;
        Ok(v)
    }
}

/// The error for a read of `offset..offset + len` outside a source of `size` bytes.
pub(crate) fn outside(offset: u64, len: u64, size: u64) -> Error {
    Error::Corrupted {
        what: format!(
            "bytes {offset}..{} lie outside the {size}-byte segment",
            offset.saturating_add(len)
        ),
    }
}

/// `Ok(offset as usize)` if `offset..offset + len` lies inside `size` bytes.
pub(crate) fn check_range(offset: u64, len: u64, size: u64) -> Result<usize> {
    match offset.checked_add(len) {
        Some(end) if end <= size => usize::try_from(offset).map_err(|_| outside(offset, len, size)),
        _ => Err(outside(offset, len, size)),
    }
}

impl ByteSource for [u8] {
    fn len_bytes(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = check_range(offset, buf.len() as u64, self.len() as u64)?;
        // In bounds: checked just above.
        buf.copy_from_slice(&self[at..at + buf.len()]);
        Ok(())
    }
}

impl ByteSource for Vec<u8> {
    fn len_bytes(&self) -> u64 {
        self.as_slice().len_bytes()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

/// A live segment: copies are atomic word loads, so a concurrent writer in another process
/// gives wrong-but-valid bytes, never undefined behaviour.
impl ByteSource for crate::Segment {
    fn len_bytes(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = check_range(offset, buf.len() as u64, self.len_bytes())?;
        self.copy_out(at, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_outside_a_slice_fail_without_panicking() {
        let b = [7u8; 16];
        let s: &[u8] = &b;
        let mut out = [0u8; 8];
        assert!(s.read_at(8, &mut out).is_ok());
        assert!(s.read_at(9, &mut out).is_err());
        assert!(s.read_at(u64::MAX, &mut out).is_err());
        assert!(s.read_vec(0, u64::MAX).is_err());
        assert!(s.read_vec(u64::MAX, 1).is_err());
        assert_eq!(s.read_vec(4, 12).map(|v| v.len()).ok(), Some(12));
    }
}
