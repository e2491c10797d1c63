//! A core's keyspace: the engine's store (durable in the server) plus the
//! round's pending `Batch`.
//!
//! This is the only module that talks to the engine, so the commands see
//! four operations: look a key up, stage a set, stage a delete, and flush.
//!
//! ## Group commit
//! Every write of one network round is staged into ONE pending engine batch,
//! made durable (sync mode) or applied (memory) by [`Keyspace::commit`] at
//! the end of the round (the network loop sends the round's replies only
//! after that); a durable keyspace keeps the batch open over rounds (see
//! Durability). Point reads look
//! at the pending batch first and the store second, so a pipeline reads its
//! own writes. Commands that walk the store in key order (`SCAN`, `KEYS`,
//! `TRANGE`, `DBSIZE`, ...) first [`Keyspace::flush`] the pending batch: they
//! are rare and a snapshot cannot see unapplied writes. A write that does not
//! fit the pending batch (its op or byte budget) flushes it and starts a new
//! one. Batches are sized from the previous batch's use (powers of two, the
//! engine pool's size classes), so a steady load reuses pooled buffers and
//! an idle core's segments stay small.
//!
//! ## Durability (a keyspace opened with [`Keyspace::open`])
//! The store is the core's `DurableStore`. In both modes the pending batch
//! stays open over many rounds, like an LSM's memtable, and is applied only
//! when it fills up (its budgets double while it keeps filling, up to
//! [`BATCH_OPS_HINT_MAX`] and [`BATCH_BYTES_HINT_MAX`]) or a command needs a
//! snapshot; the ops that arrived since the last time are written to the
//! log as one commit (`DurableStore::log_staged`), and the batch's segment
//! needs no write of its own when it is applied (`apply_logged`).
//!
//! Measured at pipeline 16: a segment per round (about 1,700 a second) kept
//! the merger behind, the stack at its 64-segment limit and every GET
//! probing dozens of segments (p99 17 ms); applying every half interval
//! still made 200 small segments a second and cost the merger about 0.9 us
//! per written record, against about 0.2 us for 16k-op segments.
//!
//! ### Sync mode: one write and one fdatasync per round that wrote
//! [`Keyspace::commit`] logs the round's new ops (after any batch of the
//! round applied early, which is persisted with them) with one write and
//! one fdatasync, and returns only then, so the network loop sends the
//! round's replies after the writes are durable, however many connections
//! wrote (group commit). A round of reads costs no write. When the disk
//! fails (ENOSPC, EIO) the commit returns the error and none of the round's
//! writes stay: the store takes back the segments the round applied, and
//! the open batch is truncated to the ops earlier rounds logged
//! (`Batch::truncate`), so a key the round overwrote or deleted shows its
//! acknowledged value again. The command layer then answers every request
//! of the round with the error (`Shard`'s `round_failed`), reads included,
//! because a read in the round may have seen a write that is now gone.
//! `FLUSHDB` clears memory at once and the file is rewritten by the next
//! commit; sync mode persists nothing newer until that rewrite succeeds.
//!
//! ### Async mode: acknowledged once staged
//! In async mode a write is acknowledged once it is staged (reads see the
//! pending batch). Durability does not wait for the batch's apply: once the
//! oldest write not yet on disk is half the flush interval old
//! ([`COALESCE_INTERVAL_DIVISOR`]), the commit logs the ops that arrived
//! since the last time, so a write reaches the disk within the interval. A
//! disk error leaves them staged and the log is retried.
//!
//! A keyspace made with [`Keyspace::new`] lives in memory only: the command
//! layer's tests and benches, which drive rounds without an executor.
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
use std::time::{Duration, Instant};

use tessera_engine::{Batch, BatchOp, Error as EngineError, KeyHash, RecordHint, Snapshot};
use tessera_engine::{DurableConfig, DurableStore, PersistError, RecoveryReport};
use tessera_engine::{Store, StoreConfig};

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

/// Async mode applies (and persists) a batch kept open over rounds once its
/// first write is `flush_interval / COALESCE_INTERVAL_DIVISOR` old, leaving
/// the other half of the interval for the write and its fdatasync.
pub const COALESCE_INTERVAL_DIVISOR: u32 = 2;

/// Bytes an expiry takes in a batch (the engine stores it as a u64).
const EXPIRY_BYTES: usize = 8;

pub use tessera_engine::{KEY_LEN_MAX, VALUE_LEN_MAX};

/// Time the merger may run at the end of one round (it runs in steps so a
/// large merge never stalls a core's requests).
pub const MERGE_STEP_BUDGET: Duration = Duration::from_micros(200);
/// How soon an idle core comes back for a merge or compaction under way.
pub const MAINTENANCE_IDLE_WAKE: Duration = Duration::from_millis(1);

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
    /// Too many full batches of this round wait for the disk; retry once the
    /// round is committed.
    CommitPending,
}

/// A live record as the commands see it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub value: &'a [u8],
    pub expire_at_ms: Option<u64>,
}

/// What a prefetched request does with its key: a read looks in the open
/// batch and then the segments, a write only stages into the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Where the record a prefetched request will read probably is (see
/// [`Keyspace::prefetch_meta`]).
#[derive(Debug, Clone, Copy)]
pub enum PrefetchHint {
    Nowhere,
    Batch(RecordHint),
    Store(RecordHint),
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
    /// Rounds whose writes the disk refused (reported to their writers).
    pub commit_failures: u64,
    /// Consecutive failed background persistence steps.
    pub maintenance_failures: u64,
}

/// Where the keyspace's records live. One per core, built once and never
/// moved on the request path, so the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Backing {
    /// Memory only: the command layer's own tests and benches.
    Memory(Store),
    /// The core's durable store (the server).
    Durable(DurableStore),
}

pub struct Keyspace {
    backing: Backing,
    pending: Option<Batch>,
    batch_ops_max: usize,
    batch_bytes_max: usize,
    memory_limit_bytes: usize,
    /// Budgets for the next batch, from the last one's use.
    batch_ops_hint: usize,
    batch_bytes_hint: usize,
    /// The byte budget the pending batch was opened with.
    pending_bytes_max: usize,
    /// When the oldest write not yet in the log was staged.
    unlogged_since: Option<Instant>,
    /// Ops of the pending batch already in the log: acknowledged in sync
    /// mode, so a failed round truncates the batch back to them.
    logged_ops: usize,
    pub counters: KeyspaceCounters,
}

fn store_config(memory_limit_bytes: usize) -> StoreConfig {
    StoreConfig {
        memory_quota_bytes: memory_limit_bytes.saturating_add(DELETE_RESERVE_BYTES),
        merge_step_budget: MERGE_STEP_BUDGET,
        ..StoreConfig::default()
    }
}

impl Keyspace {
    /// A keyspace held in memory only (no persistence).
    pub fn new(memory_limit_bytes: usize, now_ms: u64) -> Result<Keyspace, EngineError> {
        let store = Store::new(store_config(memory_limit_bytes))?;
        Ok(Keyspace::with_backing(
            Backing::Memory(store),
            memory_limit_bytes,
            now_ms,
        ))
    }

    /// Opens (recovering) the core's durable store in `core_dir`.
    pub async fn open(
        core_dir: &std::path::Path,
        core: u32,
        config: DurableConfig,
        memory_limit_bytes: usize,
        now_ms: u64,
    ) -> Result<(Keyspace, RecoveryReport), PersistError> {
        let (durable, report) = DurableStore::open_with(
            tessera_engine::DmaLayer,
            core_dir,
            core,
            config,
            store_config(memory_limit_bytes),
        )
        .await?;
        let keyspace =
            Keyspace::with_backing(Backing::Durable(durable), memory_limit_bytes, now_ms);
        Ok((keyspace, report))
    }

    fn with_backing(backing: Backing, memory_limit_bytes: usize, now_ms: u64) -> Keyspace {
        let config = store_config(memory_limit_bytes);
        let batch_ops_max = config.batch_ops_max;
        let batch_bytes_max = config.batch_bytes_max;
        assert!(batch_ops_max > 0 && batch_bytes_max > 0);
        let mut keyspace = Keyspace {
            backing,
            pending: None,
            batch_ops_max,
            batch_bytes_max,
            memory_limit_bytes,
            batch_ops_hint: BATCH_OPS_MIN,
            batch_bytes_hint: BATCH_BYTES_MIN,
            pending_bytes_max: 0,
            unlogged_since: None,
            logged_ops: 0,
            counters: KeyspaceCounters::default(),
        };
        keyspace.store_mut().set_now_ms(now_ms);
        keyspace
    }

    fn store(&self) -> &Store {
        match &self.backing {
            Backing::Memory(store) => store,
            Backing::Durable(durable) => durable.store(),
        }
    }

    fn store_mut(&mut self) -> &mut Store {
        match &mut self.backing {
            Backing::Memory(store) => store,
            Backing::Durable(durable) => durable.store_mut(),
        }
    }

    /// The durable store, when there is one (INFO, the flush timer).
    pub fn durable(&self) -> Option<&DurableStore> {
        match &self.backing {
            Backing::Memory(_) => None,
            Backing::Durable(durable) => Some(durable),
        }
    }

    /// The expiry clock, Unix milliseconds; advanced once per round.
    pub fn now_ms(&self) -> u64 {
        self.store().now_ms()
    }

    pub fn memory_limit_bytes(&self) -> usize {
        self.memory_limit_bytes
    }

    pub fn memory_used_bytes(&self) -> usize {
        self.store().memory_used_bytes()
    }

    /// Segments in the engine's stack (INFO: what a point read may probe).
    pub fn stack_height(&self) -> usize {
        self.store().height()
    }

    /// The live record of `key`: the pending batch's latest op wins.
    pub fn lookup(&self, key: &[u8]) -> Option<Record<'_>> {
        let now_ms = self.store().now_ms();
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
                let entry = self.store().get_entry(key)?;
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

    /// The first stage of loading what a request with the key hashed to
    /// `hash` reads (see `Store::prefetch_slots`): the open batch's table
    /// slot and, for a read, every segment's index slot.
    pub fn prefetch_slots(&self, hash: KeyHash, access: Access) {
        if let Some(batch) = &self.pending {
            batch.prefetch_slot(hash);
        }
        if access == Access::Read {
            self.store().prefetch_slots(hash);
        }
    }

    /// The second stage: the `meta` of the op or record the request will
    /// most likely read, the open batch's latest op first, as a lookup goes.
    pub fn prefetch_meta(&self, hash: KeyHash, access: Access) -> PrefetchHint {
        if let Some(hint) = self
            .pending
            .as_ref()
            .and_then(|batch| batch.prefetch_meta(hash))
        {
            return PrefetchHint::Batch(hint);
        }
        match access {
            Access::Read => self
                .store()
                .prefetch_meta(hash)
                .map_or(PrefetchHint::Nowhere, PrefetchHint::Store),
            Access::Write => PrefetchHint::Nowhere,
        }
    }

    /// The third stage: the bytes of what `hint` names.
    pub fn prefetch_record(&self, hint: PrefetchHint) {
        match hint {
            PrefetchHint::Nowhere => {}
            PrefetchHint::Batch(hint) => {
                if let Some(batch) = &self.pending {
                    batch.prefetch_record(hint);
                }
            }
            PrefetchHint::Store(hint) => self.store().prefetch_record(hint),
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
            self.flush()?;
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
        if self.unlogged_since.is_none() {
            self.unlogged_since = Some(Instant::now());
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
            if self.store().memory_used_bytes() + needed > self.memory_limit_bytes {
                // Spare pooled buffers count as used; release them and look
                // again before refusing (only ever under memory pressure).
                self.store_mut().trim();
                if self.store().memory_used_bytes() + needed > self.memory_limit_bytes {
                    self.counters.writes_refused_oom += 1;
                    return Err(WriteError::OutOfMemory);
                }
            }
        }
        self.pending_bytes_max = bytes;
        self.store_mut().new_batch(ops, bytes).map_err(|error| {
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

    /// Applies the pending batch now (durable: in memory, persisted by the
    /// round's commit). Admission control makes an engine failure an
    /// invariant violation (see the module docs); it is counted and logged.
    /// Refused only when too many batches of this round already wait for
    /// the disk: the batch then stays pending.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        if let Backing::Durable(durable) = &self.backing {
            if self.pending.is_some() && !durable.pending_room() {
                return Err(WriteError::CommitPending);
            }
        }
        let logged_ops = self.logged_ops;
        let Some(batch) = self.take_pending() else {
            return Ok(());
        };
        let ops = batch.len() as u64;
        let applied = match &mut self.backing {
            Backing::Memory(store) => store.apply(batch).map_err(PersistError::Engine),
            Backing::Durable(durable) => durable.apply_logged(batch, logged_ops),
        };
        match applied {
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
        Ok(())
    }

    /// The pending batch if it holds anything, sizing the next batch for a
    /// round like this one.
    fn take_pending(&mut self) -> Option<Batch> {
        self.unlogged_since = None;
        self.logged_ops = 0;
        let batch = self.pending.take()?;
        if batch.is_empty() {
            return None;
        }
        // A batch that filled up (async mode keeps one open over rounds)
        // wanted more: the next one gets twice its use.
        let full = batch.ops_left() == 0 || batch.bytes_left() < self.pending_bytes_max / 8;
        let growth = if full { 2 } else { 1 };
        let used_ops = batch.len();
        let used_bytes = self.pending_bytes_max - batch.bytes_left();
        self.batch_bytes_hint = (used_bytes * growth)
            .next_power_of_two()
            .clamp(BATCH_BYTES_MIN, BATCH_BYTES_HINT_MAX);
        self.batch_ops_hint = (used_ops * growth)
            .next_power_of_two()
            .clamp(BATCH_OPS_MIN, BATCH_OPS_HINT_MAX);
        Some(batch)
    }

    /// End of a round: make the round's writes durable (sync mode; memory:
    /// apply them), and advance the clock ([`Keyspace::maintain`] does the
    /// background work after the replies are sent). On `Err` (sync mode)
    /// none of the round's writes stay, and none will be served.
    pub async fn commit(&mut self, now_ms: u64) -> Result<(), PersistError> {
        let result = match &self.backing {
            Backing::Memory(_) => {
                let flushed = self.flush();
                debug_assert!(flushed.is_ok(), "memory never waits for a disk");
                Ok(())
            }
            Backing::Durable(durable) if durable.flush_interval().is_some() => {
                self.commit_async().await;
                Ok(())
            }
            Backing::Durable(_) => self.commit_sync().await,
        };
        if result.is_err() {
            self.counters.commit_failures += 1;
        }
        if now_ms > self.store().now_ms() {
            self.store_mut().set_now_ms(now_ms);
        }
        result
    }

    /// Sync mode's end of a round: the ops staged since the last round (and
    /// any batch of this round applied before its end) are written and
    /// fdatasynced as one commit before the round's replies go out; the
    /// batch stays open (see the module docs). A round that wrote nothing
    /// costs no write. On `Err` the round's ops are taken back from the open
    /// batch (the store takes back its applied segments), so none of them
    /// is ever served, while the earlier rounds' ops stay.
    async fn commit_sync(&mut self) -> Result<(), PersistError> {
        let Backing::Durable(durable) = &mut self.backing else {
            unreachable!("sync mode is durable");
        };
        let logged = match self.pending.as_ref() {
            Some(batch) if batch.len() > self.logged_ops => {
                durable.log_staged(batch, self.logged_ops).await
            }
            _ => durable.commit_pending().await,
        };
        self.unlogged_since = None;
        match (&logged, self.pending.as_mut()) {
            (Ok(()), Some(batch)) => self.logged_ops = batch.len(),
            (Err(_), Some(batch)) if self.logged_ops > 0 => batch.truncate(self.logged_ops),
            // Nothing of the batch is acknowledged: its buffers go back.
            (Err(_), Some(_)) => self.pending = None,
            (_, None) => debug_assert_eq!(self.logged_ops, 0),
        }
        logged
    }

    /// Async mode's end of a round: the pending batch stays open (see the
    /// module docs); once its oldest unlogged write is half an interval old,
    /// the ops since the last log go to the disk. Never fails: the writes
    /// are acknowledged already, so a disk error leaves them staged and the
    /// log is retried next round (a batch that fills meanwhile is applied
    /// and waits for the disk like any other; when too many do, new writes
    /// are refused).
    async fn commit_async(&mut self) {
        let Backing::Durable(durable) = &mut self.backing else {
            unreachable!("async mode is durable");
        };
        let interval = durable
            .flush_interval()
            .expect("async mode has a flush interval");
        let due = self
            .unlogged_since
            .is_some_and(|since| since.elapsed() >= interval / COALESCE_INTERVAL_DIVISOR);
        if let (true, Some(batch)) = (due, self.pending.as_ref()) {
            match durable.log_staged(batch, self.logged_ops).await {
                Ok(()) => {
                    self.logged_ops = batch.len();
                    self.unlogged_since = None;
                    self.counters.maintenance_failures = 0;
                }
                Err(error) => {
                    if self.counters.maintenance_failures == 0 {
                        tracing::warn!(%error, "logging staged writes failed; retrying");
                    }
                    self.counters.maintenance_failures += 1;
                }
            }
        }
        // Batches applied before they were all logged (they filled up, or a
        // snapshot needed them), once due.
        let _ = durable.commit_pending().await;
    }

    /// A bounded step of background work (merge; durable: flush when due,
    /// compaction), run after the round's replies are on their way so a
    /// flush's disk wait never delays them.
    pub async fn maintain(&mut self) {
        match &mut self.backing {
            Backing::Memory(store) => {
                if store.merge_needed() {
                    store.merge_step(MERGE_STEP_BUDGET);
                }
            }
            Backing::Durable(durable) if durable.compaction_waits_for_apply() => {
                // A compaction must not drop the open batch's logged ops.
                let _ = self.flush();
            }
            Backing::Durable(durable) => {
                if let Err(error) = durable.maintenance_step(MERGE_STEP_BUDGET).await {
                    // Retried every round; log the first of a run of them.
                    if self.counters.maintenance_failures == 0 {
                        tracing::warn!(%error, "background persistence step failed; retrying");
                    }
                    self.counters.maintenance_failures += 1;
                } else {
                    self.counters.maintenance_failures = 0;
                }
            }
        }
        self.counters.merges_completed = self.store().merges_completed();
    }

    /// How soon background work wants a commit even if no request arrives
    /// (async mode's flush, a merge or a compaction under way); `None` when
    /// nothing waits.
    pub fn idle_wake_after(&self) -> Option<Duration> {
        let durable = self.durable()?;
        if durable.store().merge_needed() || durable.compacting() {
            return Some(MAINTENANCE_IDLE_WAKE);
        }
        if let (Some(since), Some(interval)) = (self.unlogged_since, durable.flush_interval()) {
            let due_in = (interval / COALESCE_INTERVAL_DIVISOR).saturating_sub(since.elapsed());
            return Some(due_in.max(MAINTENANCE_IDLE_WAKE));
        }
        if durable.unpersisted_segments() > 0 || durable.rewrite_pending() {
            return durable.flush_interval().or(Some(MAINTENANCE_IDLE_WAKE));
        }
        None
    }

    /// Clean shutdown: everything applied is made durable.
    pub async fn shutdown(&mut self) -> Result<(), PersistError> {
        if matches!(self.backing, Backing::Memory(_)) {
            return Ok(());
        }
        // Applying the open batch is refused only while too many segments
        // wait for the disk: write them first.
        for _ in 0..2 {
            let applied = self.flush().is_ok();
            let Backing::Durable(durable) = &mut self.backing else {
                unreachable!("checked above");
            };
            durable.flush().await?;
            if applied {
                return Ok(());
            }
        }
        unreachable!("an empty disk queue takes the open batch");
    }

    /// A snapshot including every write staged so far (a write still
    /// staged because the round's disk queue is full is not in it).
    pub fn snapshot(&mut self) -> Snapshot {
        let _ = self.flush();
        self.store().snapshot()
    }

    /// Live keys, including every write staged so far (see `snapshot`).
    pub fn len(&mut self) -> usize {
        let _ = self.flush();
        self.store().len()
    }

    /// Drops every key, staged ones included. Durable: the file follows at
    /// the round's commit.
    pub fn clear(&mut self) {
        self.pending = None;
        self.unlogged_since = None;
        self.logged_ops = 0;
        match &mut self.backing {
            Backing::Memory(store) => store.clear(),
            Backing::Durable(durable) => durable.clear_in_memory(),
        }
    }

    /// Moves the expiry clock (tests and simulation drive time by hand).
    pub fn set_now_ms(&mut self, now_ms: u64) {
        self.store_mut().set_now_ms(now_ms);
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

    /// A memory keyspace's commit never waits: poll it once.
    fn commit(ks: &mut Keyspace, now_ms: u64) {
        crate::commands::shard::poll_once(ks.commit(now_ms))
            .expect("a memory commit never waits")
            .expect("memory commits cannot fail");
        crate::commands::shard::poll_once(ks.maintain()).expect("memory merges never wait");
    }

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
        commit(&mut ks, NOW_MS);
        assert!(ks.lookup(b"a").is_none());
        assert_eq!(ks.lookup(b"b").unwrap().expire_at_ms, Some(NOW_MS + 10));
        commit(&mut ks, NOW_MS + 10);
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
        // A full batch makes the next one twice as large: 256, then 512,
        // then a third batch for the rest.
        let ops = BATCH_OPS_MIN * 4;
        for i in 0..ops {
            ks.set(format!("key{i}").as_bytes(), b"value", None)
                .unwrap();
        }
        assert_eq!(ks.counters.batches_applied, 2);
        assert_eq!(ks.batch_ops_hint, BATCH_OPS_MIN * 4);
        commit(&mut ks, NOW_MS);
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
        commit(&mut ks, NOW_MS);
        for i in 0..stored {
            assert_eq!(
                ks.lookup(format!("k{i}").as_bytes()).unwrap().value,
                &value[..]
            );
        }
        // Deletes still go through on the full store.
        ks.delete(b"k0").unwrap();
        commit(&mut ks, NOW_MS);
        assert!(ks.lookup(b"k0").is_none());
    }
}
