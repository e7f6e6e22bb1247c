use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Quote {
    bid: Option<u64>,
}

fn main() {}
