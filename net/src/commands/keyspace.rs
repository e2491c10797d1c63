//! A core's keyspace: the engine's `Store` plus the round's pending `Batch`.
//!
//! This is the only module that talks to the engine, so the commands see
//! four operations: look a key up, stage a set, stage a delete, and flush.
//!
//! ## Group commit
//! Every write of one network round is staged into ONE pending engine batch,
//! applied atomically by [`Keyspace::commit`] at the end of the round (the
//! network loop sends the round's replies only after that). Point reads look
//! at the pending batch first and the store second, so a pipeline reads its
//! own writes. Commands that walk the store in key order (`SCAN`, `KEYS`,
//! `TRANGE`, `DBSIZE`, ...) first [`Keyspace::flush`] the pending batch: they
//! are rare and a snapshot cannot see unapplied writes. A write that does not
//! fit the pending batch (its op or byte budget) flushes it and starts a new
//! one. Batches are sized from the previous batch's use (powers of two, the
//! engine pool's size classes), so a steady load reuses pooled buffers and
//! an idle core's segments stay small.
//!
//! ## No acknowledged write is ever lost to the memory quota
//! A reply is appended as soon as a write is staged, but the batch is
//! applied later; an apply that then failed with `MemoryQuota` would turn an
//! already written `+OK` into a lie. The engine reserves a batch's memory
//! when the batch is created (`Store::new_batch`), never at `apply`, so the
//! quota is decided BEFORE a write is staged: when a write needs a new batch
//! and the engine refuses it, that write (and only it) is answered `-OOM`
//! and nothing was staged. Once staged, a write is applied; `apply` can then
//! only fail on a broken invariant (a foreign batch), which is counted and
//! logged.
//!
//! The engine counts its spare pooled buffers as used memory, so before
//! refusing a set we release them (`Store::trim`) and check again.
//!
//! Deletes must work on a full store (they are how users free memory, as
//! Redis runs `DEL` above `maxmemory`). So the engine's quota is the memory
//! limit plus [`DELETE_RESERVE_BYTES`], and a batch opened for a set is first
//! checked against the limit itself; a batch opened for a delete may use the
//! reserve. Sets that follow a delete into such a batch may use what is left
//! of it: the overshoot is bounded by the reserve.

use std::ops::Bound;
use std::time::Duration;

use tessera_engine::{Batch, BatchOp, Error as EngineError, Snapshot, Store, StoreConfig};

/// Engine quota beyond the memory limit, usable only by batches opened for
/// deletes (see the module docs).
pub const DELETE_RESERVE_BYTES: usize = 1 << 20;

/// Smallest and largest byte budget of a round's batch when sizing it from
/// the previous one; a single bigger write gets a batch of its own size.
pub const BATCH_BYTES_MIN: usize = 16 * 1024;
pub const BATCH_BYTES_HINT_MAX: usize = 4 << 20;
/// Smallest and largest op budget of a round's batch.
pub const BATCH_OPS_MIN: usize = 256;
pub const BATCH_OPS_HINT_MAX: usize = 16 * 1024;

/// Bytes an expiry takes in a batch (the engine stores it as a u64).
const EXPIRY_BYTES: usize = 8;

pub use tessera_engine::{KEY_LEN_MAX, VALUE_LEN_MAX};

/// Time the merger may run at the end of one round (it runs in steps so a
/// large merge never stalls a core's requests).
pub const MERGE_STEP_BUDGET: Duration = Duration::from_micros(200);

/// Why a write was refused. Nothing was staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// Over the memory limit: `-OOM`.
    OutOfMemory,
    KeyTooLong {
        len: usize,
        max: usize,
    },
    ValueTooLong {
        len: usize,
        max: usize,
    },
    /// One request's writes exceed what one engine batch may hold.
    TooLargeForBatch,
    /// Any other engine refusal (a bug or a limit we do not model).
    Engine,
}

/// A live record as the commands see it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub value: &'a [u8],
    pub expire_at_ms: Option<u64>,
}

/// Counters for `INFO`.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyspaceCounters {
    pub batches_applied: u64,
    pub writes_applied: u64,
    pub writes_refused_oom: u64,
    pub apply_failures: u64,
    /// Engine merges finished (the merger's progress, for audits).
    pub merges_completed: u64,
}

pub struct Keyspace {
    store: Store,
    pending: Option<Batch>,
    batch_ops_max: usize,
    batch_bytes_max: usize,
    memory_limit_bytes: usize,
    /// Budgets for the next batch, from the last one's use.
    batch_ops_hint: usize,
    batch_bytes_hint: usize,
    /// The byte budget the pending batch was opened with.
    pending_bytes_max: usize,
    pub counters: KeyspaceCounters,
}

impl Keyspace {
    pub fn new(memory_limit_bytes: usize, now_ms: u64) -> Result<Keyspace, EngineError> {
        let defaults = StoreConfig::default();
        let config = StoreConfig {
            memory_quota_bytes: memory_limit_bytes.saturating_add(DELETE_RESERVE_BYTES),
            merge_step_budget: MERGE_STEP_BUDGET,
            ..defaults
        };
        let batch_ops_max = config.batch_ops_max;
        let batch_bytes_max = config.batch_bytes_max;
        assert!(batch_ops_max > 0 && batch_bytes_max > 0);
        let mut store = Store::new(config)?;
        store.set_now_ms(now_ms);
        Ok(Keyspace {
            store,
            pending: None,
            batch_ops_max,
            batch_bytes_max,
            memory_limit_bytes,
            batch_ops_hint: BATCH_OPS_MIN,
            batch_bytes_hint: BATCH_BYTES_MIN,
            pending_bytes_max: 0,
            counters: KeyspaceCounters::default(),
        })
    }

    /// The expiry clock, Unix milliseconds; advanced once per round.
    pub fn now_ms(&self) -> u64 {
        self.store.now_ms()
    }

    pub fn memory_limit_bytes(&self) -> usize {
        self.memory_limit_bytes
    }

    pub fn memory_used_bytes(&self) -> usize {
        self.store.memory_used_bytes()
    }

    /// The live record of `key`: the pending batch's latest op wins.
    pub fn lookup(&self, key: &[u8]) -> Option<Record<'_>> {
        let now_ms = self.store.now_ms();
        let record = match self.pending.as_ref().and_then(|batch| batch.get(key)) {
            Some(BatchOp::Delete) => return None,
            Some(BatchOp::Set {
                value,
                expire_at_ms,
            }) => Record {
                value,
                expire_at_ms,
            },
            None => {
                let entry = self.store.get_entry(key)?;
                Record {
                    value: entry.value,
                    expire_at_ms: entry.expire_at_ms,
                }
            }
        };
        match record.expire_at_ms {
            Some(at_ms) if at_ms <= now_ms => None,
            _ => Some(record),
        }
    }

    pub fn exists(&self, key: &[u8]) -> bool {
        self.lookup(key).is_some()
    }

    fn check_lengths(key: &[u8], value_len: usize) -> Result<(), WriteError> {
        if key.len() > KEY_LEN_MAX {
            return Err(WriteError::KeyTooLong {
                len: key.len(),
                max: KEY_LEN_MAX,
            });
        }
        if value_len > VALUE_LEN_MAX {
            return Err(WriteError::ValueTooLong {
                len: value_len,
                max: VALUE_LEN_MAX,
            });
        }
        Ok(())
    }

    /// Makes room in the pending batch for `ops` ops of `bytes` batch bytes
    /// in total, flushing a full batch and opening a new one first. A batch
    /// opened for sets must fit the memory limit; one opened for deletes may
    /// use the reserve.
    fn reserve(
        &mut self,
        ops: usize,
        bytes: usize,
        for_set: bool,
    ) -> Result<&mut Batch, WriteError> {
        let fits = self
            .pending
            .as_ref()
            .is_some_and(|batch| batch.ops_left() >= ops && batch.bytes_left() >= bytes);
        if !fits {
            self.flush();
            let batch_ops = self.batch_ops_hint.max(ops);
            let batch_bytes = self.batch_bytes_hint.max(bytes);
            if batch_ops > self.batch_ops_max || batch_bytes > self.batch_bytes_max {
                return Err(WriteError::TooLargeForBatch);
            }
            let batch = match self.open_batch(batch_ops, batch_bytes, for_set) {
                Ok(batch) => batch,
                // Near the limit a batch sized for a whole round may not fit
                // while this write alone does.
                Err(WriteError::OutOfMemory) if (batch_ops, batch_bytes) != (ops, bytes) => {
                    self.open_batch(ops, bytes, for_set)?
                }
                Err(error) => return Err(error),
            };
            self.pending = Some(batch);
        }
        Ok(self
            .pending
            .as_mut()
            .expect("a pending batch was just ensured"))
    }

    fn open_batch(&mut self, ops: usize, bytes: usize, for_set: bool) -> Result<Batch, WriteError> {
        if for_set {
            // What the engine's pool will hold for this batch: data, two meta
            // words per op, and a power-of-two index of 4-byte slots.
            let needed = pooled_bytes(bytes)
                + pooled_bytes(ops * 16)
                + pooled_bytes((ops * 2).next_power_of_two() * 4);
            if self.store.memory_used_bytes() + needed > self.memory_limit_bytes {
                // Spare pooled buffers count as used; release them and look
                // again before refusing (only ever under memory pressure).
                self.store.trim();
                if self.store.memory_used_bytes() + needed > self.memory_limit_bytes {
                    self.counters.writes_refused_oom += 1;
                    return Err(WriteError::OutOfMemory);
                }
            }
        }
        self.pending_bytes_max = bytes;
        self.store.new_batch(ops, bytes).map_err(|error| {
            if matches!(error, EngineError::MemoryQuota { .. }) {
                self.counters.writes_refused_oom += 1;
            }
            engine_write_error(error)
        })
    }

    /// Checks and makes room for every `(key, value)` set at once, so a
    /// multi-key write (`MSET`) is staged whole or not at all: after `Ok`,
    /// staging these pairs with [`Keyspace::set`] cannot fail.
    pub fn admit<'a>(
        &mut self,
        pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), WriteError> {
        let (mut ops, mut bytes) = (0usize, 0usize);
        for (key, value) in pairs {
            Self::check_lengths(key, value.len())?;
            ops += 1;
            bytes += key.len() + value.len();
        }
        self.reserve(ops, bytes, true).map(|_| ())
    }

    pub fn set(
        &mut self,
        key: &[u8],
        value: &[u8],
        expire_at_ms: Option<u64>,
    ) -> Result<(), WriteError> {
        Self::check_lengths(key, value.len())?;
        let expiry_bytes = if expire_at_ms.is_some() {
            EXPIRY_BYTES
        } else {
            0
        };
        let batch = self.reserve(1, key.len() + value.len() + expiry_bytes, true)?;
        let staged = match expire_at_ms {
            None => batch.set(key, value),
            Some(at_ms) => batch.set_with_expiry(key, value, at_ms),
        };
        staged.map_err(engine_write_error)
    }

    /// Stages a set of a `len`-byte value that `fill` writes in place (no
    /// intermediate copy for values built from parts, e.g. `APPEND`).
    pub fn set_with(
        &mut self,
        key: &[u8],
        len: usize,
        expire_at_ms: Option<u64>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), WriteError> {
        Self::check_lengths(key, len)?;
        let expiry_bytes = if expire_at_ms.is_some() {
            EXPIRY_BYTES
        } else {
            0
        };
        let batch = self.reserve(1, key.len() + len + expiry_bytes, true)?;
        let slot = match expire_at_ms {
            None => batch.alloc_set(key, len),
            Some(at_ms) => batch.alloc_set_with_expiry(key, len, at_ms),
        }
        .map_err(engine_write_error)?;
        debug_assert_eq!(slot.len(), len);
        fill(slot);
        Ok(())
    }

    pub fn delete(&mut self, key: &[u8]) -> Result<(), WriteError> {
        Self::check_lengths(key, 0)?;
        let batch = self.reserve(1, key.len(), false)?;
        batch.delete(key).map_err(engine_write_error)
    }

    /// Applies the pending batch now. Admission control makes a failure an
    /// invariant violation (see the module docs); it is counted and logged.
    pub fn flush(&mut self) {
        if let Some(batch) = self.pending.take() {
            let ops = batch.len() as u64;
            if batch.is_empty() {
                return;
            }
            // Size the next batch for a round like this one.
            let used_ops = batch.len();
            let used_bytes = self.pending_bytes_max - batch.bytes_left();
            self.batch_bytes_hint = used_bytes
                .next_power_of_two()
                .clamp(BATCH_BYTES_MIN, BATCH_BYTES_HINT_MAX);
            self.batch_ops_hint = used_ops
                .next_power_of_two()
                .clamp(BATCH_OPS_MIN, BATCH_OPS_HINT_MAX);
            match self.store.apply(batch) {
                Ok(()) => {
                    self.counters.batches_applied += 1;
                    self.counters.writes_applied += ops;
                }
                Err(error) => {
                    self.counters.apply_failures += 1;
                    tracing::error!(%error, ops, "applying an admitted batch failed");
                    debug_assert!(false, "applying an admitted batch failed: {error}");
                }
            }
        }
    }

    /// End of a round: apply, advance the clock, merge a bounded step.
    pub fn commit(&mut self, now_ms: u64) {
        self.flush();
        if now_ms > self.store.now_ms() {
            self.store.set_now_ms(now_ms);
        }
        if self.store.merge_needed() {
            self.store.merge_step(MERGE_STEP_BUDGET);
            self.counters.merges_completed = self.store.merges_completed();
        }
    }

    /// A snapshot including every write staged so far.
    pub fn snapshot(&mut self) -> Snapshot {
        self.flush();
        self.store.snapshot()
    }

    /// Live keys, including every write staged so far.
    pub fn len(&mut self) -> usize {
        self.flush();
        self.store.len()
    }

    /// Drops every key, staged ones included.
    pub fn clear(&mut self) {
        self.pending = None;
        self.store.clear();
    }

    /// Moves the expiry clock (tests and simulation drive time by hand).
    pub fn set_now_ms(&mut self, now_ms: u64) {
        self.store.set_now_ms(now_ms);
    }
}

/// Largest buffer the engine's pool rounds up to a power of two; larger
/// ones are held at their exact size. Mirrors the engine's pool so the
/// memory check before opening a batch neither over- nor under-counts.
const POOL_ROUNDED_BYTES_MAX: usize = 8 << 20;

/// Bytes the engine's pool holds for a buffer of `bytes`.
fn pooled_bytes(bytes: usize) -> usize {
    if bytes <= POOL_ROUNDED_BYTES_MAX {
        bytes.next_power_of_two()
    } else {
        bytes
    }
}

fn engine_write_error(error: EngineError) -> WriteError {
    match error {
        EngineError::KeyTooLong { len, max } => WriteError::KeyTooLong { len, max },
        EngineError::ValueTooLong { len, max } => WriteError::ValueTooLong { len, max },
        EngineError::MemoryQuota { .. } => WriteError::OutOfMemory,
        EngineError::BatchTooLarge { .. } => WriteError::TooLargeForBatch,
        _ => WriteError::Engine,
    }
}

/// A live record with its key, as range scans yield it.
#[derive(Debug, Clone, Copy)]
pub struct KeyRecord<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Live records of `snapshot` between `start` and `end`, ascending (or
/// descending when `reverse`).
pub fn range<'a>(
    snapshot: &'a Snapshot,
    start: Bound<&'a [u8]>,
    end: Bound<&'a [u8]>,
    reverse: bool,
) -> Box<dyn Iterator<Item = KeyRecord<'a>> + 'a> {
    let now_ms = snapshot.now_ms();
    let live = move |entry: tessera_engine::Entry<'a>| {
        let expired = entry.expire_at_ms.is_some_and(|at_ms| at_ms <= now_ms);
        (!expired).then_some(KeyRecord {
            key: entry.key,
            value: entry.value,
        })
    };
    if reverse {
        Box::new(snapshot.range_rev((start, end)).filter_map(live))
    } else {
        Box::new(snapshot.range((start, end)).filter_map(live))
    }
}

/// Every live record of `snapshot`, ascending.
pub fn all(snapshot: &Snapshot) -> impl Iterator<Item = KeyRecord<'_>> + '_ {
    range(snapshot, Bound::Unbounded, Bound::Unbounded, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_000_000;

    fn keyspace(limit_bytes: usize) -> Keyspace {
        Keyspace::new(limit_bytes, NOW_MS).expect("store opens")
    }

    #[test]
    fn reads_see_staged_writes_then_applied_ones() {
        let mut ks = keyspace(8 << 20);
        ks.set(b"a", b"1", None).unwrap();
        ks.set(b"b", b"2", Some(NOW_MS + 10)).unwrap();
        ks.delete(b"a").unwrap();
        assert!(ks.lookup(b"a").is_none());
        assert_eq!(ks.lookup(b"b").unwrap().value, b"2");
        ks.commit(NOW_MS);
        assert!(ks.lookup(b"a").is_none());
        assert_eq!(ks.lookup(b"b").unwrap().expire_at_ms, Some(NOW_MS + 10));
        ks.commit(NOW_MS + 10);
        assert!(ks.lookup(b"b").is_none(), "expired at its deadline");
        assert_eq!(ks.counters.batches_applied, 1);
    }

    #[test]
    fn limits_are_checked_before_staging() {
        let mut ks = keyspace(8 << 20);
        let key = vec![b'k'; KEY_LEN_MAX + 1];
        assert_eq!(
            ks.set(&key, b"v", None),
            Err(WriteError::KeyTooLong {
                len: KEY_LEN_MAX + 1,
                max: KEY_LEN_MAX
            })
        );
        // Zeroed pages are never touched, so this costs no real memory.
        let value = vec![0u8; VALUE_LEN_MAX + 1];
        assert_eq!(
            ks.set(b"k", &value, None),
            Err(WriteError::ValueTooLong {
                len: VALUE_LEN_MAX + 1,
                max: VALUE_LEN_MAX
            })
        );
        assert!(ks.pending.is_none());
    }

    #[test]
    fn full_batches_roll_over_within_a_round() {
        let mut ks = keyspace(64 << 20);
        let ops = BATCH_OPS_MIN * 3;
        for i in 0..ops {
            ks.set(format!("key{i}").as_bytes(), b"value", None)
                .unwrap();
        }
        assert!(ks.counters.batches_applied >= 2);
        ks.commit(NOW_MS);
        assert_eq!(ks.len(), ops);
        // The next batch is sized from this round's use.
        assert!(ks.batch_ops_hint >= BATCH_OPS_MIN);
        assert!(ks.batch_ops_hint <= BATCH_OPS_HINT_MAX);
    }

    #[test]
    fn a_refused_write_leaves_earlier_ones_intact() {
        let mut ks = keyspace(1 << 20);
        let value = vec![7u8; 64 * 1024];
        let mut stored = 0;
        loop {
            match ks.set(format!("k{stored}").as_bytes(), &value, None) {
                Ok(()) => stored += 1,
                Err(WriteError::OutOfMemory) => break,
                Err(other) => panic!("{other:?}"),
            }
            assert!(stored < 100, "the limit never refused");
        }
        ks.commit(NOW_MS);
        for i in 0..stored {
            assert_eq!(
                ks.lookup(format!("k{i}").as_bytes()).unwrap().value,
                &value[..]
            );
        }
        // Deletes still go through on the full store.
        ks.delete(b"k0").unwrap();
        ks.commit(NOW_MS);
        assert!(ks.lookup(b"k0").is_none());
    }
}
