use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Node {
    next: *const Node,
}

fn main() {}
