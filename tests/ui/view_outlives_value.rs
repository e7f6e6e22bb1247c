use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Tick {
    seq: u64,
}

fn main() {
    // A view borrows what it views: it cannot outlive it.
    let view = {
        let tick = Tick { seq: 1 };
        TickView::new(&tick)
    };
    let _ = view.seq();
}
