use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Confusing {
    new: u32,
    price: u32,
    set_price: u32,
}

fn main() {}
