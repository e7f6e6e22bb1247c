use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Flags {
    ready: bool,
    _pad: [u8; 7],
    seq: u64,
}

fn main() {}
