//! Shared by the `durable_*` scenarios: a glommio executor sized for the
//! test machine's 8 MiB RLIMIT_MEMLOCK, fresh directories, small batches.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;

use glommio::LocalExecutorBuilder;
use tessera_engine::{Batch, PersistError, StoreConfig};

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
pub fn sets<L: tessera_engine::FileLayer>(
    durable: &mut tessera_engine::DurableStore<L>,
    pairs: &[(&[u8], &[u8])],
) -> Batch {
    let bytes = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut batch = durable.store_mut().new_batch(pairs.len(), bytes).unwrap();
    for (key, value) in pairs {
        batch.set(key, value).unwrap();
    }
    batch
}

pub fn is_disk_error(error: &PersistError) -> bool {
    matches!(
        error,
        PersistError::DiskFull { .. } | PersistError::Io { .. }
    )
}
