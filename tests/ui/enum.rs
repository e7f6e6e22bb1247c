use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(u8)]
enum Side {
    Buy,
    Sell,
}

fn main() {}
