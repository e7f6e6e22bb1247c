use shmchan::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Holder {
    value: Box<u64>,
}

fn main() {}
