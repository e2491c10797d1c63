//! A core's store made durable: a [`Store`] plus its segment log.
//!
//! Every batch the store applies becomes one segment, and every segment is
//! persisted as one commit of the log (or its ops were logged before it
//! was applied, see below). The store is the only copy readers
//! use: batches applied since open live in pooled memory, segments recovered
//! at open are served from the file mapping, and `get`/`range` run the same
//! code over both (moss).
//!
//! - `sync` ([`Durability::Sync`]): [`DurableStore::commit`] applies the
//!   batch, writes its segment and fdatasyncs before returning. If the disk
//!   fails, the segment is popped off the stack again, so an unacknowledged
//!   write is never served after the error is returned. (While the sync is
//!   in flight other tasks of the core may already read the batch, as Redis
//!   clients may read a write whose AOF fsync is pending.)
//! - `async` ([`Durability::Async`]): `commit` only applies. Once no
//!   flight is on its way and [`DurableConfig::flight_segments_min`]
//!   applied segments wait for the disk, or the oldest of them is half the
//!   flush interval old ([`DurableStore::flight_due`]), `commit` and
//!   `maintenance_step` hand all of them to the log as one group written by
//!   a task of its own (a *flight*, see `flight`) and go on; a later call
//!   lands it. So the core applies the next batches while
//!   the disk writes and syncs the last ones, and a segment is durable
//!   within about one interval. [`DurableStore::flush`] (shutdown, tests)
//!   lands the flight and writes the rest before it returns. On a disk
//!   error the segments stay pending and are retried; once the pending
//!   limit is reached new batches are refused, which is the back-pressure
//!   a full disk exerts.
//!
//! Either mode may also log a batch it has not applied yet
//! ([`DurableStore::log_staged`]): the command layer keeps one batch open
//! over many rounds (so the stack gets a few large segments a second, not
//! one per round) and logs the ops that arrived since the last log as a
//! commit of its own: sync mode at the end of every round that wrote
//! (group commit: one write and one fdatasync however many connections
//! wrote), async mode within the flush interval. Those commits are in the
//! file but not in the stack until the batch is applied
//! ([`DurableStore::apply_logged`]), so nothing that rebuilds the file from
//! the stack (a compaction's install, `compact`) may run in between: a
//! compaction that has copied everything waits for the apply
//! ([`DurableStore::compaction_waits_for_apply`]).
//!
//! Sync mode takes a round back when its log fails: the segments applied
//! during the round (a batch that filled up, or one a snapshot needed) are
//! popped, and the caller truncates the open batch to its logged ops
//! ([`Batch::truncate`]). So a logged (acknowledged) op never shares a
//! segment with an unlogged one: `apply_logged` splits a batch logged in
//! part, the logged ops becoming a segment that needs no write and the
//! rest an unpersisted one.
//!
//! Unpersisted segments are always the top of the stack: merges leave them
//! out (`Store::merge_step_below`: sync mode may still take them back, and
//! a merge would mix them with persisted ones) and go on below them, and
//! `commit` persists them before an apply that would trigger the engine's
//! write-stall merge.
//!
//! Compaction (the merger's output made durable): when the live file holds
//! more dead bytes than [`DurableConfig::compaction_dead_percent`] allows (and
//! at least `compaction_min_bytes`), or more than `file_commits_max`
//! commits, [`DurableStore::maintenance_step`] rewrites the store's current
//! stack into a new file (see `segment_log` for the crash-safe order), one
//! DMA write of at most 1 MiB per step, while commits keep going to the live
//! file and the merger keeps running. The copy is of a snapshot of the
//! stack. At the end, the current stack from the first segment that differs
//! from the snapshot (new commits, merge outputs) is appended to the new
//! file, which is then installed. That is exact because only merges that
//! reach the bottom of the stack drop tombstones; when one happened during
//! the copy, the copy is discarded and starts over.

use std::future::poll_fn;
use std::path::Path;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use memmap2::Mmap;

use crate::{Batch, MergeStatus, Snapshot, Store, StoreConfig, STACK_HEIGHT_LIMIT};

use super::compaction::CompactionWriter;
use super::data_dir::DataDir;
use super::error::PersistError;
use super::file_io::{DmaLayer, FileLayer, LogFile};
use super::flight::{TurnPacer, FLIGHT_TURN_INTERVAL};
use super::format::{commit_bytes, FILE_HEADER_BLOCK_BYTES};
use super::segment_log::{RecoveryReport, SegmentLog};

pub const FLUSH_INTERVAL_MS_DEFAULT: u64 = 10;
pub const FLUSH_INTERVAL_MS_MAX: u64 = 60_000;
/// Most applied-but-unpersisted segments in async mode.
pub const UNPERSISTED_SEGMENTS_MAX: usize = 16;
const _: () = assert!(UNPERSISTED_SEGMENTS_MAX * 2 < STACK_HEIGHT_LIMIT);
/// Default [`DurableConfig::flight_segments_min`]: a quarter of the pending
/// limit, so a flight is under way long before back-pressure.
pub const FLIGHT_SEGMENTS_MIN: usize = UNPERSISTED_SEGMENTS_MAX / 4;

/// When acknowledged writes are durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledged after write + fdatasync of the segment holding them.
    #[default]
    Sync,
    /// Acknowledged after the in-memory apply; durable within the interval.
    Async { flush_interval_ms: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableConfig {
    pub durability: Durability,
    /// Open a damaged file by keeping what precedes the damage (reported).
    pub tolerant: bool,
    /// Files smaller than this are never compacted for dead bytes.
    pub compaction_min_bytes: u64,
    /// Compact when dead bytes exceed this percentage of the file.
    pub compaction_dead_percent: u64,
    /// Compact when the file holds more commits than this, which bounds the
    /// segments recovery has to push and merge.
    pub file_commits_max: u64,
    /// Async mode: segments waiting for the disk that start a flight before
    /// the flush interval is due (1..=[`UNPERSISTED_SEGMENTS_MAX`]; see
    /// [`DurableStore::flight_due`]).
    pub flight_segments_min: usize,
}

impl Default for DurableConfig {
    fn default() -> Self {
        DurableConfig {
            durability: Durability::Sync,
            tolerant: false,
            compaction_min_bytes: 64 << 20,
            compaction_dead_percent: 50,
            file_commits_max: 1024,
            flight_segments_min: FLIGHT_SEGMENTS_MIN,
        }
    }
}

/// A slice of a file mapping, as the engine's external segment storage.
struct MappedSlice {
    map: Rc<Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MappedSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

/// One core's durable store. `!Send`: it lives on its core's executor.
pub struct DurableStore<L: FileLayer = DmaLayer> {
    store: Store,
    log: SegmentLog<L>,
    config: DurableConfig,
    /// Segments on top of the stack applied but not yet durable in the log.
    unpersisted: usize,
    /// When the oldest of them not yet handed to the log was applied.
    unpersisted_since: Option<Instant>,
    /// The oldest `in_flight` of the unpersisted segments are the log's
    /// flight (async mode), which took them when the oldest was
    /// `in_flight_since` old (restored if the flight fails).
    in_flight: usize,
    in_flight_since: Option<Instant>,
    /// When to give the reactor a turn while a flight is on its way.
    turns: TurnPacer,
    /// A compaction advancing one chunk per maintenance step.
    compaction: Option<CompactionJob<L::File>>,
    /// [`DurableStore::clear_in_memory`] ran: the file still holds what was
    /// cleared until it is rewritten.
    rewrite_needed: bool,
    /// Commits in the log holding ops of a batch not applied yet
    /// ([`DurableStore::log_staged`]).
    staged_commits: usize,
    /// Reused to lay a staged batch's new ops out as a segment.
    staged_meta: Vec<u64>,
    staged_data: Vec<u8>,
}

/// A compaction in progress: the stack as it was when it started, and how
/// far its copy has got.
struct CompactionJob<F: LogFile> {
    writer: CompactionWriter<F>,
    snapshot: Snapshot,
    next_segment: usize,
    /// Sequence number of the segment being written (reserved at its start).
    seq: Option<u64>,
}

impl DurableStore<DmaLayer> {
    /// Opens core `core`'s store in `data_dir`, recovering its files.
    pub async fn open(
        data_dir: &DataDir,
        core: u32,
        config: DurableConfig,
        store_config: StoreConfig,
    ) -> Result<(Self, RecoveryReport), PersistError> {
        Self::open_with(
            DmaLayer,
            &data_dir.core_dir(core),
            core,
            config,
            store_config,
        )
        .await
    }
}

impl<L: FileLayer> DurableStore<L> {
    /// [`DurableStore::open`] on a chosen file layer and core directory.
    pub async fn open_with(
        layer: L,
        core_dir: &Path,
        core: u32,
        config: DurableConfig,
        store_config: StoreConfig,
    ) -> Result<(Self, RecoveryReport), PersistError> {
        if let Durability::Async { flush_interval_ms } = config.durability {
            if !(1..=FLUSH_INTERVAL_MS_MAX).contains(&flush_interval_ms) {
                return Err(PersistError::InvalidConfig {
                    field: "flush_interval_ms",
                    value: flush_interval_ms,
                    max: FLUSH_INTERVAL_MS_MAX,
                });
            }
        }
        if !(1..=UNPERSISTED_SEGMENTS_MAX).contains(&config.flight_segments_min) {
            return Err(PersistError::InvalidConfig {
                field: "flight_segments_min",
                value: config.flight_segments_min as u64,
                max: UNPERSISTED_SEGMENTS_MAX as u64,
            });
        }
        if config.compaction_dead_percent > 100 {
            return Err(PersistError::InvalidConfig {
                field: "compaction_dead_percent",
                value: config.compaction_dead_percent,
                max: 100,
            });
        }
        let mut store = Store::new(store_config).map_err(PersistError::Engine)?;
        let (log, mapped, report) =
            SegmentLog::open(layer, core_dir, core, config.tolerant).await?;
        for index in 0..mapped.len() {
            let extent = *mapped.extent(index);
            let map = mapped.map().expect("segments imply a mapping");
            let slice = |offset: u64, bytes: u64| -> Rc<dyn AsRef<[u8]>> {
                Rc::new(MappedSlice {
                    map: map.clone(),
                    start: offset as usize,
                    end: (offset + bytes) as usize,
                })
            };
            // The engine re-validates every record (bounds, ops, order)
            // before it serves a byte of it.
            store
                .push_external_segment(
                    slice(extent.data_offset, extent.data_bytes),
                    slice(extent.meta_offset, extent.meta_bytes),
                )
                .map_err(|error| PersistError::Rejected {
                    file: log.path().to_path_buf(),
                    offset: extent.meta_offset,
                    error,
                })?;
        }
        let durable = DurableStore {
            store,
            log,
            config,
            unpersisted: 0,
            unpersisted_since: None,
            in_flight: 0,
            in_flight_since: None,
            turns: TurnPacer::default(),
            compaction: None,
            rewrite_needed: false,
            staged_commits: 0,
            staged_meta: Vec::new(),
            staged_data: Vec::new(),
        };
        Ok((durable, report))
    }

    /// Reads go straight to the store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// For batches, the clock and reads; writes applied directly to the
    /// store are not persisted: use [`DurableStore::commit`].
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    pub fn config(&self) -> &DurableConfig {
        &self.config
    }

    /// Bytes of the live segment file.
    pub fn file_bytes(&self) -> u64 {
        self.log.file_bytes()
    }

    /// Commits (segments) in the live file since it was created.
    pub fn file_commits(&self) -> u64 {
        self.log.commits()
    }

    /// Applied batches not yet durable (always 0 in sync mode between calls).
    pub fn unpersisted_segments(&self) -> usize {
        self.unpersisted
    }

    /// Applies `batch` and, in sync mode, makes it durable before returning.
    /// On error the batch is not applied (sync) or not accepted (async).
    /// In sync mode the batches [`DurableStore::apply_pending`] applied
    /// since the last commit share its fate: persisted with it, or taken
    /// back with it.
    pub async fn commit(&mut self, batch: Batch) -> Result<(), PersistError> {
        self.commit_with(Some(batch)).await
    }

    /// [`DurableStore::commit`] without a new batch: makes what
    /// [`DurableStore::apply_pending`] applied durable (sync mode), or takes
    /// it back on a disk error.
    pub async fn commit_pending(&mut self) -> Result<(), PersistError> {
        self.commit_with(None).await
    }

    /// Whether [`DurableStore::apply_pending`] would take a batch now.
    pub fn pending_room(&self) -> bool {
        let height = self.store.height();
        // Below the write-stall height: an apply must never merge segments
        // that are not on disk yet (they could not be taken back).
        self.unpersisted < UNPERSISTED_SEGMENTS_MAX
            && (self.unpersisted == 0 || height + 1 < STACK_HEIGHT_LIMIT)
    }

    /// Applies `batch` in memory now, without touching the disk, for a
    /// writer that must see it before its commit (a full round batch, a scan
    /// after writes). The next commit persists it (or, in sync mode, takes
    /// it back on a disk error). Refused when [`DurableStore::pending_room`]
    /// is false.
    pub fn apply_pending(&mut self, batch: Batch) -> Result<(), PersistError> {
        self.apply_logged(batch, 0)
    }

    /// Makes the ops `from_op..` of `batch`, which is not applied yet,
    /// durable as one commit (after any applied segments not yet in the log,
    /// which are older), with one write and one fdatasync. Readers keep
    /// finding them in the batch; [`DurableStore::apply_logged`] applies it
    /// later. With no new ops it persists the applied segments alone (and
    /// costs nothing when there are none).
    ///
    /// On `Err` in sync mode nothing of it is acknowledged: the applied
    /// segments not yet in the log are taken back (as by a failed
    /// [`DurableStore::commit`]), and the caller takes the ops `from_op..`
    /// back from the batch ([`Batch::truncate`]). In async mode everything
    /// stays pending and the caller retries.
    pub async fn log_staged(&mut self, batch: &Batch, from_op: usize) -> Result<(), PersistError> {
        batch.sorted_ops_since(from_op, &mut self.staged_meta, &mut self.staged_data);
        let result = self.write_staged().await;
        if result.is_err() && self.config.durability == Durability::Sync {
            self.take_back_unpersisted();
        }
        result
    }

    /// Writes what `log_staged` laid out, after the unpersisted segments.
    async fn write_staged(&mut self) -> Result<(), PersistError> {
        let staged = !self.staged_meta.is_empty();
        if self.rewrite_needed {
            // After a clear the file must lose the old contents first: the
            // rewrite carries the stack and the staged ops at once.
            self.rewrite_with(staged).await?;
        } else if staged {
            self.append_unpersisted(true).await?;
        } else {
            return self.persist_pending().await;
        }
        if staged {
            self.staged_commits += 1;
        }
        Ok(())
    }

    /// Applies a batch whose first `logged_ops` ops are durable already
    /// ([`DurableStore::log_staged`]). When that is all of them its segment
    /// needs no write of its own; otherwise it is persisted like any applied
    /// batch. Refused like [`DurableStore::apply_pending`].
    ///
    /// Sync mode takes the unlogged ops back if the disk refuses them, so
    /// they must not share a segment with logged (acknowledged) ones: a
    /// batch logged in part is split, its logged ops applied as a segment of
    /// their own and the rest as an unpersisted one.
    pub fn apply_logged(
        &mut self,
        mut batch: Batch,
        logged_ops: usize,
    ) -> Result<(), PersistError> {
        assert!(logged_ops <= batch.len());
        if !self.pending_room() {
            return Err(PersistError::PendingFull {
                max: UNPERSISTED_SEGMENTS_MAX,
            });
        }
        let sync = self.config.durability == Durability::Sync;
        // Sync mode logs at the end of every round, persisting the round's
        // applied segments with it: a batch logged in part is the round's
        // first to be applied.
        assert!(
            !sync || logged_ops == 0 || self.unpersisted == 0,
            "sync mode: a logged batch above {} unpersisted segments",
            self.unpersisted
        );
        let unlogged = if sync && 0 < logged_ops && logged_ops < batch.len() {
            Some(batch.split_off(logged_ops))
        } else {
            None
        };
        if logged_ops == batch.len() && self.unpersisted == 0 {
            self.store.apply(batch).map_err(PersistError::Engine)?;
        } else {
            self.apply_counted(batch)?;
        }
        if logged_ops > 0 {
            // The stack holds every logged op now (persisted, or on its way
            // with the unpersisted segments every rewrite writes first).
            // One batch at a time is logged before it is applied: this one.
            self.staged_commits = 0;
        }
        if let Some(unlogged) = unlogged {
            self.apply_counted(unlogged)?;
        }
        Ok(())
    }

    /// A compaction has copied everything and cannot install while the log
    /// holds ops of an unapplied batch: the caller should apply it.
    pub fn compaction_waits_for_apply(&self) -> bool {
        self.staged_commits > 0
            && self
                .compaction
                .as_ref()
                .is_some_and(|job| job.next_segment == job.snapshot.height())
    }

    fn apply_counted(&mut self, batch: Batch) -> Result<(), PersistError> {
        let height_before = self.store.height();
        self.store.apply(batch).map_err(PersistError::Engine)?;
        if self.store.height() != height_before {
            self.unpersisted += 1;
            self.unpersisted_since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    async fn commit_with(&mut self, batch: Option<Batch>) -> Result<(), PersistError> {
        match self.config.durability {
            Durability::Sync => {
                let result = self.commit_sync(batch).await;
                if result.is_err() {
                    self.take_back_unpersisted();
                }
                result
            }
            Durability::Async { .. } => {
                if let Some(batch) = batch {
                    if self.unpersisted >= UNPERSISTED_SEGMENTS_MAX {
                        // Back-pressure: a slow disk makes the core wait for
                        // its flight, and a full or failing one refuses new
                        // writes instead of buffering without bound.
                        self.land_flight_merging().await?;
                        if self.unpersisted >= UNPERSISTED_SEGMENTS_MAX {
                            self.flush().await?;
                        }
                    }
                    self.flush_before_stall().await?;
                    self.apply_counted(batch)?;
                }
                // The write is acknowledged whatever the disk says; a
                // failure is retried by the next flight.
                let _ = self.flush_step().await;
                Ok(())
            }
        }
    }

    /// Sync mode, after a failed write: the applied segments not in the log
    /// were not acknowledged, so they are never served.
    fn take_back_unpersisted(&mut self) {
        debug_assert_eq!(self.config.durability, Durability::Sync);
        assert!(!self.log.in_flight(), "sync mode never starts a flight");
        while self.unpersisted > 0 {
            assert!(self.store.pop_newest_segment());
            self.unpersisted -= 1;
        }
    }

    async fn commit_sync(&mut self, batch: Option<Batch>) -> Result<(), PersistError> {
        if self.rewrite_needed {
            // A clear (FLUSHDB) is pending: the file must lose the old
            // contents before anything newer is acknowledged.
            if let Some(batch) = batch {
                self.apply_counted(batch)?;
            }
            return self.rewrite_current().await;
        }
        if let Some(batch) = batch {
            self.flush_before_stall().await?;
            self.apply_counted(batch)?;
        }
        self.persist_pending().await
    }

    /// The engine is about to stall on a merge that could take in the
    /// unpersisted segments: make them durable first.
    async fn flush_before_stall(&mut self) -> Result<(), PersistError> {
        if self.unpersisted > 0 && self.store.height() + 1 >= STACK_HEIGHT_LIMIT {
            self.persist_pending().await?;
        }
        Ok(())
    }

    /// Async mode's flush without the wait (see the module docs): lands the
    /// flight if it is done (giving the reactor the turns it needs), then
    /// hands the segments not yet in the log to a new flight when they are
    /// due. Never waits for the disk.
    async fn flush_step(&mut self) -> Result<(), PersistError> {
        assert_ne!(self.config.durability, Durability::Sync);
        if self.log.in_flight() {
            self.turns.turn_if_due(Instant::now()).await;
            match self.land_flight_if_done().await {
                None => return Ok(()),
                Some(landed) => landed?,
            }
        }
        if self.rewrite_needed || !self.flight_due(Instant::now()) {
            return Ok(());
        }
        let waiting = self.unpersisted - self.in_flight;
        self.in_flight = waiting;
        self.in_flight_since = self.unpersisted_since.take();
        self.log.start_flight(self.store.snapshot(), waiting);
        // The flight's writes go to the kernel at the next reactor turn:
        // now, so the disk starts while the core goes on.
        self.turns.turn_now().await;
        Ok(())
    }

    /// Whether async mode owes the disk a flight at `now`: with the disk
    /// free, once `flight_segments_min` segments wait (a bulk load keeps
    /// the disk streaming: the next flight carries what arrived while the
    /// last one flew, so groups grow with the load), or once the oldest
    /// waiting one is half a flush interval old (a light load still
    /// coalesces a write and an fdatasync per interval, and each segment
    /// has the other half to land).
    pub fn flight_due(&self, now: Instant) -> bool {
        let Durability::Async { flush_interval_ms } = self.config.durability else {
            return false;
        };
        let waiting = self.unpersisted - self.in_flight;
        !self.log.in_flight()
            && waiting > 0
            && (waiting >= self.config.flight_segments_min
                || self.unpersisted_since.is_some_and(|since| {
                    now.duration_since(since) >= Duration::from_millis(flush_interval_ms) / 2
                }))
    }

    /// Accounts for a landed flight: on success its segments are durable;
    /// on failure they wait for the next flight again, as old as they were.
    fn after_flight(&mut self, landed: Result<u64, PersistError>) -> Result<(), PersistError> {
        let in_flight = std::mem::take(&mut self.in_flight);
        let since = self.in_flight_since.take();
        if let Err(error) = landed {
            if let Some(since) = since {
                let oldest = self.unpersisted_since.get_or_insert(since);
                *oldest = (*oldest).min(since);
            }
            return Err(error);
        }
        assert!(in_flight <= self.unpersisted);
        self.unpersisted -= in_flight;
        Ok(())
    }

    /// Waits for the flight, if any, and lands it. Every other use of the
    /// log comes after this.
    async fn land_flight(&mut self) -> Result<(), PersistError> {
        match self.log.land_flight().await {
            None => Ok(()),
            Some(landed) => {
                self.turns.turned(Instant::now());
                self.after_flight(landed)
            }
        }
    }

    /// Back-pressure's wait for the flight, with the core merging below the
    /// unpersisted segments meanwhile: merge steps for one
    /// [`FLIGHT_TURN_INTERVAL`], then a reactor turn so the flight's I/O
    /// moves on, until it lands. Merges are work the core owes anyway: a
    /// bulk load owes more of it than the disk's wait lasts. Idling here
    /// instead left the ingest thread blocked for 30 % of its wall time
    /// with its disk busy for only 40 %; a turn after every single step
    /// (200 us) was 0.90x as fast as a turn per interval (BENCHMARKS.md,
    /// "Sixth session"). Only with nothing to merge does the core sleep.
    async fn land_flight_merging(&mut self) -> Result<(), PersistError> {
        while self.log.in_flight() {
            if !self.merge_below_until(Instant::now() + FLIGHT_TURN_INTERVAL) {
                break;
            }
            self.turns.turn_now().await;
            if let Some(landed) = self.land_flight_if_done().await {
                return landed;
            }
        }
        self.land_flight().await
    }

    /// Lands the flight on its way if it is done, without waiting for it;
    /// `None` while it is still out.
    async fn land_flight_if_done(&mut self) -> Option<Result<(), PersistError>> {
        match poll_fn(|cx| Poll::Ready(self.log.poll_flight(cx))).await {
            Poll::Pending => None,
            Poll::Ready(landed) => {
                Some(self.after_flight(landed.expect("a flight was on its way")))
            }
        }
    }

    /// Merge steps below the unpersisted segments until `deadline`; false
    /// when there was nothing to merge.
    fn merge_below_until(&mut self, deadline: Instant) -> bool {
        let mut merged = false;
        loop {
            let now = Instant::now();
            if now >= deadline || !self.store.merge_needed() {
                return merged;
            }
            let status = self
                .store
                .merge_step_below(deadline - now, self.unpersisted);
            if status == MergeStatus::Idle {
                return merged;
            }
            merged = true;
        }
    }

    /// Persists every batch applied so far (async mode timer and shutdown).
    pub async fn flush(&mut self) -> Result<(), PersistError> {
        if self.rewrite_needed {
            return self.rewrite_current().await;
        }
        self.persist_pending().await
    }

    /// How often async mode wants [`DurableStore::flush`] called (the
    /// server's timer); `None` in sync mode.
    pub fn flush_interval(&self) -> Option<Duration> {
        match self.config.durability {
            Durability::Sync => None,
            Durability::Async { flush_interval_ms } => {
                Some(Duration::from_millis(flush_interval_ms))
            }
        }
    }

    /// Clean shutdown: persists everything applied, then closes the file.
    /// Dropping without `close` in async mode loses what was not flushed,
    /// exactly as a crash would.
    pub async fn close(mut self) -> Result<(), PersistError> {
        self.compaction_abandon().await;
        self.flush().await?;
        self.log.close().await
    }

    /// Bounded background work: flush what is due, then either advance the
    /// merger or the compaction (one write per step), or start a compaction
    /// when the file has grown too much (see module docs).
    pub async fn maintenance_step(&mut self, budget: Duration) -> Result<(), PersistError> {
        let deadline = Instant::now() + budget;
        // Flush when due, not for the merger: merges leave the unpersisted
        // segments out and go on below them (`Store::merge_step_below`).
        // Flushing whenever a merge waited cost a bulk ingest an fdatasync
        // (2-3 ms there, metadata included) for almost every batch.
        // Half the pending limit: the next round keeps room for batches it
        // must apply before its commit (`apply_pending`).
        if self.rewrite_needed {
            self.flush().await?;
        } else if self.config.durability != Durability::Sync {
            self.flush_step().await?;
        } else if self.unpersisted > UNPERSISTED_SEGMENTS_MAX / 2 {
            // Sync mode: batches applied ahead of their commit.
            self.flush().await?;
        }
        if self.store.merge_needed() {
            // Segments not on disk yet may have to be taken back: they stay
            // out of merges until written.
            self.store.merge_step_below(budget, self.unpersisted);
        }
        if self.compaction.is_none() && self.compaction_due() {
            self.persist_pending().await?;
            let writer = self.log.compaction_start().await?;
            self.compaction = Some(CompactionJob {
                writer,
                snapshot: self.store.snapshot(),
                next_segment: 0,
                seq: None,
            });
        }
        if self.compaction.is_some() {
            self.compaction_step(deadline).await?;
        }
        Ok(())
    }

    /// Whether a clear waits to be written to the file.
    pub fn rewrite_pending(&self) -> bool {
        self.rewrite_needed
    }

    /// Whether a compaction is under way.
    pub fn compacting(&self) -> bool {
        self.compaction.is_some()
    }

    async fn compaction_step(&mut self, deadline: Instant) -> Result<(), PersistError> {
        // The copy takes sequence numbers from the log (rare: a compaction
        // every `file_commits_max` commits, or when dead bytes pile up).
        self.land_flight().await?;
        loop {
            let job = self.compaction.as_mut().expect("a compaction runs");
            if common_prefix(&self.store.snapshot(), &job.snapshot) == 0
                && job.snapshot.height() > 0
            {
                // A merge reached the bottom of the stack, where it drops
                // tombstones: the copy would resurrect what they deleted.
                // Start over later.
                let job = self.compaction.take().expect("a compaction runs");
                self.log.compaction_discard(job.writer).await;
                return Ok(());
            }
            if job.next_segment == job.snapshot.height() {
                return self.compaction_finish().await;
            }
            let (data, meta) = job
                .snapshot
                .segments()
                .nth(job.next_segment)
                .expect("segment in snapshot");
            let seq = *job.seq.get_or_insert_with(|| self.log.reserve_seq());
            match job.writer.write_step(seq, meta, data).await {
                Ok(true) => {
                    job.next_segment += 1;
                    job.seq = None;
                }
                Ok(false) => {}
                Err(error) => {
                    let job = self.compaction.take().expect("a compaction runs");
                    self.log.compaction_discard(job.writer).await;
                    return Err(error);
                }
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    /// Copies the segments committed since the compaction started, then
    /// installs the new file.
    async fn compaction_finish(&mut self) -> Result<(), PersistError> {
        if self.staged_commits > 0 {
            // The new file would lose the logged ops of the open batch:
            // wait until it is applied (`compaction_waits_for_apply`).
            return Ok(());
        }
        self.persist_pending().await?;
        let mut job = self.compaction.take().expect("a compaction runs");
        let current = self.store.snapshot();
        // Merges above the bottom keep tombstones and newest versions, so
        // appending the stack from the first segment that differs from the
        // copy gives the new file the current contents (the stale copies
        // below it are shadowed, and dead bytes for the next compaction).
        let unchanged = common_prefix(&current, &job.snapshot);
        if unchanged == 0 && job.snapshot.height() > 0 {
            self.log.compaction_discard(job.writer).await;
            return Ok(());
        }
        for (data, meta) in current.segments().skip(unchanged) {
            let seq = self.log.reserve_seq();
            if let Err(error) = job.writer.write_segment(seq, meta, data).await {
                self.log.compaction_discard(job.writer).await;
                return Err(error);
            }
        }
        self.log.compaction_install(job.writer).await
    }

    async fn compaction_abandon(&mut self) {
        if let Some(job) = self.compaction.take() {
            self.log.compaction_discard(job.writer).await;
        }
    }

    /// Drops every record (FLUSHDB), durably: the file is replaced by an
    /// empty one.
    pub async fn clear(&mut self) -> Result<(), PersistError> {
        self.compaction_abandon().await;
        self.persist_pending().await?;
        self.log.rewrite(std::iter::empty()).await?;
        self.store.clear();
        Ok(())
    }

    /// Drops every record (FLUSHDB) from memory at once, for a caller that
    /// cannot wait for the disk; the file is replaced by the store's current
    /// contents at the next commit or flush (which, in sync mode, refuses
    /// to persist anything newer until that rewrite succeeds, so a restart
    /// never resurrects cleared keys under newer acknowledged writes).
    pub fn clear_in_memory(&mut self) {
        self.store.clear();
        // The caller dropped its open batch too; the rewrite drops its log.
        self.staged_commits = 0;
        self.unpersisted = 0;
        self.unpersisted_since = None;
        // A flight still lands into the old file; the rewrite replaces it.
        self.in_flight = 0;
        self.in_flight_since = None;
        self.rewrite_needed = true;
    }

    /// Replaces the file with the store's current stack (after a clear).
    async fn rewrite_current(&mut self) -> Result<(), PersistError> {
        self.rewrite_with(false).await
    }

    /// [`DurableStore::rewrite_current`], followed in the new file by the
    /// ops `log_staged` laid out when `with_staged`.
    async fn rewrite_with(&mut self, with_staged: bool) -> Result<(), PersistError> {
        // The new file holds the whole stack, whatever the flight did.
        let _ = self.land_flight().await;
        self.compaction_abandon().await;
        let snapshot = self.store.snapshot();
        let staged = with_staged.then_some((&self.staged_meta[..], &self.staged_data[..]));
        self.log
            .rewrite(
                snapshot
                    .segments()
                    .map(|(data, meta)| (meta, data))
                    .chain(staged),
            )
            .await?;
        self.rewrite_needed = false;
        self.unpersisted = 0;
        self.unpersisted_since = None;
        Ok(())
    }

    /// Rewrites the whole stack into a new file now, in one go. Refused
    /// while the log holds ops of a batch not applied yet.
    pub async fn compact(&mut self) -> Result<(), PersistError> {
        if self.staged_commits > 0 {
            return Err(PersistError::StagedUnapplied {
                commits: self.staged_commits,
            });
        }
        self.compaction_abandon().await;
        self.persist_pending().await?;
        let snapshot = self.store.snapshot();
        self.log
            .rewrite(snapshot.segments().map(|(data, meta)| (meta, data)))
            .await
    }

    /// Dead bytes over the threshold, or too many commits.
    pub fn compaction_due(&self) -> bool {
        if self.compaction.is_some() {
            return false;
        }
        let file = self.log.file_bytes();
        if self.log.commits() > self.config.file_commits_max {
            return true;
        }
        if file < self.config.compaction_min_bytes {
            return false;
        }
        let snapshot = self.store.snapshot();
        let live: u64 = FILE_HEADER_BLOCK_BYTES
            + snapshot
                .segments()
                .map(|(data, meta)| commit_bytes(meta.len() as u64 * 8, data.len() as u64))
                .sum::<u64>();
        let dead = file.saturating_sub(live);
        dead * 100 > file * self.config.compaction_dead_percent
    }

    async fn persist_pending(&mut self) -> Result<(), PersistError> {
        let landed = self.land_flight().await;
        if self.unpersisted == 0 {
            return landed;
        }
        self.append_unpersisted(false).await
    }

    /// Writes the applied segments not yet in the log and, `with_staged`,
    /// the staged ops laid out by `log_staged` (newer than all of them),
    /// with one fdatasync.
    async fn append_unpersisted(&mut self, with_staged: bool) -> Result<(), PersistError> {
        // A failed flight's segments are written again below.
        let _ = self.land_flight().await;
        let snapshot = self.store.snapshot();
        let height = snapshot.height();
        assert!(self.unpersisted <= height);
        let applied = snapshot
            .segments()
            .skip(height - self.unpersisted)
            .map(|(data, meta)| (meta, data));
        let staged = with_staged.then_some((&self.staged_meta[..], &self.staged_data[..]));
        self.log.append_all(applied.chain(staged)).await?;
        self.unpersisted = 0;
        self.unpersisted_since = None;
        Ok(())
    }
}

/// How many of the oldest segments `a` and `b` share (same buffers).
fn common_prefix(a: &Snapshot, b: &Snapshot) -> usize {
    a.segments()
        .zip(b.segments())
        .take_while(|((data_a, meta_a), (data_b, meta_b))| {
            std::ptr::eq(*data_a, *data_b) && std::ptr::eq(*meta_a, *meta_b)
        })
        .count()
}
