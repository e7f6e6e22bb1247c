//! Every struct shape the derive accepts.

use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Named {
    seq: u64,
    price: f64,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Tuple(u32, f32, [u16; 2]);

#[derive(ShmSafe, Clone, Copy)]
#[repr(transparent)]
struct Wrapper(u64);

#[derive(ShmSafe, Clone, Copy)]
#[repr(C, align(16))]
struct Aligned {
    a: u64,
    b: u64,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
#[repr(align(8))]
struct SplitRepr {
    a: u32,
    b: u32,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Nested {
    aligned: Aligned,
    named: Named,
    wrapper: Wrapper,
    many: [Tuple; 3],
    _pad: [u8; 4],
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct ExplicitPadding {
    flag: u8,
    _pad: [u8; 7],
    seq: u64,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct RawNames {
    r#type: u32,
    r#match: u32,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct AllPrimitives {
    a: u128,
    b: i128,
    c: u64,
    d: i64,
    e: f64,
    f: usize,
    g: isize,
    h: u32,
    i: i32,
    j: f32,
    k: u16,
    l: i16,
    m: u8,
    n: i8,
    _pad: [u8; 6],
}

fn main() {
    let mut r = RawNames { r#type: 1, r#match: 2 };
    let mut v = RawNamesViewMut::new(&mut r);
    v.set_type(v.r#type() + v.r#match());
    assert_eq!(r.r#type, 3);

    let mut e = ExplicitPadding { flag: 1, _pad: [0; 7], seq: 2 };
    let mut v = ExplicitPaddingViewMut::new(&mut e);
    v.set_flag(v.flag() + 1);
    assert_eq!(v.seq(), 2);

    shmchan::assert_layout!(Nested, size = 80, align = 16);
    shmchan::assert_layout!(AllPrimitives, size = 96, align = 16);
    shmchan::assert_shm_safe!(SplitRepr);
}
