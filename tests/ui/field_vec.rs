use shmchan::ShmSafe;

#[derive(ShmSafe)]
#[repr(C)]
struct Book {
    levels: Vec<u32>,
}

fn main() {}
