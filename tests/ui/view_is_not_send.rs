use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Tick {
    seq: u64,
}

fn main() {
    // Views are raw pointers: handing one to another thread would let two threads write the same
    // bytes without the lock protocol. They are neither `Send` nor `Sync`.
    let mut tick = Tick { seq: 1 };
    let mut view = TickViewMut::new(&mut tick);
    std::thread::scope(|s| {
        s.spawn(move || view.set_seq(2));
    });
}
