use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Marker;

fn main() {}
