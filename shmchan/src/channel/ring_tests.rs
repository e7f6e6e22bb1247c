//! Tests of the ring algorithm over heap memory, without system calls: the `miri_` ones run
//! under Miri in CI (`.ci/run`), which checks the slot hand-off for data races.

use std::alloc::Layout as AllocLayout;
use std::sync::Arc;

use super::*;

/// A heap-allocated, initialised ring for `u64` messages.
struct HeapRing {
    base: *mut u8,
    layout: AllocLayout,
    geometry: Geometry,
}

// SAFETY: the memory is only accessed through the ring protocol (atomics, owned slots).
unsafe impl Send for HeapRing {}
// SAFETY: as above.
unsafe impl Sync for HeapRing {}

impl HeapRing {
    fn new<T: ShmSafe>(capacity: usize) -> HeapRing {
        let geometry = Geometry::for_type::<T>(capacity).unwrap();
        let layout = AllocLayout::from_size_align(geometry.total_len().unwrap(), 128).unwrap();
        // SAFETY: non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!base.is_null());
        let geometry = geometry.placed_at(base);
        // SAFETY: aligned, sized for the geometry, private.
        unsafe { geometry.init(base) };
        HeapRing {
            base,
            layout,
            geometry,
        }
    }

    fn producer<T: ShmSafe>(&self) -> Producer<T> {
        // SAFETY: initialised for this geometry; the tests keep `self` alive (Arc) while the
        // halves are used, and create one producer and one consumer.
        unsafe { Producer::new(self.base, &self.geometry) }
    }

    fn consumer<T: ShmSafe>(&self) -> Consumer<T> {
        // SAFETY: as for `producer`.
        unsafe { Consumer::new(self.base, &self.geometry) }
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: initialised and alive.
        unsafe { &*(self.base as *const RingHeader) }
    }
}

impl Drop for HeapRing {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.base, self.layout) };
    }
}

#[test]
fn miri_ring_fills_then_empties() {
    let ring = HeapRing::new::<u64>(3);
    assert_eq!(ring.geometry.capacity, 4);
    let p = ring.producer::<u64>();
    let c = ring.consumer::<u64>();
    for round in 0..3u64 {
        for i in 0..4 {
            p.try_push(round * 10 + i).unwrap();
        }
        assert!(matches!(p.try_push(99), Err(PushError::Full(99))));
        for i in 0..4 {
            assert_eq!(c.try_pop().unwrap(), Some(round * 10 + i));
        }
        assert_eq!(c.try_pop().unwrap(), None);
    }
}

#[test]
fn miri_ring_hands_messages_between_threads_in_order() {
    const N: u64 = if cfg!(miri) { 300 } else { 100_000 };
    let ring = Arc::new(HeapRing::new::<[u64; 2]>(4));
    let r2 = Arc::clone(&ring);
    let producer = std::thread::spawn(move || {
        let p = r2.producer::<[u64; 2]>();
        let mut i = 0;
        while i < N {
            match p.try_push([i, !i]) {
                Ok(_) => i += 1,
                Err(PushError::Full(_)) => std::thread::yield_now(),
                Err(PushError::Corrupted(e)) => panic!("{e}"),
            }
        }
    });
    let c = ring.consumer::<[u64; 2]>();
    let mut next = 0;
    while next < N {
        match c.try_pop().unwrap() {
            Some(m) => {
                assert_eq!(m, [next, !next]);
                next += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    producer.join().unwrap();
}

#[test]
fn miri_ring_batches_between_threads() {
    const N: u32 = if cfg!(miri) { 200 } else { 50_000 };
    let ring = Arc::new(HeapRing::new::<u32>(8));
    let r2 = Arc::clone(&ring);
    let producer = std::thread::spawn(move || {
        let p = r2.producer::<u32>();
        let data: Vec<u32> = (0..N).collect();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let (n, _) = p.try_push_slice(&rest[..rest.len().min(5)]).unwrap();
            rest = &rest[n..];
            if n == 0 {
                std::thread::yield_now();
            }
        }
    });
    let c = ring.consumer::<u32>();
    let mut got = Vec::new();
    while got.len() < N as usize {
        if c.try_pop_into(&mut got, 3).unwrap() == 0 {
            std::thread::yield_now();
        }
    }
    producer.join().unwrap();
    assert!(got.iter().copied().eq(0..N));
}

#[test]
fn miri_ring_rejects_impossible_indices() {
    let ring = HeapRing::new::<u64>(4);
    let p = ring.producer::<u64>();
    let c = ring.consumer::<u64>();
    p.try_push(1).unwrap();
    // tail more than `cap` ahead of head. The committed message is still delivered (its
    // stamp says so); the ring is validated when it looks empty.
    ring.header().tail.0.store(50, Ordering::Relaxed);
    assert_eq!(c.try_pop().unwrap(), Some(1));
    assert!(matches!(c.try_pop(), Err(Error::Corrupted { .. })));
    // The producer sees its own index moved.
    assert!(matches!(p.try_push(2), Err(PushError::Corrupted(_))));
    // head ahead of tail.
    let ring = HeapRing::new::<u64>(4);
    let p = ring.producer::<u64>();
    let _c = ring.consumer::<u64>();
    for i in 0..4 {
        p.try_push(i).unwrap();
    }
    ring.header().head.0.store(9, Ordering::Relaxed);
    assert!(matches!(p.try_push(5), Err(PushError::Corrupted(_))));
}

#[test]
fn miri_ring_validation_refuses_other_types_and_short_mappings() {
    let ring = HeapRing::new::<u64>(4);
    let len = ring.geometry.total_len().unwrap();
    assert_eq!(
        Geometry::validate::<u64>(ring.header(), ring.base, len).unwrap(),
        ring.geometry
    );
    assert!(Geometry::validate::<u32>(ring.header(), ring.base, len).is_err());
    assert!(Geometry::validate::<u64>(ring.header(), ring.base, len - 1).is_err());
    ring.header().scribble_capacity(3);
    assert!(Geometry::validate::<u64>(ring.header(), ring.base, len).is_err());
    assert!(ring.geometry.check_unchanged(ring.header()).is_err());
}

#[test]
fn miri_header_layout_matches_the_documented_offsets() {
    assert_eq!(std::mem::offset_of!(RingHeader, tail), 128);
    assert_eq!(std::mem::offset_of!(RingHeader, head), 256);
    assert_eq!(std::mem::offset_of!(RingHeader, rx_wait), 384);
    assert_eq!(std::mem::offset_of!(RingHeader, tx_wait), 512);
    assert_eq!(std::mem::offset_of!(RingHeader, sender), 640);
    assert_eq!(std::mem::offset_of!(RingHeader, receiver), 1280);
    assert_eq!(size_of::<RingHeader>(), 1920);
    use super::super::liveness::Side;
    assert_eq!(std::mem::offset_of!(Side, role), 528);
    assert_eq!(size_of::<Side>(), 536);
}

#[test]
fn miri_a_new_producer_continues_after_one_that_died_between_stamp_and_publish() {
    let ring = HeapRing::new::<u64>(4);
    let c = ring.consumer::<u64>();
    {
        let dead = ring.producer::<u64>();
        dead.try_push(1).unwrap();
        // The second push stops after the stamp, before `tail` (the process was killed).
        // SAFETY: slot 1 is the producer's (head 0, tail 1, capacity 4).
        unsafe { dead.write_slot(1, 2) };
        dead.stamp(1);
    }
    assert_eq!(c.try_pop().unwrap(), Some(1));
    assert_eq!(c.try_pop().unwrap(), Some(2)); // taken by its stamp: head 2, tail 1
    let p = ring.producer::<u64>();
    p.resync().unwrap();
    p.try_push(3).unwrap();
    assert_eq!(c.try_pop().unwrap(), Some(3), "message lost or duplicated");
    assert_eq!(c.try_pop().unwrap(), None);
}

#[test]
fn miri_an_attaching_end_refuses_indices_near_u64_max() {
    let ring = HeapRing::new::<u64>(4);
    ring.header().tail.0.store(u64::MAX, Ordering::Relaxed);
    ring.header().head.0.store(u64::MAX, Ordering::Relaxed);
    assert!(matches!(
        ring.producer::<u64>().resync(),
        Err(Error::Corrupted { .. })
    ));
    assert!(matches!(
        ring.consumer::<u64>().resync(),
        Err(Error::Corrupted { .. })
    ));
    ring.header().tail.0.store(1 << 40, Ordering::Relaxed);
    ring.header().head.0.store(1 << 40, Ordering::Relaxed);
    assert!(ring.producer::<u64>().resync().is_ok());
}

#[test]
fn miri_loaned_slots_hand_over_between_threads_in_place() {
    // The loan path: reserve, write the slot in place, commit; peek, read in place, release.
    const N: u64 = if cfg!(miri) { 200 } else { 50_000 };
    let ring = Arc::new(HeapRing::new::<[u64; 2]>(4));
    let r2 = Arc::clone(&ring);
    let producer = std::thread::spawn(move || {
        let p = r2.producer::<[u64; 2]>();
        let mut i = 0;
        while i < N {
            let Some(index) = p.try_reserve().unwrap() else {
                std::thread::yield_now();
                continue;
            };
            assert_eq!(index, i);
            let slot = p.value_ptr(index);
            // SAFETY: the reserved slot is the producer's until `commit`; in bounds, aligned.
            unsafe {
                std::ptr::write_volatile(slot.cast::<u64>(), i);
                std::ptr::write_volatile(slot.cast::<u64>().add(1), !i);
            }
            p.commit(index).unwrap();
            i += 1;
        }
    });
    let c = ring.consumer::<[u64; 2]>();
    let mut next = 0;
    while next < N {
        let Some(index) = c.try_peek().unwrap() else {
            std::thread::yield_now();
            continue;
        };
        assert_eq!(index, next);
        let slot = c.value_ptr(index);
        // SAFETY: a peeked slot is the consumer's until `release_one`; in bounds, aligned.
        let words = unsafe {
            [
                std::ptr::read_volatile(slot.cast::<u64>()),
                std::ptr::read_volatile(slot.cast::<u64>().add(1)),
            ]
        };
        assert_eq!(words, [next, !next]);
        // A second peek without a release sees the same message.
        assert_eq!(c.try_peek().unwrap(), Some(index));
        assert!(c.release_one(index));
        // Releasing it again is refused (the head moved on).
        assert!(!c.release_one(index));
        next += 1;
    }
    producer.join().unwrap();
}
