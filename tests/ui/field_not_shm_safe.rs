use shmchan::ShmSafe;

// A plain `repr(C)` struct that does not derive `ShmSafe`.
#[derive(Clone, Copy)]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(ShmSafe, Clone, Copy)]
#[repr(C)]
struct Shape {
    origin: Point,
    corners: [Point; 4],
    timeout: std::time::Duration,
}

fn main() {}
