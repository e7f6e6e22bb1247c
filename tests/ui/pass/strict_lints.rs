//! The expansion is clean under strict lint settings in the user's crate.

#![deny(warnings, missing_docs, missing_debug_implementations, unused_qualifications)]
#![deny(rust_2018_idioms, unreachable_pub, unused_results, trivial_casts)]

//! A crate with strict lints.

use shmchan::ShmSafe;

/// A public type: its generated views are public too and must be documented.
#[derive(ShmSafe, Clone, Copy, Debug)]
#[repr(C)]
pub struct Tick {
    /// Sequence number.
    pub seq: u64,
    /// Order book depth.
    pub levels: [u32; 4],
}

/// A transparent wrapper with a zero-sized marker field.
#[derive(ShmSafe, Clone, Copy, Debug)]
#[repr(transparent)]
pub struct Meters(pub f64, [u8; 0]);

fn main() {
    let mut t = Tick { seq: 1, levels: [0; 4] };
    let mut v = TickViewMut::new(&mut t);
    v.set_seq(2);
    let _shown = format!("{v:?}");
    let _shown = format!("{:?}", TickView::new(&t));
    let m = Meters(1.0, []);
    assert_eq!(MetersView::new(&m)._0(), 1.0);
}
