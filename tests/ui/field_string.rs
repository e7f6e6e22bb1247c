use shmchan::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Symbol {
    name: String,
}

fn main() {}
