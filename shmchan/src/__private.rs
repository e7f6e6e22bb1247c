//! Items the derive macro expands to. Not public API: names and signatures may change in any
//! release.

pub use crate::shm_safe::{Field, Layout, PrimKind, ShmSafe, TypeDesc};
pub use crate::view::{ArrayView, ArrayViewMut};
pub use core::marker::PhantomData;
pub use core::mem::{align_of, offset_of, size_of};
pub use core::option::Option;
pub use core::ptr;
