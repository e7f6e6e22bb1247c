use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C, align(16))]
struct Slot {
    seq: u64,
}

fn main() {}
