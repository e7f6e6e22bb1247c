//! Typed views: field-by-field access to a [`ShmSafe`] value through a raw pointer, without ever
//! forming a reference to the whole value.
//!
//! `#[derive(ShmSafe)]` generates `<Name>View<'a>` and `<Name>ViewMut<'a>` for each struct; arrays
//! use [`ArrayView`] and [`ArrayViewMut`].

use crate::ShmSafe;
use core::marker::PhantomData;

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
    _life: PhantomData<&'a [T; N]>,
}

impl<T: ShmSafe, const N: usize> Clone for ArrayView<'_, T, N> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ShmSafe, const N: usize> Copy for ArrayView<'_, T, N> {}

impl<'a, T: ShmSafe, const N: usize> ArrayView<'a, T, N> {
    /// A view over an array in ordinary memory.
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
    pub unsafe fn from_raw(ptr: *const [T; N]) -> Self {
        ArrayView {
            ptr,
            _life: PhantomData,
        }
    }

    /// The number of elements, `N`.
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(&self) -> usize {
        N
    }

    /// The element at `index`, or `None` when `index >= N`.
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= N {
            return None;
        }
        // SAFETY: `index < N`, so the element lies inside the array the contract covers.
        Some(unsafe { core::ptr::read_volatile(self.ptr.cast::<T>().add(index)) })
    }

    /// A view of the element at `index` (a nested view for struct elements).
    pub fn view(&self, index: usize) -> Option<T::View<'a>> {
        if index >= N {
            return None;
        }
        // SAFETY: `index < N`; the element inherits the array's contract.
        Some(unsafe { T::view(self.ptr.cast::<T>().add(index)) })
    }

    /// Copies the whole array out.
    pub fn to_array(&self) -> [T; N] {
        // SAFETY: the contract makes the whole array readable.
        unsafe { core::ptr::read_volatile(self.ptr) }
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
    pub unsafe fn from_raw(ptr: *mut [T; N]) -> Self {
        ArrayViewMut {
            ptr,
            _life: PhantomData,
        }
    }

    /// The number of elements, `N`.
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(&self) -> usize {
        N
    }

    /// The element at `index`, or `None` when `index >= N`.
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
    pub fn set(&mut self, index: usize, value: T) {
        assert!(index < N, "index {index} out of bounds for an array of {N}");
        self.try_set(index, value);
    }

    /// Writes `value` at `index` and returns `true`, or returns `false` when `index >= N`.
    pub fn try_set(&mut self, index: usize, value: T) -> bool {
        if index >= N {
            return false;
        }
        // SAFETY: `index < N`; the contract gives us exclusive write access.
        unsafe { core::ptr::write_volatile(self.ptr.cast::<T>().add(index), value) };
        true
    }

    /// A read-write view of the element at `index`.
    pub fn view_mut(&mut self, index: usize) -> Option<T::ViewMut<'_>> {
        if index >= N {
            return None;
        }
        // SAFETY: `index < N`; the element inherits the array's exclusive contract for the
        // borrow of `self`.
        Some(unsafe { T::view_mut(self.ptr.cast::<T>().add(index)) })
    }

    /// Copies the whole array out.
    pub fn to_array(&self) -> [T; N] {
        // SAFETY: the contract makes the whole array readable.
        unsafe { core::ptr::read_volatile(self.ptr) }
    }

    /// Overwrites the whole array.
    pub fn store(&mut self, value: [T; N]) {
        // SAFETY: the contract gives us exclusive write access to the whole array.
        unsafe { core::ptr::write_volatile(self.ptr, value) }
    }
}
