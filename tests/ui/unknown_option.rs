use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
#[shmchan(krate = "shmchan")]
struct Tick {
    seq: u64,
}

fn main() {}
