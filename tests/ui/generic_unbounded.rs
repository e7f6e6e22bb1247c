use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Wrapper<T: Copy> {
    value: T,
}

fn main() {}
