use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Borrowed<'a> {
    bytes: &'a [u8; 4],
}

fn main() {}
