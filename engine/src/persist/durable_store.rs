//! A core's store made durable: a [`Store`] plus its segment log.
//!
//! Every batch the store applies becomes one segment, and every segment is
//! persisted as one commit of the log. The store is the only copy readers
//! use: batches applied since open live in pooled memory, segments recovered
//! at open are served from the file mapping, and `get`/`range` run the same
//! code over both (moss).
//!
//! - `sync` ([`Durability::Sync`]): [`DurableStore::commit`] applies the
//!   batch, writes its segment and fdatasyncs before returning. If the disk
//!   fails, the segment is popped off the stack again, so an unacknowledged
//!   write is never served after the error is returned. (While the sync is
//!   in flight other tasks of the core may already read the batch, as Redis
//!   clients may read a write whose AOF fsync is pending.) Group commit is
//!   the caller's batch: the command layer puts every write of one network
//!   round into one batch, so a round costs one segment and one fdatasync
//!   however many connections wrote.
//! - `async` ([`Durability::Async`]): `commit` only applies; applied
//!   segments are written by [`DurableStore::flush`] (a timer every
//!   `flush_interval_ms`, and shutdown), and inline by `commit` once the
//!   oldest unpersisted batch is older than the interval or
//!   [`UNPERSISTED_SEGMENTS_MAX`] are pending. On a disk error they stay
//!   pending and are retried; once the pending limit is reached new batches
//!   are refused, which is the back-pressure a full disk exerts.
//!
//! Unpersisted segments are always the top of the stack: merges are held
//! back while any are pending (a merge could mix them with persisted ones),
//! and the pending limit sits far below the engine's stack limit so its
//! write-stall merge never reaches them.
//!
//! Compaction (the merger's output made durable): when the live file holds
//! more dead bytes than [`DurableConfig::compaction_dead_percent`] allows (and
//! at least `compaction_min_bytes`), or more than `file_commits_max`
//! commits, [`DurableStore::maintenance_step`] rewrites the store's current
//! stack into a new file (see `segment_log` for the crash-safe order).
//! It runs to completion within one step: its cost is proportional to the
//! live data, which a memory-oriented core keeps small; making it resumable
//! across steps is future work.

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use memmap2::Mmap;

use crate::{Batch, Store, StoreConfig, STACK_HEIGHT_LIMIT};

use super::data_dir::DataDir;
use super::error::PersistError;
use super::file_io::{DmaLayer, FileLayer};
use super::format::{commit_bytes, FILE_HEADER_BLOCK_BYTES};
use super::segment_log::{RecoveryReport, SegmentLog};

pub const FLUSH_INTERVAL_MS_DEFAULT: u64 = 10;
pub const FLUSH_INTERVAL_MS_MAX: u64 = 60_000;
/// Most applied-but-unpersisted segments in async mode.
pub const UNPERSISTED_SEGMENTS_MAX: usize = 16;
const _: () = assert!(UNPERSISTED_SEGMENTS_MAX * 2 < STACK_HEIGHT_LIMIT);

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
}

impl Default for DurableConfig {
    fn default() -> Self {
        DurableConfig {
            durability: Durability::Sync,
            tolerant: false,
            compaction_min_bytes: 64 << 20,
            compaction_dead_percent: 50,
            file_commits_max: 1024,
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
    /// Segments on top of the stack applied but not yet in the log.
    unpersisted: usize,
    /// When the oldest of them was applied.
    unpersisted_since: Option<Instant>,
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
    pub async fn commit(&mut self, batch: Batch) -> Result<(), PersistError> {
        if self.unpersisted >= UNPERSISTED_SEGMENTS_MAX {
            // Async back-pressure: a full or failing disk refuses new writes
            // instead of buffering without bound.
            self.flush().await?;
        }
        let height_before = self.store.stats().height;
        if self.unpersisted > 0 && height_before + 1 >= STACK_HEIGHT_LIMIT {
            // The engine is about to stall on a merge that could take in
            // the unpersisted segments: make them durable first.
            self.flush().await?;
        }
        self.store.apply(batch).map_err(PersistError::Engine)?;
        if self.store.stats().height == height_before {
            return Ok(()); // an empty batch adds no segment
        }
        self.unpersisted += 1;
        self.unpersisted_since.get_or_insert_with(Instant::now);
        match self.config.durability {
            Durability::Sync => {
                let result = self.persist_pending().await;
                if result.is_err() {
                    // Not acknowledged, so never served.
                    while self.unpersisted > 0 {
                        assert!(self.store.pop_newest_segment());
                        self.unpersisted -= 1;
                    }
                    self.unpersisted_since = None;
                }
                result
            }
            Durability::Async { .. } => {
                if self.flush_due(Instant::now()) {
                    // The write is acknowledged whatever the disk says; a
                    // failure is retried by the next flush.
                    let _ = self.persist_pending().await;
                }
                Ok(())
            }
        }
    }

    /// Whether async mode owes the disk a flush at `now`.
    pub fn flush_due(&self, now: Instant) -> bool {
        match (self.config.durability, self.unpersisted_since) {
            (Durability::Async { flush_interval_ms }, Some(since)) => {
                now.duration_since(since) >= Duration::from_millis(flush_interval_ms)
            }
            _ => false,
        }
    }

    /// Persists every batch applied so far (async mode timer and shutdown).
    pub async fn flush(&mut self) -> Result<(), PersistError> {
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
        self.persist_pending().await?;
        self.log.close().await
    }

    /// Bounded background work: flush what is due, advance the merger, and
    /// compact the file when it has grown too much (see module docs).
    pub async fn maintenance_step(&mut self, budget: Duration) -> Result<(), PersistError> {
        // Flush when due, or when a merge waits for the pending segments
        // (merges never touch unpersisted ones); not on every step, which
        // would cost an fdatasync per batch.
        let merge_waits = self.store.merge_needed() && self.unpersisted > 0;
        if merge_waits || self.flush_due(Instant::now()) {
            self.persist_pending().await?;
        }
        if self.store.merge_needed() {
            self.store.merge_step(budget);
        }
        if !self.store.merge_needed() && self.compaction_due() {
            self.compact().await?;
        }
        Ok(())
    }

    /// Drops every record (FLUSHDB), durably: the file is replaced by an
    /// empty one.
    pub async fn clear(&mut self) -> Result<(), PersistError> {
        self.persist_pending().await?;
        self.log.rewrite(std::iter::empty()).await?;
        self.store.clear();
        Ok(())
    }

    /// Rewrites the whole stack into a new file now.
    pub async fn compact(&mut self) -> Result<(), PersistError> {
        self.persist_pending().await?;
        let snapshot = self.store.snapshot();
        self.log
            .rewrite(snapshot.segments().map(|(data, meta)| (meta, data)))
            .await
    }

    /// Dead bytes over the threshold, or too many commits.
    pub fn compaction_due(&self) -> bool {
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
        if self.unpersisted == 0 {
            return Ok(());
        }
        let snapshot = self.store.snapshot();
        let height = snapshot.height();
        assert!(self.unpersisted <= height);
        let pending = snapshot
            .segments()
            .skip(height - self.unpersisted)
            .map(|(data, meta)| (meta, data));
        self.log.append_all(pending).await?;
        self.unpersisted = 0;
        self.unpersisted_since = None;
        Ok(())
    }
}
