use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C, packed)]
struct Tick {
    flag: u8,
    seq: u64,
}

fn main() {}
