//! Values far larger than a thread's stack: created, written and read without ever being
//! built or copied on the stack, for both locks (a 64 MiB value on a thread with 256 KiB).

use shmchan::{FcntlLock, Key, Lock, Shared};

const WORDS: usize = 8 * 1024 * 1024; // 64 MiB of u64
type Big = [u64; WORDS];

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the thread panicked (or overflowed its stack)");
}

fn big_value_round_trip<L: Lock>(tag: &str) {
    let key = Key::name(&format!("/shmchan-test-big-{tag}-{}", std::process::id())).unwrap();
    on_small_stack(move || {
        let s = Shared::<Big, L>::create(key).expect("create a 64 MiB value");
        s.write(|v| {
            v[0] = 1;
            v[WORDS - 1] = 2;
        });
        let b = s.read_boxed();
        assert_eq!((b[0], b[1], b[WORDS - 1]), (1, 0, 2));
        let mut again = b;
        s.write(|v| v[1] = 3);
        s.read_into(&mut again);
        assert_eq!((again[0], again[1], again[WORDS - 1]), (1, 3, 2));
        let other = Shared::<Big, L>::open_or_create(key).expect("open it again");
        assert_eq!(other.read_boxed()[1], 3);
        assert_eq!(s.version(), 2);
        s.remove().expect("remove");
    });
}

#[test]
fn seqlock_value_of_64_mib_never_touches_a_256_kib_stack() {
    big_value_round_trip::<shmchan::SeqLock>("seq");
}

#[test]
fn fcntl_value_of_64_mib_never_touches_a_256_kib_stack() {
    big_value_round_trip::<FcntlLock>("fcntl");
    let key = Key::name(&format!("/shmchan-test-big-guard-{}", std::process::id())).unwrap();
    on_small_stack(move || {
        let s = Shared::<Big, FcntlLock>::create(key).unwrap();
        s.lock_write().unwrap()[5] = 9;
        assert_eq!(s.lock_read().unwrap()[5], 9);
        s.remove().unwrap();
    });
}
