//! `Shared<T, SeqLock>` read and write of 8, 64 and 512-byte values, each next to a plain copy of
//! the same bytes in the same run, and read latency with one writer process and N reader
//! processes hammering the same value.
//!
//! `cargo bench -p shmchan --bench seqlock -- --warm-up-time 1 --measurement-time 2`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shmchan::{Segment, SeqLock, Shared, ShmSafe};
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn read_write<const N: usize>(c: &mut Criterion)
where
    [u64; N]: ShmSafe,
{
    let bytes = N * 8;
    let s = Shared::<[u64; N], SeqLock>::anonymous([1; N]).expect("anonymous shared value");
    let plain: Box<[u64; N]> = Box::new([1; N]);
    let mut plain_dst: Box<[u64; N]> = Box::new([0; N]);

    let mut g = c.benchmark_group(format!("seqlock/{bytes}B"));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("plain_copy_read", |b| b.iter(|| *black_box(&*plain)));
    g.bench_function("read", |b| b.iter(|| black_box(&s).read()));
    g.bench_function("plain_copy_write", |b| {
        b.iter(|| *black_box(&mut *plain_dst) = black_box([2; N]))
    });
    g.bench_function("store", |b| {
        b.iter(|| black_box(&s).store(black_box([2; N])))
    });
    g.bench_function("write_closure", |b| {
        b.iter(|| black_box(&s).write(|v| v[0] = v[0].wrapping_add(1)))
    });
    g.finish();
}

fn sizes(c: &mut Criterion) {
    read_write::<1>(c);
    read_write::<8>(c);
    read_write::<64>(c);
}

/// Forks a process that runs `f` until `stop` becomes non-zero, then `_exit`s.
fn spawn_until_stopped(stop: &AtomicU32, f: impl Fn()) -> libc::pid_t {
    // SAFETY: the child only runs `f` on memory mapped before the fork and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        while stop.load(Ordering::Relaxed) == 0 {
            for _ in 0..256 {
                f();
            }
        }
        // SAFETY: ends the forked child without running the parent's atexit handlers.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn reap(pid: libc::pid_t) {
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, core::ptr::null_mut(), 0) };
}

/// Read latency of this process while one writer process writes continuously and `others`
/// reader processes read continuously: reads per second across all readers is
/// `(others + 1) / latency` as long as there are enough cores.
fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("seqlock/64B_contended_read");
    for others in [0usize, 1, 3] {
        let s = Shared::<[u64; 8], SeqLock>::anonymous([0; 8]).expect("shared value");
        let flag = Segment::anonymous_raw(8).expect("stop flag");
        let stop = flag.atomic_u32(0).expect("flag word");
        let writer = spawn_until_stopped(stop, || s.write(|v| *v = [v[0] + 1; 8]));
        let readers: Vec<_> = (0..others)
            .map(|_| {
                spawn_until_stopped(stop, || {
                    black_box(s.read());
                })
            })
            .collect();
        g.bench_function(BenchmarkId::new("1_writer_readers", others + 1), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    let v = s.read();
                    assert!(v.iter().all(|&x| x == v[0]), "torn read");
                }
                t.elapsed()
            })
        });
        stop.store(1, Ordering::Relaxed);
        reap(writer);
        readers.into_iter().for_each(reap);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = sizes, contended
}
criterion_main!(benches);
