//! Generic structs whose parameters are bounded by `ShmSafe`, inline or in a where clause.

use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Pair<A: ShmSafe, B: shmchan::ShmSafe> {
    a: A,
    b: B,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Ring<T, const N: usize>
where
    T: ShmSafe + Default,
{
    head: u64,
    slots: [T; N],
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(transparent)]
struct Id<T: ShmSafe>(T);

fn main() {
    let mut p = Pair { a: 1u32, b: 2.0f32 };
    let mut v = PairViewMut::new(&mut p);
    v.set_b(v.b() * 2.0);
    assert_eq!(p.b, 4.0);

    let mut r = Ring::<u64, 4> { head: 0, slots: [0; 4] };
    let mut v = RingViewMut::new(&mut r);
    v.slots().set(3, 9);
    v.set_head(1);
    assert_eq!(r.slots[3], 9);

    assert_eq!(<Id<Pair<u32, u32>> as ShmSafe>::LAYOUT.size, 8);
}
