use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
union Bits {
    int: u64,
    float: f64,
}

fn main() {}
