use shmchan::ShmSafe;

// `ShmSafe` values are copied in and out of shared memory: the struct must be `Copy`.
#[derive(ShmSafe)]
#[repr(C)]
struct Tick {
    seq: u64,
}

fn main() {}
