//! Tessera's per-core store: memory-oriented sorted segments with atomic
//! batches, O(1) snapshots, ordered ranges and a merger driven in bounded steps.
//!
//! The design follows moss ("Building a High-Performance Key/Value Store in
//! Go", Marty Schoch) and goes further where Tessera's targets need it.
//!
//! # Model
//!
//! - A **record** is a byte-string key (at most [`KEY_LEN_MAX`]) and value (at
//!   most [`VALUE_LEN_MAX`]) with an optional expiry in Unix ms, or a
//!   tombstone. Its bytes live in a segment's `data` buffer; two `u64` meta
//!   words describe it (op, lengths, flags; offset). Layout: module `record`.
//! - A **batch** ([`Batch`]) collects ops in pooled buffers sized up front;
//!   within a batch the last op on a key wins. [`Store::apply`] sorts the
//!   batch's meta by key (moving integers, never bytes), builds its hash
//!   index, and pushes it as a new **segment** on the **stack** in one step:
//!   readers see all of a batch or none of it.
//! - **Reads** look at segments newest first: the first version of a key
//!   decides; a tombstone or an expired record means absent. Each segment has
//!   an immutable hash index (module `index`) so a point lookup costs about
//!   one cache miss per segment plus the record itself, while ordered
//!   iteration still walks the sorted meta ([`Range`], [`RangeRev`]: a k-way
//!   merge across segments).
//! - A **snapshot** ([`Snapshot`]) is an `Rc` of the stack: O(1) to take,
//!   isolated from every later batch, merge and `clear`.
//! - The **merger** ([`Store::merge_step`]) merges runs of segments when the
//!   stack grows past `stack_height_max`, or the whole stack once dead
//!   records (shadowed versions, tombstones) outnumber live keys, in
//!   resumable steps bounded by a budget of the thread's CPU time, and swaps
//!   the output in atomically. Merges that reach the bottom of the stack drop
//!   tombstones and expired records, which is how deleted memory comes back.
//! - **Memory**: every buffer comes from the store's own pool and counts
//!   against its quota ([`StoreConfig::memory_quota_bytes`]); a batch that
//!   would exceed it fails whole with [`Error::MemoryQuota`] at
//!   [`Store::new_batch`], before any op is accepted, so nothing is ever half
//!   applied. Steady-state batching reuses pooled buffers.
//!
//! # Threading
//!
//! A store is single-threaded by design: it, its batches and snapshots hold
//! `Rc`s and are neither `Send` nor `Sync`. Run one store per core (a
//! thread-per-core server) and route each key to its core by hash; see the
//! README section "Embedding the engine". The compiler holds you to it:
//!
//! ```compile_fail
//! fn send<T: Send>(_: T) {}
//! send(tessera_engine::Store::new(Default::default()).unwrap());
//! ```
//!
//! ```compile_fail
//! fn send<T: Send>(_: T) {}
//! let mut store = tessera_engine::Store::new(Default::default()).unwrap();
//! send(store.new_batch(1, 1).unwrap());
//! ```
//!
//! ```compile_fail
//! fn send<T: Send>(_: T) {}
//! send(tessera_engine::Store::new(Default::default()).unwrap().snapshot());
//! ```
//!
//! # Costs worth knowing
//!
//! - Memory per record in a large merged segment: 16 bytes of meta plus 5
//!   bytes of index (21 bytes) on top of key and value bytes, plus 8 bytes
//!   for records with an expiry. Buffers up to 8 MiB (small segments, batch
//!   buffers) are sized to powers of two so they recycle, so small stores
//!   pay up to 2x on those.
//! - `apply` looks every op's key up in the stack to keep [`Store::len`]
//!   exact (16 keys at a time, prefetched), and copies the batch's bytes once
//!   into key order.
//! - A point lookup in a store larger than the CPU's caches misses them
//!   three times in a row (index slot, record `meta`, key bytes). A caller
//!   with many keys in hand (a server with a pipeline of requests) can load
//!   them ahead in stages, [`Store::prefetch_slots`] then
//!   [`Store::prefetch_meta`] then [`Store::prefetch_record`], one stage
//!   over all its keys at a time, and do other work in between; the
//!   `tessera` server does, three connections ahead (about -16 % of its CPU
//!   per request at pipeline 16).
//! - `merge_step` also releases the pages of segments that merges (or
//!   `clear`) retired, a chunk per step, so freeing hundreds of MiB never
//!   lands on one call (unless the process keeps freed memory, see
//!   [`retain_freed_memory`]: then the pages stay for the next merges);
//!   [`Store::merge_needed`] stays true until that is done.
//!   Segments a snapshot still holds are freed when its last holder drops.
//! - Large segment buffers are advised onto transparent huge pages (fewer TLB
//!   misses on random lookups): eagerly for unbudgeted merges
//!   ([`Store::compact`]), and only once done for budgeted ones, because a
//!   huge-page fault can stall a step for milliseconds.
//! - If writes outrun the merger until the stack reaches
//!   [`STACK_HEIGHT_LIMIT`], `apply` finishes a merge inline (a write stall)
//!   instead of failing.
//!
//! # Example
//!
//! ```
//! use tessera_engine::{Store, StoreConfig};
//! use std::time::Duration;
//!
//! let mut store = Store::new(StoreConfig::default())?;
//! let mut batch = store.new_batch(3, 64)?;
//! batch.set(b"apple", b"red")?;
//! batch.set_with_expiry(b"banana", b"yellow", store.now_ms() + 60_000)?;
//! batch.alloc_set(b"cherry", 4)?.copy_from_slice(b"dark");
//! store.apply(batch)?;
//!
//! let snapshot = store.snapshot();
//! let mut batch = store.new_batch(1, 16)?;
//! batch.delete(b"apple")?;
//! store.apply(batch)?;
//!
//! assert_eq!(store.get(b"apple"), None);
//! assert_eq!(snapshot.get(b"apple"), Some(&b"red"[..]));
//! let keys: Vec<&[u8]> = snapshot.range(&b"b"[..]..).map(|entry| entry.key).collect();
//! assert_eq!(keys, [&b"banana"[..], &b"cherry"[..]]);
//! let newest_first: Vec<&[u8]> = store.range_rev(..).map(|entry| entry.key).collect();
//! assert_eq!(newest_first, [&b"cherry"[..], &b"banana"[..]]);
//!
//! // A server calls this once per event-loop round.
//! while store.merge_needed() {
//!     store.merge_step(Duration::from_micros(200));
//! }
//! # Ok::<(), tessera_engine::Error>(())
//! ```

mod allocator;
mod batch;
mod config;
mod cpu_clock;
mod error;
mod heap;
mod index;
mod merge;
mod persist;
mod pool;
mod range;
mod record;
mod segment;
mod snapshot;
mod store;

pub use allocator::{prefault_retained_memory, retain_freed_memory, PREFAULT_BYTES_MAX};
pub use batch::{Batch, BatchOp};
pub use config::{
    StoreConfig, BATCH_BYTES_LIMIT, BATCH_OPS_LIMIT, KEY_LEN_MAX, MERGE_STEP_BUDGET_LIMIT,
    STACK_HEIGHT_LIMIT, VALUE_LEN_MAX,
};
pub use error::Error;
pub use index::{KeyHash, RecordHint};
pub use persist::{
    CompactionWriter, DataDir, DmaLayer, DroppedRange, Durability, DurableConfig, DurableStore,
    Fault, FaultPlan, FaultyFile, FaultyLayer, FileLayer, GroupCommitter, LogFile, MappedSegments,
    PersistError, RecoveryReport, SegmentExtent, SegmentLog, BLOCK_BYTES, FLIGHT_SEGMENTS_MIN,
    FLUSH_INTERVAL_MS_DEFAULT, FLUSH_INTERVAL_MS_MAX, FLUSH_WRITES_IN_FLIGHT_MAX, FOOTER_BYTES,
    FORMAT_VERSION, GROUP_BYTES_MAX, GROUP_OPS_MAX, GROUP_WAITERS_MAX, UNPERSISTED_SEGMENTS_MAX,
};
pub use range::{Range, RangeRev};
pub use segment::ExternalBytes;
pub use snapshot::{Entry, Snapshot};
pub use store::{MergeStatus, Store, StoreStats};
