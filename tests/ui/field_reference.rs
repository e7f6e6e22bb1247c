use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Named {
    name: &'static str,
}

fn main() {}
