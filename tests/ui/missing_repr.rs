use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
struct Tick {
    seq: u64,
    price: f64,
}

fn main() {}
