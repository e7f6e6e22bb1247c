//! The generated views: each getter and setter reads or writes only its own field, through a raw
//! pointer, over ordinary memory and over memory that was never a Rust value (as a shared segment
//! is). Runs under Miri (`cargo +nightly miri test --test views`), which checks that no access
//! strays outside its field, no reference to the whole struct is formed where another thread
//! writes, and no uninitialised byte is read.

use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Mixed {
    a: u8,
    b: i8,
    c: u16,
    d: f32,
    e: u64,
    at: Point,
    path: [Point; 3],
    levels: [u32; 4],
}

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Pair(u32, f32);

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Slots<T: ShmSafe, const N: usize> {
    len: u64,
    items: [T; N],
}

/// A value whose every byte is `0xA5`, so that a stray write to a neighbour is visible.
fn sentinel() -> Mixed {
    Mixed {
        a: 0xA5,
        b: 0xA5u8 as i8,
        c: 0xA5A5,
        d: f32::from_bits(0xA5A5_A5A5),
        e: 0xA5A5_A5A5_A5A5_A5A5,
        at: Point {
            x: 0xA5A5_A5A5u32 as i32,
            y: 0xA5A5_A5A5u32 as i32,
        },
        path: [Point {
            x: 0xA5A5_A5A5u32 as i32,
            y: 0xA5A5_A5A5u32 as i32,
        }; 3],
        levels: [0xA5A5_A5A5; 4],
    }
}

/// Compares bit patterns (the sentinel `f32` is a NaN, which `PartialEq` never equates).
fn bits_eq(a: &Mixed, b: &Mixed) -> bool {
    a.d.to_bits() == b.d.to_bits() && Mixed { d: 0.0, ..*a } == Mixed { d: 0.0, ..*b }
}

#[test]
fn getters_read_each_field() {
    let m = Mixed {
        a: 1,
        b: -2,
        c: 3,
        d: 4.5,
        e: 6,
        at: Point { x: 7, y: 8 },
        path: [Point { x: 9, y: 10 }; 3],
        levels: [11, 12, 13, 14],
    };
    let v = MixedView::new(&m);
    assert_eq!((v.a(), v.b(), v.c(), v.d(), v.e()), (1, -2, 3, 4.5, 6));
    assert_eq!((v.at().x(), v.at().y()), (7, 8));
    assert_eq!(v.path().len(), 3);
    assert_eq!(v.path().view(2).map(|p| p.y()), Some(10));
    assert_eq!(v.path().view(3).map(|p| p.y()), None);
    assert_eq!(v.levels().to_array(), [11, 12, 13, 14]);
    assert_eq!(v.levels().get(4), None);
    assert_eq!(v.get(), m);
}

#[test]
fn each_setter_writes_only_its_field() {
    let expected_after = |f: &dyn Fn(&mut Mixed)| {
        let mut m = sentinel();
        f(&mut m);
        m
    };
    type Case = (&'static str, fn(&mut MixedViewMut<'_>), fn(&mut Mixed));
    let cases: [Case; 9] = [
        ("a", |v| v.set_a(1), |m| m.a = 1),
        ("b", |v| v.set_b(-1), |m| m.b = -1),
        ("c", |v| v.set_c(2), |m| m.c = 2),
        ("d", |v| v.set_d(0.5), |m| m.d = 0.5),
        ("e", |v| v.set_e(3), |m| m.e = 3),
        ("at.y", |v| v.at().set_y(4), |m| m.at.y = 4),
        (
            "path[1].x",
            |v| {
                if let Some(mut p) = v.path().view_mut(1) {
                    p.set_x(5);
                }
            },
            |m| m.path[1].x = 5,
        ),
        ("levels[2]", |v| v.levels().set(2, 6), |m| m.levels[2] = 6),
        (
            "at",
            |v| v.set_at(Point { x: 1, y: 2 }),
            |m| m.at = Point { x: 1, y: 2 },
        ),
    ];
    for (what, through_view, directly) in cases {
        let mut m = sentinel();
        through_view(&mut MixedViewMut::new(&mut m));
        let expected = expected_after(&directly);
        assert!(
            bits_eq(&m, &expected),
            "setting {what}: {m:?} != {expected:?}"
        );
    }
}

#[test]
fn mut_view_getters_allow_read_modify_write() {
    let mut m = Mixed::default();
    let mut v = MixedViewMut::new(&mut m);
    v.set_e(20);
    v.set_e(v.e() * 2 + 2);
    v.levels().set(0, 7);
    v.levels().set(0, v.levels().get(0).unwrap_or(0) + 1);
    assert_eq!(v.as_view().levels().get(0), Some(8));
    let copy = v.get();
    v.store(Mixed { a: 9, ..copy });
    assert_eq!(m.e, 42);
    assert_eq!(m.levels[0], 8);
    assert_eq!(m.a, 9);
}

#[test]
fn views_work_over_memory_that_was_never_a_rust_value() {
    // A zeroed, suitably aligned buffer stands for a freshly mapped segment.
    let mut buffer = vec![0u64; size_of::<Mixed>().div_ceil(8)];
    let ptr = buffer.as_mut_ptr().cast::<Mixed>();
    // SAFETY: `buffer` is 8-aligned (Mixed's alignment), large enough, zeroed (a valid Mixed:
    // every bit pattern is), and only used through this view until the view is dropped.
    let mut v = unsafe { MixedViewMut::from_raw(ptr) };
    v.set_c(0xBEEF);
    if let Some(mut p) = v.path().view_mut(2) {
        p.set_y(-1);
    }
    assert_eq!(v.get().c, 0xBEEF);
    // SAFETY: as above, and no mutable view is used any more.
    let r = unsafe { <Mixed as ShmSafe>::view(ptr) };
    assert_eq!(r.path().view(2).map(|p| p.y()), Some(-1));
    assert_eq!(r.e(), 0);
    drop(buffer);
}

#[test]
fn views_over_a_heap_value_through_the_trait() {
    let raw = Box::into_raw(Box::new(Pair(1, 2.0)));
    {
        // SAFETY: `raw` comes from a live `Box`, is aligned, and nothing else touches it in this
        // block.
        let mut v = unsafe { <Pair as ShmSafe>::view_mut(raw) };
        v.set_0(v._0() + 1);
        v.set_1(v._1() * 2.0);
        assert_eq!(v.as_ptr(), raw.cast_const());
    }
    // SAFETY: `raw` was produced by `Box::into_raw` above and no view of it remains.
    let back = unsafe { Box::from_raw(raw) };
    assert_eq!(*back, Pair(2, 4.0));
}

#[test]
fn generic_struct_views() {
    let mut s = Slots::<Point, 2> {
        len: 0,
        items: [Point::default(); 2],
    };
    let mut v = SlotsViewMut::new(&mut s);
    if let Some(mut p) = v.items().view_mut(1) {
        p.set_x(3);
    }
    v.set_len(v.len() + 2);
    let r: <Slots<Point, 2> as ShmSafe>::View<'_> = v.as_view();
    let copy = r; // views are `Copy`
    assert_eq!(copy.items().view(1).map(|p| p.x()), Some(3));
    assert_eq!(s.len, 2);
}

/// A pointer handed to another thread; the test arranges that the threads touch disjoint fields.
struct SendPtr(*mut Mixed);
// SAFETY: the two threads below access disjoint fields only.
unsafe impl Send for SendPtr {}

#[test]
fn field_accesses_do_not_touch_other_fields() {
    // One thread writes `e` while another reads and writes other fields through views of the same
    // struct. If any view access read or wrote the whole struct (or formed a reference to it),
    // Miri would report a data race on `e`'s bytes. This goes beyond the views' documented
    // contract (which covers the whole struct) to pin down the finer property they provide.
    let mut m = Mixed::default();
    let base: *mut Mixed = &mut m;
    let writer = SendPtr(base);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let writer = writer;
            for i in 0..50u64 {
                // SAFETY: `e` is touched by this thread only.
                unsafe { std::ptr::addr_of_mut!((*writer.0).e).write_volatile(i) };
            }
        });
        // SAFETY: `base` is valid and aligned; this thread never touches `e`.
        let mut v = unsafe { MixedViewMut::from_raw(base) };
        for i in 0..50u32 {
            v.set_d(i as f32);
            v.levels().set(3, i);
            v.at().set_x(v.at().x() + 1);
            assert_eq!(v.d(), i as f32);
        }
    });
    assert_eq!((m.e, m.at.x, m.levels[3]), (49, 50, 49));
}
