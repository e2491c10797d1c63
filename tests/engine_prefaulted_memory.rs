//! A process that keeps freed memory (`retain_freed_memory`) and faulted in
//! its heap at start-up (`prefault_retained_memory`), as a server does to
//! keep page faults out of its merge steps: a store that grows from empty,
//! merging as it goes, writes every merge output into pages already backed.
//! Without the prefault each output bigger than any free hole came from the
//! heap's fresh top, a page fault per 4 KiB written inside the steps (up to
//! ~0.5 ms each on a VM whose host backs pages lazily).
//!
//! Without the test harness (`harness = false`): the allocator settings
//! apply to the heap of the process's main thread, which libtest would not
//! run the test on (its test threads already have heaps of their own).

use std::time::Duration;

use tessera_engine::{Error, Store, StoreConfig, PREFAULT_BYTES_MAX};

const PAGE_BYTES: u64 = 4096;
const PREFAULT_BYTES: usize = 256 << 20;
const KEYS: u64 = 400_000;
const BATCH_OPS: u64 = 5_000;

/// This thread's minor plus major page faults so far.
fn thread_page_faults() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
        0
    );
    (usage.ru_minflt + usage.ru_majflt) as u64
}

fn main() {
    let (faults, steps) = a_growing_store_merges_into_prefaulted_pages();
    println!("a_growing_store_merges_into_prefaulted_pages: ok ({faults} page faults in {steps} merge steps)");
}

/// Page faults taken inside merge steps, and the steps.
fn a_growing_store_merges_into_prefaulted_pages() -> (u64, u64) {
    assert!(
        tessera_engine::retain_freed_memory(),
        "glibc on Linux takes the settings"
    );
    assert!(matches!(
        tessera_engine::prefault_retained_memory(PREFAULT_BYTES_MAX + 1),
        Err(Error::InvalidConfig {
            field: "prefault_bytes",
            ..
        })
    ));
    assert_eq!(
        tessera_engine::prefault_retained_memory(PREFAULT_BYTES),
        Ok(true)
    );
    let mut store = Store::new(StoreConfig {
        stack_height_max: 4,
        ..StoreConfig::default()
    })
    .unwrap();
    let (mut merge_faults, mut merge_steps) = (0, 0);
    let mut next = 0u64;
    while next < KEYS {
        let mut batch = store
            .new_batch(BATCH_OPS as usize, BATCH_OPS as usize * 48)
            .unwrap();
        for key in next..next + BATCH_OPS {
            // Spread keys, so every merge interleaves its inputs.
            let key = key.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
            batch.set(&[key, key].concat(), &[key; 4].concat()).unwrap();
        }
        next += BATCH_OPS;
        store.apply(batch).unwrap();
        while store.merge_needed() {
            let faults = thread_page_faults();
            store.merge_step(Duration::from_millis(50));
            merge_faults += thread_page_faults() - faults;
            merge_steps += 1;
        }
    }
    store.compact();
    assert_eq!(store.len() as u64, KEYS);
    let stats = store.stats();
    assert!(stats.merges_completed >= 10, "{stats:?}");
    // The store's buffers alone, once written: every merge output holds at
    // least the records the store ends with, and there were many merges.
    let held_pages = stats.memory_used_bytes as u64 / PAGE_BYTES;
    assert!(held_pages > 5_000, "{stats:?}");
    assert!(
        merge_faults * 100 < held_pages,
        "{merge_faults} page faults in {merge_steps} merge steps (the store holds {held_pages} pages)"
    );
    (merge_faults, merge_steps)
}
