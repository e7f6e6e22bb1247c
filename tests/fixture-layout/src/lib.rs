//! Types compiled separately from the tests that compare their fingerprints.
//!
//! `tests/fingerprint.rs` in the root package holds copies of these definitions (same and
//! modified) and checks that `ShmSafe::FINGERPRINT` agrees across the two compilations exactly
//! when the layouts do. This crate is edition 2015 (the tests are 2024), which also checks that the
//! derive's expansion compiles in the oldest edition.

extern crate shmchan;

use shmchan::ShmSafe;

/// A nested struct; the copy in the test renames it, which must not change [`Tick`]'s fingerprint.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Inner {
    /// First coordinate.
    pub x: u32,
    /// Second coordinate.
    pub y: u32,
}

/// The reference definition.
#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
pub struct Tick {
    /// Sequence number.
    pub seq: u64,
    /// Last price.
    pub price: f64,
    /// Order book depth.
    pub levels: [u32; 4],
    /// A nested struct.
    pub inner: Inner,
}
