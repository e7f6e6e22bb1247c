use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Order {
    price: u64,
    side: u8,
}

fn main() {}
