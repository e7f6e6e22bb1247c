//! The [`ShmSafe`] impls of this crate: the primitive numbers and arrays.
//!
//! A primitive's [`view`](ShmSafe::view), its "mut view" (the current value) and the write
//! back are volatile accesses (memory nobody else writes meanwhile); its
//! [`view_shared`](ShmSafe::view_shared) is a `Relaxed` atomic load (memory a peer may write).

use super::{ARRAY_FIELD, Field, Layout, PrimKind, ShmSafe, TypeDesc};
use crate::sync::atomic_value::load_value;

macro_rules! impl_prim {
    ($($t:ty => $kind:ident),* $(,)?) => {$(
        // SAFETY: primitive numbers have a fixed size, no padding, no pointers, and every bit
        // pattern is a valid value; `view`/`view_mut` read exactly `size_of::<$t>()` bytes.
        unsafe impl ShmSafe for $t {
            const LAYOUT: Layout = Layout {
                type_name: stringify!($t),
                size: core::mem::size_of::<$t>(),
                align: core::mem::align_of::<$t>(),
                fields: &[],
            };
            const DESC: TypeDesc = TypeDesc::Prim(PrimKind::$kind);
            type View<'a> = $t;
            type ViewMut<'a> = $t;

            #[inline]
            unsafe fn view<'a>(ptr: *const Self) -> Self::View<'a> {
                // SAFETY: the caller guarantees `ptr` is aligned and valid for reads and that
                // nobody writes it concurrently outside the caller's protocol.
                unsafe { core::ptr::read_volatile(ptr) }
            }

            #[inline]
            unsafe fn view_shared<'a>(ptr: *const Self) -> Self::View<'a> {
                // SAFETY: the caller guarantees `ptr` is aligned and valid for reads and
                // writes; a concurrent write is atomic or another process's.
                unsafe { load_value(ptr) }
            }

            #[inline]
            unsafe fn view_mut<'a>(ptr: *mut Self) -> Self::ViewMut<'a> {
                // SAFETY: as for `view`; a primitive "mut view" is just its current value.
                unsafe { core::ptr::read_volatile(ptr) }
            }

            #[inline]
            unsafe fn commit_view_mut(view: &$t, ptr: *mut Self) {
                // SAFETY: the caller guarantees `ptr` is aligned, writable and exclusively its.
                unsafe { core::ptr::write_volatile(ptr, *view) }
            }
        }
    )*};
}

impl_prim! {
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, u128 => U128, usize => Usize,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, i128 => I128, isize => Isize,
    f32 => F32, f64 => F64,
}

// SAFETY: an array of `ShmSafe` elements has no padding between elements (size is a multiple of
// align), no pointers, and every bit pattern is valid because every element's is. The views only
// touch the array's own `N * size_of::<T>()` bytes.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {
    const LAYOUT: Layout = Layout {
        type_name: "array",
        size: core::mem::size_of::<[T; N]>(),
        align: core::mem::align_of::<[T; N]>(),
        // One pseudo-field describing the whole array, so that the fingerprint tells `[u32; 4]`
        // from `[f32; 4]` and tools reading a segment know the element type.
        fields: &[Field {
            name: ARRAY_FIELD,
            offset: 0,
            size: core::mem::size_of::<[T; N]>(),
            ty: <[T; N] as ShmSafe>::DESC,
        }],
    };
    const DESC: TypeDesc = TypeDesc::Array {
        elem: &T::DESC,
        len: N,
    };
    type View<'a> = crate::view::ArrayView<'a, T, N>;
    type ViewMut<'a> = crate::view::ArrayViewMut<'a, T, N>;

    #[inline]
    unsafe fn view<'a>(ptr: *const Self) -> Self::View<'a> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { crate::view::ArrayView::from_raw(ptr) }
    }

    #[inline]
    unsafe fn view_shared<'a>(ptr: *const Self) -> Self::View<'a> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { crate::view::ArrayView::from_shared(ptr) }
    }

    #[inline]
    unsafe fn view_mut<'a>(ptr: *mut Self) -> Self::ViewMut<'a> {
        // SAFETY: forwarded from the caller's contract.
        unsafe { crate::view::ArrayViewMut::from_raw(ptr) }
    }
}
