//! `Shared<T, FcntlLock>` read and write next to a bare `fcntl` lock + unlock pair on the same
//! kind of lock file (OFD locks, byte 0), in the same run.
//!
//! `cargo bench -p shmchan --bench fcntl -- --warm-up-time 1 --measurement-time 2`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use shmchan::{FcntlLock, Shared};
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::time::Duration;

fn flock(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero is valid.
    let mut fl: libc::flock = unsafe { core::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 1;
    fl
}

fn bare_pair(fd: libc::c_int, kind: libc::c_int) {
    let lock = flock(kind);
    let unlock = flock(libc::F_UNLCK);
    // SAFETY: `fd` is an open file; the flock structs are valid for the calls.
    unsafe {
        assert_eq!(libc::fcntl(fd, libc::F_OFD_SETLKW, &lock), 0);
        assert_eq!(libc::fcntl(fd, libc::F_OFD_SETLK, &unlock), 0);
    }
}

fn fcntl(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("shmchan-bench-{}.lock", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("bench lock file");
    let fd = file.as_raw_fd();
    let s = Shared::<[u64; 8], FcntlLock>::anonymous([1; 8]).expect("shared value");

    let mut g = c.benchmark_group("fcntl/64B");
    g.bench_function("bare_rdlock_unlock", |b| {
        b.iter(|| bare_pair(fd, libc::F_RDLCK))
    });
    g.bench_function("read", |b| b.iter(|| black_box(&s).read()));
    g.bench_function("bare_wrlock_unlock", |b| {
        b.iter(|| bare_pair(fd, libc::F_WRLCK))
    });
    g.bench_function("store", |b| {
        b.iter(|| black_box(&s).store(black_box([2; 8])))
    });
    g.bench_function("write_closure", |b| {
        b.iter(|| black_box(&s).write(|v| v[0] = v[0].wrapping_add(1)))
    });
    g.finish();
    drop(file);
    let _ = std::fs::remove_file(&path);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = fcntl
}
criterion_main!(benches);
