//! Shapes `#[derive(ShmSafe)]` accepts, and the `LAYOUT` it computes for them.

use shmchan::{PrimKind, ShmSafe, TypeDesc};

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Inner {
    x: u32,
    y: u32,
}

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Tick {
    seq: u64,
    price: f64,
    levels: [u32; 4],
    inner: Inner,
}

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(C)]
struct Pair(u32, f32);

#[derive(ShmSafe, Clone, Copy, Debug, Default, PartialEq)]
#[repr(transparent)]
struct Meters(f64);

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C, align(16))]
struct Aligned {
    a: u64,
    b: u64,
}

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Generic<T: ShmSafe, const N: usize> {
    head: T,
    rest: [T; N],
}

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct WhereBound<T>
where
    T: ShmSafe,
{
    value: T,
}

#[derive(ShmSafe, Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Padded {
    flag: u8,
    _pad: [u8; 3],
    value: u32,
}

#[test]
fn layout_records_each_field_name_offset_size_and_type() {
    let l = Tick::LAYOUT;
    assert_eq!(l.type_name, "Tick");
    assert_eq!((l.size, l.align), (40, 8));
    let names: Vec<_> = l
        .fields
        .iter()
        .map(|f| (f.name, f.offset, f.size))
        .collect();
    assert_eq!(
        names,
        [
            ("seq", 0, 8),
            ("price", 8, 8),
            ("levels", 16, 16),
            ("inner", 32, 8)
        ]
    );
    assert_eq!(l.fields[0].ty, TypeDesc::Prim(PrimKind::U64));
    assert_eq!(l.fields[2].ty.to_string(), "[u32; 4]");
    assert_eq!(l.fields[3].ty, TypeDesc::Struct(&Inner::LAYOUT));
    assert_eq!(Tick::DESC, TypeDesc::Struct(&Tick::LAYOUT));
}

#[test]
fn tuple_fields_are_named_by_index_and_transparent_keeps_inner_layout() {
    let names: Vec<_> = Pair::LAYOUT
        .fields
        .iter()
        .map(|f| (f.name, f.offset))
        .collect();
    assert_eq!(names, [("0", 0), ("1", 4)]);
    assert_eq!((Meters::LAYOUT.size, Meters::LAYOUT.align), (8, 8));
}

#[test]
fn align_and_generic_instantiations_have_their_real_layout() {
    assert_eq!((Aligned::LAYOUT.size, Aligned::LAYOUT.align), (16, 16));
    let g = <Generic<u16, 3> as ShmSafe>::LAYOUT;
    assert_eq!((g.size, g.align), (8, 2));
    assert_eq!(g.fields[1].ty.to_string(), "[u16; 3]");
    assert_eq!(<WhereBound<i64> as ShmSafe>::LAYOUT.size, 8);
    assert_eq!(Padded::LAYOUT.fields[1].name, "_pad");
}

#[test]
fn generated_views_read_and_write_named_tuple_and_generic_fields() {
    let mut t = Tick::default();
    let mut v = TickViewMut::new(&mut t);
    v.set_price(1.5);
    v.levels().set(0, 7);
    v.inner().set_y(3);
    v.set_price(v.price() * 2.0);
    assert_eq!(t.price, 3.0);
    let r = TickView::new(&t);
    assert_eq!(r.inner().y(), 3);
    assert_eq!(r.levels().get(0), Some(7));
    let mut p = Pair(1, 2.0);
    let mut pv = PairViewMut::new(&mut p);
    pv.set_0(5);
    assert_eq!(pv._1(), 2.0);
    let mut g = Generic::<u16, 3> {
        head: 1,
        rest: [2; 3],
    };
    let mut gv = GenericViewMut::new(&mut g);
    gv.set_head(9);
    gv.rest().set(2, 4);
    assert_eq!(
        g,
        Generic {
            head: 9,
            rest: [2, 2, 4]
        }
    );
}
