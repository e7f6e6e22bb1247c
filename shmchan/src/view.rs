//! Typed views: field-by-field access to a [`ShmSafe`] value through a raw pointer, without ever
//! forming a reference to the whole value.
//!
//! `#[derive(ShmSafe)]` generates `<Name>View<'a>` and `<Name>ViewMut<'a>` for each struct; arrays
//! use [`ArrayView`] and [`ArrayViewMut`].
//!
//! Two kinds of read view exist. One over memory nobody writes meanwhile (`new(&value)`,
//! `from_raw`: a reference, a private copy, memory under a lock) reads with volatile accesses,
//! which need no more than read access. One over memory another process may write at the same
//! time (`from_shared`, [`ShmSafe::view_shared`]: a channel slot read in place) reads with
//! `Relaxed` atomic accesses of the widest width the element's alignment allows: a volatile
//! read racing a write would be a data race (undefined behaviour), racing atomics only give a
//! wrong but valid value. Read-write views use volatile accesses: their memory is the caller's
//! alone under its protocol (a lock, a loaned slot).

use crate::ShmSafe;
use crate::sync::atomic_value::load_value;
use core::marker::PhantomData;

/// Reads the `T` at `p`: atomically if `shared` (memory another process may write), else with
/// a volatile read (memory nobody writes meanwhile, possibly behind a shared reference, where
/// atomics are not allowed).
///
/// # Safety
///
/// `p` aligned and valid for reads; if `shared`, the contract of [`ShmSafe::view_shared`], else
/// that of [`ShmSafe::view`].
#[inline]
unsafe fn read<T: ShmSafe>(p: *const T, shared: bool) -> T {
    if shared {
        // SAFETY: forwarded to the caller.
        unsafe { load_value(p) }
    } else {
        // SAFETY: forwarded to the caller.
        unsafe { core::ptr::read_volatile(p) }
    }
}

/// Read access to an array `[T; N]` in (possibly shared) memory.
///
/// # Examples
///
/// ```
/// use shmchan::view::ArrayView;
///
/// let levels = [1u32, 2, 3, 4];
/// let v = ArrayView::new(&levels);
/// assert_eq!(v.len(), 4);
/// assert_eq!(v.get(2), Some(3));
/// assert_eq!(v.get(4), None);
/// assert_eq!(v.to_array(), levels);
/// ```
pub struct ArrayView<'a, T: ShmSafe, const N: usize> {
    ptr: *const [T; N],
    /// Built by `from_shared`: read with atomic accesses.
    shared: bool,
    _life: PhantomData<&'a [T; N]>,
}

impl<T: ShmSafe, const N: usize> Clone for ArrayView<'_, T, N> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ShmSafe, const N: usize> Copy for ArrayView<'_, T, N> {}

/// Shows the address only: the elements may be in memory another process is writing.
impl<T: ShmSafe, const N: usize> core::fmt::Debug for ArrayView<'_, T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ArrayView")
            .field("ptr", &self.ptr)
            .field("len", &N)
            .finish()
    }
}

/// Shows the address only: the elements may be in memory another process is writing.
impl<T: ShmSafe, const N: usize> core::fmt::Debug for ArrayViewMut<'_, T, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ArrayViewMut")
            .field("ptr", &self.ptr)
            .field("len", &N)
            .finish()
    }
}

impl<'a, T: ShmSafe, const N: usize> ArrayView<'a, T, N> {
    /// A view over an array in ordinary memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::view::ArrayView;
    ///
    /// let v = ArrayView::new(&[1.5f64, 2.5]);
    /// assert_eq!(v.get(1), Some(2.5));
    /// ```
    pub fn new(array: &'a [T; N]) -> Self {
        // SAFETY: a shared reference is aligned, valid for reads for `'a`, and nobody writes
        // through it during `'a`.
        unsafe { Self::from_raw(array) }
    }

    /// A view over the array at `ptr`.
    ///
    /// # Safety
    ///
    /// The contract of [`ShmSafe::view`]: `ptr` aligned and valid for reads for `'a`, and not
    /// written during `'a` except under the caller's locking protocol.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::view::ArrayView;
    ///
    /// let words = [7u32; 3];
    /// // SAFETY: `words` is aligned, readable, and not written while the view is used.
    /// let v = unsafe { ArrayView::from_raw(&raw const words) };
    /// assert_eq!(v.to_array(), [7, 7, 7]);
    /// ```
    pub unsafe fn from_raw(ptr: *const [T; N]) -> Self {
        ArrayView {
            ptr,
            shared: false,
            _life: PhantomData,
        }
    }

    /// A view over the array at `ptr` in memory another process may write meanwhile: every
    /// read is a `Relaxed` atomic access, so such a write gives wrong but valid elements, never
    /// undefined behaviour.
    ///
    /// # Safety
    ///
    /// The contract of [`ShmSafe::view_shared`]: `ptr` aligned and valid for reads and writes
    /// for `'a` (a mapping or an `UnsafeCell`, not a shared reference's target), and anyone
    /// writing it meanwhile uses atomic accesses or is another process.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::view::ArrayView;
    /// use std::cell::UnsafeCell;
    ///
    /// let words = UnsafeCell::new([7u32; 3]);
    /// // SAFETY: aligned, valid for reads and writes, written by nobody meanwhile.
    /// let v = unsafe { ArrayView::from_shared(words.get()) };
    /// assert_eq!(v.get(2), Some(7));
    /// ```
    pub unsafe fn from_shared(ptr: *const [T; N]) -> Self {
        ArrayView {
            ptr,
            shared: true,
            _life: PhantomData,
        }
    }

    /// The number of elements, `N`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::view::ArrayView::new(&[0u8; 5]).len(), 5);
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(&self) -> usize {
        N
    }

    /// The element at `index` (a read of that element only: atomic in a shared view), or `None` when
    /// `index >= N`.
    ///
    /// # Examples
    ///
    /// ```
    /// let v = shmchan::view::ArrayView::new(&[10u16, 20]);
    /// assert_eq!((v.get(0), v.get(2)), (Some(10), None));
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= N {
            return None;
        }
        // SAFETY: `index < N`, so the element lies inside the array the contract covers.
        Some(unsafe { read(self.ptr.cast::<T>().add(index), self.shared) })
    }

    /// A view of the element at `index` (a nested view for struct elements, the value for
    /// numbers), or `None` when `index >= N`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::ShmSafe;
    /// use shmchan::view::ArrayView;
    ///
    /// #[derive(ShmSafe, Clone, Copy)]
    /// #[repr(C)]
    /// struct Level {
    ///     price: u32,
    ///     size: u32,
    /// }
    ///
    /// let book = [Level { price: 100, size: 3 }, Level { price: 101, size: 5 }];
    /// let v = ArrayView::new(&book);
    /// assert_eq!(v.view(1).map(|level| level.size()), Some(5));
    /// ```
    pub fn view(&self, index: usize) -> Option<T::View<'a>> {
        if index >= N {
            return None;
        }
        // SAFETY: `index < N`; the element inherits the array's contract.
        Some(unsafe {
            let p = self.ptr.cast::<T>().add(index);
            if self.shared {
                T::view_shared(p)
            } else {
                T::view(p)
            }
        })
    }

    /// Copies the whole array out.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::view::ArrayView::new(&[1i8, -1]).to_array(), [1, -1]);
    /// ```
    pub fn to_array(&self) -> [T; N] {
        // SAFETY: the contract makes the whole array readable.
        unsafe { read(self.ptr, self.shared) }
    }
}

/// Read-write access to an array `[T; N]` in (possibly shared) memory.
///
/// # Examples
///
/// ```
/// use shmchan::view::ArrayViewMut;
///
/// let mut levels = [0u32; 4];
/// let mut v = ArrayViewMut::new(&mut levels);
/// v.set(1, 7);
/// assert!(!v.try_set(9, 1));
/// assert_eq!(v.get(1), Some(7));
/// assert_eq!(levels, [0, 7, 0, 0]);
/// ```
pub struct ArrayViewMut<'a, T: ShmSafe, const N: usize> {
    ptr: *mut [T; N],
    _life: PhantomData<&'a mut [T; N]>,
}

impl<'a, T: ShmSafe, const N: usize> ArrayViewMut<'a, T, N> {
    /// A view over an array in ordinary memory.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut a = [0u64; 2];
    /// shmchan::view::ArrayViewMut::new(&mut a).set(1, 9);
    /// assert_eq!(a, [0, 9]);
    /// ```
    pub fn new(array: &'a mut [T; N]) -> Self {
        // SAFETY: a unique reference is aligned, valid for reads and writes, and exclusive for `'a`.
        unsafe { Self::from_raw(array) }
    }

    /// A view over the array at `ptr`.
    ///
    /// # Safety
    ///
    /// The contract of [`ShmSafe::view_mut`]: `ptr` aligned and valid for reads and writes for
    /// `'a`, and nobody else accesses it during `'a`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::view::ArrayViewMut;
    ///
    /// let mut a = [0u32; 4];
    /// // SAFETY: `a` is aligned, valid, and accessed only through the view while it is used.
    /// let mut v = unsafe { ArrayViewMut::from_raw(&raw mut a) };
    /// v.store([1, 2, 3, 4]);
    /// assert_eq!(a, [1, 2, 3, 4]);
    /// ```
    pub unsafe fn from_raw(ptr: *mut [T; N]) -> Self {
        ArrayViewMut {
            ptr,
            _life: PhantomData,
        }
    }

    /// The number of elements, `N`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(shmchan::view::ArrayViewMut::new(&mut [0u8; 3]).len(), 3);
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(&self) -> usize {
        N
    }

    /// The element at `index` (a volatile read of that element only), or `None` when
    /// `index >= N`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut a = [4u16, 5];
    /// let v = shmchan::view::ArrayViewMut::new(&mut a);
    /// assert_eq!((v.get(1), v.get(2)), (Some(5), None));
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= N {
            return None;
        }
        // SAFETY: `index < N`, inside the array the contract covers.
        Some(unsafe { core::ptr::read_volatile(self.ptr.cast::<T>().add(index)) })
    }

    /// Writes `value` at `index`.
    ///
    /// # Panics
    ///
    /// When `index >= N`, like slice indexing; [`try_set`](Self::try_set) does not panic.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut a = [0i32; 2];
    /// shmchan::view::ArrayViewMut::new(&mut a).set(0, -3);
    /// assert_eq!(a, [-3, 0]);
    /// ```
    pub fn set(&mut self, index: usize, value: T) {
        assert!(index < N, "index {index} out of bounds for an array of {N}");
        self.try_set(index, value);
    }

    /// Writes `value` at `index` (a volatile write of that element only) and returns `true`, or
    /// returns `false` when `index >= N`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut a = [0u8; 2];
    /// let mut v = shmchan::view::ArrayViewMut::new(&mut a);
    /// assert!(v.try_set(1, 7));
    /// assert!(!v.try_set(2, 7));
    /// assert_eq!(a, [0, 7]);
    /// ```
    pub fn try_set(&mut self, index: usize, value: T) -> bool {
        if index >= N {
            return false;
        }
        // SAFETY: `index < N`; the contract gives us exclusive write access.
        unsafe { core::ptr::write_volatile(self.ptr.cast::<T>().add(index), value) };
        true
    }

    /// A read-write view of the element at `index` (a nested view for struct elements, the
    /// value for numbers), or `None` when `index >= N`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmchan::ShmSafe;
    /// use shmchan::view::ArrayViewMut;
    ///
    /// #[derive(ShmSafe, Clone, Copy, Default)]
    /// #[repr(C)]
    /// struct Level {
    ///     price: u32,
    ///     size: u32,
    /// }
    ///
    /// let mut book = [Level::default(); 2];
    /// let mut v = ArrayViewMut::new(&mut book);
    /// if let Some(mut level) = v.view_mut(1) {
    ///     level.set_size(5);
    /// }
    /// assert_eq!(book[1].size, 5);
    /// ```
    pub fn view_mut(&mut self, index: usize) -> Option<T::ViewMut<'_>> {
        if index >= N {
            return None;
        }
        // SAFETY: `index < N`; the element inherits the array's exclusive contract for the
        // borrow of `self`.
        Some(unsafe { T::view_mut(self.ptr.cast::<T>().add(index)) })
    }

    /// Copies the whole array out.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut a = [1u8, 2];
    /// assert_eq!(shmchan::view::ArrayViewMut::new(&mut a).to_array(), [1, 2]);
    /// ```
    pub fn to_array(&self) -> [T; N] {
        // SAFETY: the contract makes the whole array readable.
        unsafe { core::ptr::read_volatile(self.ptr) }
    }

    /// A read view of the same array, borrowing this one.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut a = [5u8; 2];
    /// let v = shmchan::view::ArrayViewMut::new(&mut a);
    /// assert_eq!(v.as_view().get(0), Some(5));
    /// ```
    pub fn as_view(&self) -> ArrayView<'_, T, N> {
        // SAFETY: the read view lives no longer than `&self`, during which this view's exclusive
        // contract covers it; reads only.
        unsafe { ArrayView::from_raw(self.ptr) }
    }

    /// Overwrites the whole array.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut a = [0u8; 2];
    /// shmchan::view::ArrayViewMut::new(&mut a).store([3, 4]);
    /// assert_eq!(a, [3, 4]);
    /// ```
    pub fn store(&mut self, value: [T; N]) {
        // SAFETY: the contract gives us exclusive write access to the whole array.
        unsafe { core::ptr::write_volatile(self.ptr, value) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_view_reads_each_element_and_refuses_out_of_range() {
        let a = [1u16, 2, 3];
        let v = ArrayView::new(&a);
        assert_eq!(
            (v.get(0), v.get(2), v.get(3), v.get(usize::MAX)),
            (Some(1), Some(3), None, None)
        );
        assert_eq!(v.view(1), Some(2));
        assert_eq!(v.view(3), None);
        let copy = v;
        assert_eq!(copy.to_array(), a);
    }

    #[test]
    fn array_view_mut_writes_only_the_addressed_element() {
        let mut a = [0xA5A5_A5A5u32; 4];
        let mut v = ArrayViewMut::new(&mut a);
        v.set(2, 7);
        assert!(!v.try_set(4, 9));
        assert_eq!(v.view_mut(4), None);
        assert_eq!(v.as_view().get(2), Some(7));
        assert_eq!(a, [0xA5A5_A5A5, 0xA5A5_A5A5, 7, 0xA5A5_A5A5]);
    }

    #[test]
    #[should_panic(expected = "index 4 out of bounds for an array of 4")]
    fn array_view_mut_set_out_of_range_panics() {
        let mut a = [0u8; 4];
        ArrayViewMut::new(&mut a).set(4, 1);
    }

    #[test]
    fn array_views_over_raw_memory_of_nested_arrays() {
        // Heap memory reached only through raw pointers, as a segment's payload is.
        let raw = Box::into_raw(Box::new([[0i64; 2]; 3]));
        {
            // SAFETY: `raw` is a live, aligned, exclusively owned allocation for this block.
            let mut v = unsafe { ArrayViewMut::from_raw(raw) };
            if let Some(mut row) = v.view_mut(1) {
                row.set(0, -5);
            }
            v.store([[1, 2], [3, 4], [5, 6]]);
            if let Some(mut row) = v.view_mut(2) {
                row.set(1, 60);
            }
            // SAFETY: as above; the mutable view is not used while this one is.
            let r = unsafe { ArrayView::from_raw(raw.cast_const()) };
            assert_eq!(r.view(2).and_then(|row| row.get(1)), Some(60));
        }
        // SAFETY: `raw` came from `Box::into_raw` and no view of it remains.
        let back = unsafe { Box::from_raw(raw) };
        assert_eq!(*back, [[1, 2], [3, 4], [5, 60]]);
    }

    /// A shared view's reads racing a writer that stores the same words atomically: not a
    /// data race. The same loop through `from_raw` (volatile reads, what loans used before
    /// `view_shared`) is reported by Miri as a data race.
    #[test]
    fn miri_shared_views_may_race_atomic_writers() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let words = Arc::new([const { AtomicU64::new(0) }; 2]);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (words, stop) = (Arc::clone(&words), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    words[0].store(i, Ordering::Relaxed);
                    words[1].store(!i, Ordering::Relaxed);
                }
            })
        };
        // SAFETY: the atomics are valid for reads and writes while `words` lives, and the
        // writer only stores atomically.
        let v = unsafe { ArrayView::<u64, 2>::from_shared(words.as_ptr().cast()) };
        for _ in 0..20 {
            // Torn pairs are possible and valid: only the accesses are checked here.
            let _ = (v.get(0), v.view(1), v.to_array());
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }
}
