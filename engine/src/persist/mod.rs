//! Durability: each core persists its own segments to append-only files on
//! its own io_uring, recovers them after a crash, and serves them back from
//! a read-only mapping.
//!
//! The design follows moss (an append-only file of segments, each followed by
//! a footer; open by seeking back from the end to the last valid footer;
//! read persisted segments through mmap with the same code as memory ones;
//! compact by letting the merger rewrite live data into a new file), adapted
//! to O_DIRECT writes through glommio:
//!
//! - [`format`]: the bytes on disk (`docs/FORMAT.md`).
//! - [`file_io`]: the I/O trait, the real DMA layer and a fault-injecting one.
//! - [`recovery`]: which prefix of a file is intact.
//! - [`segment_log`]: one core's files: append, open, compact.
//! - [`flight`]: an async-mode flush written by a task of its own.
//! - [`data_dir`]: the node's manifest and per-core directories.
//! - [`durable_store`]: a `Store` plus its log: commit, flush, compaction.
//! - [`group_commit`]: one segment and one fdatasync for many writer tasks.
//!
//! Page faults: a major fault on an executor thread stalls every connection
//! of that core, so persisted segments are mapped with `MAP_POPULATE` and
//! `MADV_WILLNEED` at open, before the core serves anything: the mapped
//! working set is resident when requests arrive. Tessera is memory-oriented
//! (a core's data must fit its memory share), so nothing relies on the page
//! cache to hold a working set larger than memory; under memory pressure the
//! kernel could still evict clean mapped pages, which is why the memory limit
//! counts mapped bytes too. `mlock` is not used: RLIMIT_MEMLOCK is 8 MiB on
//! the machines we target and is needed by the io_uring rings.

mod compaction;
mod data_dir;
mod durable_store;
mod error;
mod file_io;
mod flight;
mod format;
mod group_commit;
mod recovery;
mod segment_log;

pub use compaction::CompactionWriter;
pub use data_dir::DataDir;
pub use durable_store::{
    Durability, DurableConfig, DurableStore, FLIGHT_SEGMENTS_MIN, FLUSH_INTERVAL_MS_DEFAULT,
    FLUSH_INTERVAL_MS_MAX, UNPERSISTED_SEGMENTS_MAX,
};
pub use error::PersistError;
pub use file_io::{DmaLayer, Fault, FaultPlan, FaultyFile, FaultyLayer, FileLayer, LogFile};
pub use format::{BLOCK_BYTES, FOOTER_BYTES, FORMAT_VERSION};
pub use group_commit::{GroupCommitter, GROUP_BYTES_MAX, GROUP_OPS_MAX, GROUP_WAITERS_MAX};
pub use recovery::{DroppedRange, SegmentExtent};
pub use segment_log::{MappedSegments, RecoveryReport, SegmentLog, FLUSH_WRITES_IN_FLIGHT_MAX};
