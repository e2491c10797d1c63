//! A process that keeps freed memory for reuse (`retain_freed_memory`, as
//! the server sets it): merges then write into memory earlier segments
//! held, whose pages were never released, so every byte a reused buffer
//! holds must be written before it is read. Many merges of large segments
//! (over the 1 MiB above which pages used to be released) overwrite and
//! delete keys, checked against a model after every batch.

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_engine::{MergeStatus, Store, StoreConfig};

#[test]
fn merges_reusing_retained_memory_stay_exact() {
    assert!(
        tessera_engine::retain_freed_memory(),
        "glibc on Linux takes the settings"
    );
    let mut store = Store::new(StoreConfig {
        memory_quota_bytes: 512 << 20,
        stack_height_max: 3,
        ..StoreConfig::default()
    })
    .unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let keys = 20_000u64;
    let mut merges = 0;
    for round in 0..60u64 {
        // Each batch rewrites a third of the keys with values whose bytes
        // depend on the round, and deletes a few: stale bytes left in a
        // reused buffer would show as a wrong value or a ghost key.
        let mut batch = store.new_batch(8_000, 8_000 * 128).unwrap();
        for i in (round % 3..keys).step_by(3).take(7_000) {
            let key = format!("key-{i:08}").into_bytes();
            let value = vec![(round as u8).wrapping_add(i as u8); 64 + (i % 40) as usize];
            batch.set(&key, &value).unwrap();
            model.insert(key, value);
        }
        for i in (round * 7 % keys..keys).step_by(997).take(20) {
            let key = format!("key-{i:08}").into_bytes();
            batch.delete(&key).unwrap();
            model.remove(&key);
        }
        store.apply(batch).unwrap();
        while store.merge_needed() {
            if store.merge_step(Duration::from_millis(5)) == MergeStatus::Swapped {
                merges += 1;
            }
        }
        assert_eq!(store.len(), model.len(), "round {round}");
        for (key, value) in model.iter().step_by(101) {
            assert_eq!(store.get(key), Some(&value[..]), "round {round}");
        }
    }
    assert!(merges > 15, "only {merges} merges");
    let snapshot = store.snapshot();
    let all: Vec<(Vec<u8>, Vec<u8>)> = snapshot
        .range(..)
        .map(|entry| (entry.key.to_vec(), entry.value.to_vec()))
        .collect();
    assert_eq!(all, model.into_iter().collect::<Vec<_>>());
}
