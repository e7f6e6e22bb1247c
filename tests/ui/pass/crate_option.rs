//! `#[shmchan(crate = "...")]` points the derive at a re-export of the runtime crate.

mod reexport {
    pub use shmchan::*;
}

#[derive(shmchan::ShmSafe, Clone, Copy)]
#[shmchan(crate = "crate::reexport")]
#[repr(C)]
struct Tick {
    seq: u64,
}

fn main() {
    let t = Tick { seq: 5 };
    assert_eq!(TickView::new(&t).seq(), 5);
}
