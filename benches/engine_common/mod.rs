//! Shared workload for the engine benchmarks: 16-byte random keys, 32-byte
//! values, loaded the way a server would (batches plus merge steps).
//!
//! Included with `#[path]` by each bench target (benches are separate crates;
//! a subdirectory keeps cargo from taking this file for a bench of its own).

use std::time::Duration;
use tessera_engine::{Entry, Store, StoreConfig};

pub const KEY_LEN: usize = 16;
pub const VALUE_LEN: usize = 32;
pub const LOAD_BATCH_OPS: usize = 50_000;

/// True under `cargo bench`; false when `cargo test --all-targets` runs the
/// bench binaries as smoke tests, where workloads shrink to stay fast.
pub fn benchmarking() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// Whether a criterion name filter on the command line (if any) can match
/// benchmarks of `group`, so expensive setups of filtered-out groups are
/// skipped (criterion filters benchmarks, not the setup code around them).
pub fn selected(group: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|filter| group.contains(filter.as_str()) || filter.contains(group))
}

/// `n`, or a thousandth of it when only smoke-testing.
pub fn scaled(n: usize) -> usize {
    if benchmarking() {
        n
    } else {
        (n / 1000).max(100)
    }
}

/// splitmix64: deterministic, well-spread keys without a dependency.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn key(i: u64) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    key[..8].copy_from_slice(&mix(i).to_le_bytes());
    key[8..].copy_from_slice(&mix(i ^ 0xABCD).to_le_bytes());
    key
}

pub fn value(i: u64) -> [u8; VALUE_LEN] {
    let mut value = [0u8; VALUE_LEN];
    for (chunk, salt) in value.chunks_exact_mut(8).zip(1u64..) {
        chunk.copy_from_slice(&mix(i.wrapping_mul(salt)).to_le_bytes());
    }
    value
}

/// Keys `0..n` in a random order, for lookups that defeat the prefetcher.
pub fn shuffled_keys(n: usize) -> Vec<[u8; KEY_LEN]> {
    let mut order: Vec<u64> = (0..n as u64).collect();
    for i in (1..order.len()).rev() {
        let j = (mix(i as u64 ^ 0x5EED) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order.into_iter().map(key).collect()
}

pub fn bench_config() -> StoreConfig {
    StoreConfig {
        memory_quota_bytes: 8 << 30,
        batch_ops_max: 1 << 20,
        batch_bytes_max: 64 << 20,
        stack_height_max: 8,
        merge_step_budget: Duration::from_micros(200),
    }
}

/// Builds and applies one batch setting keys `*next..*next + ops`, and
/// advances `*next` past them.
pub fn apply_fresh(store: &mut Store, next: &mut u64, ops: usize) {
    let mut batch = store.new_batch(ops, ops * (KEY_LEN + VALUE_LEN)).unwrap();
    for _ in 0..ops {
        batch.set(&key(*next), &value(*next)).unwrap();
        *next += 1;
    }
    store.apply(batch).unwrap();
}

/// A store holding keys `0..n`, loaded in batches with the merger driven
/// between them, then fully merged (the state a long-running store settles in).
pub fn loaded_store(n: usize) -> Store {
    let mut store = Store::new(bench_config()).unwrap();
    let mut next = 0u64;
    while (next as usize) < n {
        let ops = LOAD_BATCH_OPS.min(n - next as usize);
        apply_fresh(&mut store, &mut next, ops);
        while store.merge_needed() {
            store.merge_step(Duration::from_secs(1));
        }
    }
    store.compact();
    store.trim();
    assert_eq!(store.len(), n);
    store
}

/// Reads every byte of a record (as a consumer of a scan would), so scan
/// figures are bytes actually delivered, not lengths summed from metadata.
#[inline]
pub fn touch(key: &[u8], value: &[u8]) -> u64 {
    key.iter()
        .chain(value)
        .fold(0u64, |sum, &byte| sum.wrapping_add(byte as u64))
}

/// Reads every record `entries` yields: the key and value bytes delivered,
/// and a checksum of them for `black_box`.
pub fn scan<'a>(entries: impl Iterator<Item = Entry<'a>>) -> (usize, u64) {
    let (mut bytes, mut sum) = (0, 0u64);
    for entry in entries {
        bytes += entry.key.len() + entry.value.len();
        sum = sum.wrapping_add(touch(entry.key, entry.value));
    }
    (bytes, sum)
}
