//! Shared by the `durable_*` scenarios: a glommio executor sized for the
//! test machine's 8 MiB RLIMIT_MEMLOCK, fresh directories, small batches.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};

use glommio::LocalExecutorBuilder;
use tessera_engine::{
    Batch, DataDir, Durability, DurableConfig, DurableStore, FaultPlan, FaultyLayer, FileLayer,
    PersistError, StoreConfig, UNPERSISTED_SEGMENTS_MAX,
};

/// Runs `future` on a fresh single-core executor.
pub fn run<T: 'static>(future: impl Future<Output = T> + 'static) -> T {
    LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .make()
        .expect("executor")
        .run(future)
}

/// An empty directory under the target dir (a real file system: O_DIRECT
/// does not work on tmpfs).
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn store_config() -> StoreConfig {
    StoreConfig {
        memory_quota_bytes: 64 << 20,
        ..StoreConfig::default()
    }
}

/// A batch of sets built on `store`.
pub fn sets<L: FileLayer>(durable: &mut DurableStore<L>, pairs: &[(&[u8], &[u8])]) -> Batch {
    let bytes = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    sets_with_room(durable, pairs, pairs.len(), bytes)
}

/// [`sets`] in a batch created for `ops` ops and `bytes` bytes (room to
/// grow, as async mode's open batch does).
pub fn sets_with_room<L: FileLayer>(
    durable: &mut DurableStore<L>,
    pairs: &[(&[u8], &[u8])],
    ops: usize,
    bytes: usize,
) -> Batch {
    let mut batch = durable.store_mut().new_batch(ops, bytes).unwrap();
    for (key, value) in pairs {
        batch.set(key, value).unwrap();
    }
    batch
}

/// The key [`commit_numbered`] writes for `i`: zero-padded, so keys sort
/// in the order they were written.
pub fn numbered_key(i: usize) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

/// Commits one set of [`numbered_key`]`(i)` per `i` in `keys`, a batch (and
/// so a segment) each.
pub async fn commit_numbered<L: FileLayer>(
    durable: &mut DurableStore<L>,
    keys: std::ops::Range<usize>,
) {
    for i in keys {
        let key = numbered_key(i);
        let batch = sets(durable, &[(&key, b"value")]);
        durable.commit(batch).await.unwrap();
    }
}

pub fn is_disk_error(error: &PersistError) -> bool {
    matches!(
        error,
        PersistError::DiskFull { .. } | PersistError::Io { .. }
    )
}

/// The config of an async-mode store flushing every `flush_interval_ms`.
/// Async mode where only the interval (or an explicit flush) starts a
/// write, so a test decides which commits share a group.
pub fn async_config(flush_interval_ms: u64) -> DurableConfig {
    DurableConfig {
        durability: Durability::Async { flush_interval_ms },
        flight_segments_min: UNPERSISTED_SEGMENTS_MAX,
        ..DurableConfig::default()
    }
}

/// Opens (or reopens) core 0's store of a one-core data dir at `root`.
pub async fn open_core0(root: &Path, config: DurableConfig) -> DurableStore {
    let data_dir = DataDir::open_or_create(root, 1).unwrap();
    let (durable, _) = DurableStore::open(&data_dir, 0, config, store_config())
        .await
        .unwrap();
    durable
}

/// Opens core 0's store in `dir` through a [`FaultyLayer`]; the returned
/// plan injects its faults.
pub async fn open_faulty(
    dir: &Path,
    config: DurableConfig,
) -> (FaultPlan, DurableStore<FaultyLayer>) {
    let plan = FaultPlan::new();
    let layer = FaultyLayer { plan: plan.clone() };
    let (durable, _) = DurableStore::open_with(layer, dir, 0, config, store_config())
        .await
        .unwrap();
    (plan, durable)
}

/// Every live record, in key order.
pub fn dump<L: FileLayer>(durable: &DurableStore<L>) -> Vec<(Vec<u8>, Vec<u8>)> {
    durable
        .store()
        .range(..)
        .map(|entry| (entry.key.to_vec(), entry.value.to_vec()))
        .collect()
}
