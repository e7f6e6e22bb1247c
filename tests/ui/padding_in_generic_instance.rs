use shmchan::ShmSafe;

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Tagged<T: ShmSafe> {
    tag: u8,
    value: T,
}

fn main() {
    // `Tagged<u8>` has no padding, `Tagged<u32>` has 3 bytes: only known per instantiation.
    let _ = <Tagged<u8> as ShmSafe>::LAYOUT;
    let _ = <Tagged<u32> as ShmSafe>::LAYOUT;
}
