use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Order {
    flag: u8,
    quantity: u32,
}

fn main() {}
