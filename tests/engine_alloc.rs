//! Proves with a counting global allocator that point reads and range steps
//! never allocate, on a stack of several segments and through a snapshot,
//! and that a steady stream of same-sized batches reuses pooled buffers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;
use tessera_engine::{Store, StoreConfig};

struct Counting;

thread_local! {
    // `const` and destructor-free, so using it inside the allocator cannot
    // itself allocate or recurse.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        System.dealloc(pointer, layout)
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        System.realloc(pointer, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn key(i: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    key[8..].copy_from_slice(&i.to_le_bytes());
    key
}

fn store_with_several_segments() -> Store {
    let mut store = Store::new(StoreConfig {
        stack_height_max: 6,
        ..StoreConfig::default()
    })
    .unwrap();
    for round in 0..5u64 {
        let mut batch = store.new_batch(1000, 1000 * 64).unwrap();
        for i in 0..1000 {
            let i = round * 700 + i; // overlapping rounds shadow each other
            if i % 10 == 0 {
                batch.delete(&key(i)).unwrap();
            } else if i % 7 == 0 {
                batch
                    .set_with_expiry(&key(i), &[1; 32], store.now_ms() + 1)
                    .unwrap();
            } else {
                batch.set(&key(i), &[2; 32]).unwrap();
            }
        }
        store.apply(batch).unwrap();
    }
    assert!(
        store.stats().height >= 3,
        "reads must cross several segments"
    );
    store
}

#[test]
fn gets_and_range_steps_do_not_allocate() {
    let mut store = store_with_several_segments();
    store.set_now_ms(store.now_ms() + 10);
    let snapshot = store.snapshot();

    let before = allocations();
    let mut found = 0;
    for i in 0..5000 {
        found += usize::from(store.get(&key(i)).is_some());
        found += usize::from(snapshot.get_entry(&key(i)).is_some());
        found += usize::from(store.get(&key(i + 1_000_000)).is_some());
    }
    assert_eq!(allocations() - before, 0, "get allocated");
    assert!(found > 0);

    let before = allocations();
    let ascending = snapshot.range(..).count();
    let descending = snapshot.range_rev(..).count();
    let (low, high) = (key(100), key(200));
    let bounded = store.range(&low[..]..&high[..]).count() + store.range(&low[..]..).count();
    assert_eq!(
        allocations() - before,
        0,
        "range creation or steps allocated"
    );
    assert_eq!(ascending, descending);
    assert!(ascending > 1000 && bounded > 0);
}

#[test]
fn steady_batches_reuse_pooled_buffers() {
    let mut store = Store::new(StoreConfig::default()).unwrap();
    let apply_round = |store: &mut Store, round: u64| {
        let mut batch = store.new_batch(1000, 1000 * 48).unwrap();
        for i in 0..1000 {
            batch.set(&key(round * 1000 + i), &[3; 32]).unwrap();
        }
        store.apply(batch).unwrap();
    };
    // Warm up: the pool fills with one set of batch buffers, and the
    // segments made from them are merged away, returning theirs.
    for round in 0..20 {
        apply_round(&mut store, round);
        store.compact();
    }
    let rounds = 5;
    let mut counted = 0;
    for round in 0..rounds {
        let before = allocations();
        apply_round(&mut store, 100 + round);
        counted += allocations() - before;
        // Merging (not counted) gives the batch's buffers back to the pool.
        store.compact();
    }
    // Only the segment header (an `Rc`) is allocated per batch; every
    // buffer comes from the pool.
    assert!(
        counted <= rounds,
        "{counted} allocations in {rounds} batches"
    );
    assert_eq!(store.len(), 25_000);
    store.merge_step(Duration::from_millis(1));
}
