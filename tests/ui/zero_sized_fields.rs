use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Nothing {
    bytes: [u8; 0],
}

fn main() {}
