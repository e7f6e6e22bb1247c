use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(Rust)]
struct Tick {
    seq: u64,
    price: f64,
}

fn main() {}
