//! The derive's expansion refers to everything by absolute path: it compiles in a crate without
//! the implicit prelude, with the runtime crate reached under another name, and next to user
//! items that shadow every name the expansion could have used unqualified.
//!
//! Renaming the crate *in Cargo.toml* cannot be tested from this package (Cargo refuses two names
//! for one dependency); `extern crate shmchan as renamed` plus `#[shmchan(crate = "::renamed")]`
//! exercises the same code path: every generated path starts from the given crate path.

#![no_implicit_prelude]

extern crate core;
extern crate shmchan as renamed;
extern crate std;

use renamed::ShmSafe as DeriveShmSafe;

// Shadow what a careless expansion would pick up from the prelude or the crate root.
#[allow(dead_code)]
mod shadows {
    pub struct Option;
    pub struct Some;
    pub struct PhantomData;
    pub trait Clone {}
    pub trait Copy {}
    pub trait ShmSafe {}
    pub fn size_of() {}
    pub fn offset_of() {}
}
#[allow(unused_imports)]
use shadows::*;

#[allow(dead_code)]
mod __private {}

#[derive(DeriveShmSafe, ::core::clone::Clone, ::core::marker::Copy)]
#[shmchan(crate = "::renamed")]
#[repr(C)]
struct Inner {
    x: u32,
    y: u32,
}

#[derive(DeriveShmSafe, ::core::clone::Clone, ::core::marker::Copy)]
#[shmchan(crate = "::renamed")]
#[repr(C)]
struct Tick {
    seq: u64,
    levels: [u32; 2],
    inner: Inner,
}

#[derive(DeriveShmSafe, ::core::clone::Clone, ::core::marker::Copy)]
#[shmchan(crate = "::renamed")]
#[repr(C)]
struct Wrapped<T: renamed::ShmSafe, const N: usize>([T; N]);

// The default path `::shmchan` still works under `#![no_implicit_prelude]`.
#[derive(DeriveShmSafe, ::core::clone::Clone, ::core::marker::Copy)]
#[repr(transparent)]
struct DefaultPath(u64);

#[test]
fn derive_expands_without_prelude_and_with_renamed_crate() {
    let mut t = Tick {
        seq: 1,
        levels: [2, 3],
        inner: Inner { x: 4, y: 5 },
    };
    let mut v = TickViewMut::new(&mut t);
    v.set_seq(v.seq() + 1);
    v.levels().set(1, 9);
    v.inner().set_x(6);
    ::std::assert_eq!((t.seq, t.levels, t.inner.x), (2, [2, 9], 6));
    ::std::assert_eq!(<Tick as renamed::ShmSafe>::LAYOUT.fields.len(), 3);
    ::std::assert_eq!(<Wrapped<u16, 3> as renamed::ShmSafe>::LAYOUT.size, 6);
    let w = Wrapped([1u16, 2, 3]);
    ::std::assert_eq!(
        WrappedView::new(&w)._0().get(2),
        ::core::option::Option::Some(3)
    );
    ::std::assert_eq!(DefaultPathView::new(&DefaultPath(7))._0(), 7);
}
