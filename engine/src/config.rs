//! Limits (named constants) and the store's configuration.

use crate::Error;
use std::time::Duration;

/// Longest key, in bytes. The meta word reserves 17 bits for the key length.
pub const KEY_LEN_MAX: usize = 64 * 1024;
/// Longest value, in bytes. The meta word reserves 29 bits for the value length.
pub const VALUE_LEN_MAX: usize = 256 * 1024 * 1024;
/// Hard cap on `StoreConfig::batch_ops_max`: op positions are `u32` in the
/// batch's hash table and the segment index.
pub const BATCH_OPS_LIMIT: usize = 1 << 24;
/// Hard cap on `StoreConfig::batch_bytes_max`: one batch must be able to hold
/// one largest record, and no more than a few of them.
pub const BATCH_BYTES_LIMIT: usize = 1 << 30;
/// Hard cap on the segment stack's height. Range iterators keep one cursor per
/// segment in a fixed array of this size (no allocation per range), and
/// `apply` finishes merges inline (a write stall) rather than exceed it.
pub const STACK_HEIGHT_LIMIT: usize = 64;
/// Hard cap on `StoreConfig::merge_step_budget`.
pub const MERGE_STEP_BUDGET_LIMIT: Duration = Duration::from_secs(1);

/// How one store behaves. Every field is validated by [`crate::Store::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Bytes of buffers (record data, meta, indexes, pooled spares) the store
    /// may hold. Batches that would need more fail with [`Error::MemoryQuota`].
    pub memory_quota_bytes: usize,
    /// Most ops one batch may be created for.
    pub batch_ops_max: usize,
    /// Most key/value bytes one batch may be created for.
    pub batch_bytes_max: usize,
    /// Above this many segments the store wants a merge (`merge_needed`).
    pub stack_height_max: usize,
    /// Upper bound on the thread CPU time one `merge_step` may take.
    pub merge_step_budget: Duration,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            memory_quota_bytes: 1 << 30,
            batch_ops_max: 64 * 1024,
            // One largest record (value, key and expiry) must fit in a batch.
            batch_bytes_max: VALUE_LEN_MAX + KEY_LEN_MAX + 8,
            stack_height_max: 8,
            merge_step_budget: Duration::from_micros(200),
        }
    }
}

impl StoreConfig {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        check(
            "memory_quota_bytes",
            self.memory_quota_bytes as u64,
            1,
            u64::MAX,
        )?;
        check(
            "batch_ops_max",
            self.batch_ops_max as u64,
            1,
            BATCH_OPS_LIMIT as u64,
        )?;
        check(
            "batch_bytes_max",
            self.batch_bytes_max as u64,
            1,
            BATCH_BYTES_LIMIT as u64,
        )?;
        // Half the hard limit leaves room for segments that pile up while a
        // long merge runs.
        check(
            "stack_height_max",
            self.stack_height_max as u64,
            2,
            STACK_HEIGHT_LIMIT as u64 / 2,
        )?;
        check(
            "merge_step_budget_us",
            self.merge_step_budget.as_micros() as u64,
            1,
            MERGE_STEP_BUDGET_LIMIT.as_micros() as u64,
        )?;
        Ok(())
    }
}

fn check(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), Error> {
    if value < min || value > max {
        return Err(Error::InvalidConfig {
            field,
            value,
            min,
            max,
        });
    }
    Ok(())
}
