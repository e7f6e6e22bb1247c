use shmchan::ShmSafe;

// Every problem of this struct is reported in one compilation.
#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Everything {
    ready: bool,
    seq: u64,
    letter: char,
    flag: u8,
    ratio: f64,
    owner: *const u8,
    timeout: std::time::Duration,
}

fn main() {}
