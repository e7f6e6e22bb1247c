//! `ShmSafe::FINGERPRINT` is equal for the same definition compiled separately, and different
//! when any field's name, type, offset or order changes.
//!
//! `shmchan_fixture_layout::Tick` is compiled as its own crate; each module below holds a copy of
//! it, unchanged or with one change.

use shmchan::ShmSafe;
use shmchan_fixture_layout as fixture;

mod same {
    use shmchan::ShmSafe;

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Inner {
        pub x: u32,
        pub y: u32,
    }

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Tick {
        pub seq: u64,
        pub price: f64,
        pub levels: [u32; 4],
        pub inner: Inner,
    }
}

mod nested_renamed {
    use shmchan::ShmSafe;

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Point {
        pub x: u32,
        pub y: u32,
    }

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Tick {
        pub seq: u64,
        pub price: f64,
        pub levels: [u32; 4],
        pub inner: Point,
    }
}

mod field_renamed {
    use super::same::Inner;
    use shmchan::ShmSafe;

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Tick {
        pub sequence: u64,
        pub price: f64,
        pub levels: [u32; 4],
        pub inner: Inner,
    }
}

mod type_changed {
    use super::same::Inner;
    use shmchan::ShmSafe;

    // Same size and alignment, different type.
    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Tick {
        pub seq: i64,
        pub price: f64,
        pub levels: [u32; 4],
        pub inner: Inner,
    }
}

mod array_len_changed {
    use super::same::Inner;
    use shmchan::ShmSafe;

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Tick {
        pub seq: u64,
        pub price: f64,
        pub levels: [u32; 2],
        pub _pad: [u32; 2],
        pub inner: Inner,
    }
}

mod offset_changed {
    use super::same::Inner;
    use shmchan::ShmSafe;

    // Same names, types and order; `levels` moved by explicit padding.
    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Tick {
        pub seq: u64,
        pub price: f64,
        pub _pad: [u8; 8],
        pub levels: [u32; 4],
        pub inner: Inner,
    }
}

mod order_changed {
    use super::same::Inner;
    use shmchan::ShmSafe;

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Tick {
        pub price: f64,
        pub seq: u64,
        pub levels: [u32; 4],
        pub inner: Inner,
    }
}

mod nested_field_changed {
    use shmchan::ShmSafe;

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Inner {
        pub x: u32,
        pub z: u32,
    }

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Tick {
        pub seq: u64,
        pub price: f64,
        pub levels: [u32; 4],
        pub inner: Inner,
    }
}

mod type_renamed {
    use super::same::Inner;
    use shmchan::ShmSafe;

    #[derive(ShmSafe, Clone, Copy)]
    #[repr(C)]
    pub struct Quote {
        pub seq: u64,
        pub price: f64,
        pub levels: [u32; 4],
        pub inner: Inner,
    }
}

const REFERENCE: u64 = fixture::Tick::FINGERPRINT;

#[test]
fn same_definition_in_separate_crates_has_equal_fingerprint() {
    assert_eq!(same::Tick::FINGERPRINT, REFERENCE);
    assert_eq!(same::Tick::LAYOUT, fixture::Tick::LAYOUT);
}

#[test]
fn renaming_a_nested_type_keeps_the_fingerprint() {
    assert_eq!(nested_renamed::Tick::FINGERPRINT, REFERENCE);
}

#[test]
fn renaming_a_field_changes_the_fingerprint() {
    assert_ne!(field_renamed::Tick::FINGERPRINT, REFERENCE);
}

#[test]
fn changing_a_field_type_changes_the_fingerprint() {
    assert_ne!(type_changed::Tick::FINGERPRINT, REFERENCE);
    assert_ne!(array_len_changed::Tick::FINGERPRINT, REFERENCE);
}

#[test]
fn changing_an_offset_changes_the_fingerprint() {
    assert_ne!(offset_changed::Tick::FINGERPRINT, REFERENCE);
}

#[test]
fn reordering_fields_changes_the_fingerprint() {
    assert_ne!(order_changed::Tick::FINGERPRINT, REFERENCE);
}

#[test]
fn changing_a_nested_field_changes_the_fingerprint() {
    assert_ne!(nested_field_changed::Tick::FINGERPRINT, REFERENCE);
}

#[test]
fn renaming_the_top_level_type_changes_the_fingerprint() {
    assert_ne!(type_renamed::Quote::FINGERPRINT, REFERENCE);
}

#[test]
fn all_variants_are_pairwise_distinct() {
    let all = [
        REFERENCE,
        field_renamed::Tick::FINGERPRINT,
        type_changed::Tick::FINGERPRINT,
        array_len_changed::Tick::FINGERPRINT,
        offset_changed::Tick::FINGERPRINT,
        order_changed::Tick::FINGERPRINT,
        nested_field_changed::Tick::FINGERPRINT,
        type_renamed::Quote::FINGERPRINT,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

/// The fingerprint is stored in segments: a change of the algorithm or of the encoding would make
/// new builds refuse segments created by old ones. Pinning it makes such a change deliberate.
#[test]
#[cfg(all(target_endian = "little", target_pointer_width = "64"))]
fn fingerprint_of_reference_type_is_pinned() {
    assert_eq!(REFERENCE, 0x2131_614c_d49f_7d24);
}
