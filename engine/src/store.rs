//! The store: a stack of segments, batches applied on top, a merger below.

use crate::batch::{sort_and_pack, Batch};
use crate::cpu_clock::{ClockPair, CpuDeadline};
use crate::index::{hash_key, HashIndex, KeyHash, RecordHint};
use crate::merge::{choose_run, JobVecs, MergeJob};
use crate::pool::{Pool, Purpose};
use crate::range::{Range, RangeRev};
use crate::record::{Meta, Op, META_WORDS};
use crate::segment::{ExternalBytes, Found, Segment};
use crate::snapshot::{lookup, Snapshot, Stack};
use crate::{Entry, Error, StoreConfig, STACK_HEIGHT_LIMIT};
use std::cell::Cell;
use std::ops::RangeBounds;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .field("now_ms", &self.now_ms)
            .finish()
    }
}

/// Bytes of retired segments' pages released between two looks at the clock.
const RELEASE_CHUNK_BYTES: usize = 512 * 1024;

/// Keys of a segment looked up in the stack together (see `live_delta`).
const LOOKUP_GROUP: usize = 16;

/// Hollow segment `Rc`s kept for reuse: the stack's limit plus a running
/// merge's output.
const SPARE_SEGMENTS_MAX: usize = STACK_HEIGHT_LIMIT + 1;

/// Dead records (shadowed versions and tombstones) below which the store
/// never merges down for garbage alone: a tiny store is not worth a rewrite.
const GARBAGE_RECORDS_MIN: usize = 4096;

/// What one [`Store::merge_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MergeStatus {
    /// No merge was needed.
    Idle,
    /// A merge advanced and has more to do.
    InProgress,
    /// A merge finished and its output replaced its inputs in the stack.
    Swapped,
}

/// A point-in-time account of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Segments in the stack.
    pub height: usize,
    /// Records in the stack, shadowed versions and tombstones included.
    pub records_held: usize,
    /// Key and value bytes of those records.
    pub key_value_bytes: usize,
    /// Bytes of every buffer the store holds (segments, batches, merge
    /// output, spares), as counted against the quota.
    pub memory_used_bytes: usize,
    pub memory_quota_bytes: usize,
    /// Same as [`Store::len`].
    pub live_keys: usize,
    pub merge_in_progress: bool,
    pub merges_completed: u64,
    /// Key and value bytes of every batch applied since the store opened.
    pub applied_bytes: u64,
    /// Key and value bytes every finished merge wrote: over `applied_bytes`,
    /// the merger's write amplification (each byte is copied once by
    /// `apply` and this many times more by merges).
    pub merged_bytes: u64,
}

/// One core's key-value store. See the crate docs.
///
/// Single-threaded by design: it holds `Rc`s (so it is neither `Send` nor
/// `Sync`), and a thread-per-core server gives each core its own store.
pub struct Store {
    config: StoreConfig,
    pool: Rc<Pool>,
    stack: Stack,
    job: Option<MergeJob>,
    /// A merge of segments above a running `job`'s run (see
    /// [`Store::top_run_needed`]); finishes first, and is shifted down when
    /// `job` swaps.
    top_job: Option<MergeJob>,
    /// Segments merged away or cleared, whose large buffers are released a
    /// chunk at a time by `merge_step` (freeing hundreds of MiB at once
    /// would take milliseconds).
    retired: Vec<Rc<Segment>>,
    /// Keys whose newest version in `stack[..counted_height]` is a set.
    ///
    /// Segments above `counted_height` are not counted yet: finding out
    /// whether a write adds or removes a key means looking the key up down
    /// the whole stack, which cost an apply as much as the reads of a round,
    /// while `len` is asked for rarely (DBSIZE, INFO). So `apply` only pushes,
    /// and `settle` counts the uncounted segments when an exact `len` is
    /// needed. Until then they usually merge among themselves (each key then
    /// counted once however often it was written), and a merge that reaches
    /// the bottom counts its output for free: with nothing below it, a bottom
    /// segment's live keys are its sets. `Cell`s because `len(&self)` settles.
    live_keys: Cell<usize>,
    /// Segments at the bottom of the stack that `live_keys` accounts for.
    counted_height: Cell<usize>,
    /// What each counted segment added to `live_keys` when it was counted
    /// (`[..counted_height]`): a merge swap then moves counts along with
    /// the segments instead of counting anything, which took 120-230 us of
    /// lookups outside any step budget.
    counted_deltas: [Cell<isize>; STACK_HEIGHT_LIMIT],
    /// Records in the stack (the sum of its segments' lengths), kept up to
    /// date so the per-round garbage check is O(1).
    records_held: usize,
    now_ms: u64,
    merges_completed: u64,
    applied_bytes: u64,
    merged_bytes: u64,
    /// The merge jobs' vectors between jobs (`None` while one runs).
    job_vecs: Option<JobVecs>,
    top_job_vecs: Option<JobVecs>,
    /// Retired segments' `Rc` allocations, hollowed out, reused for new
    /// segments so that neither `apply` nor a merge's swap allocates.
    spare_segments: Vec<Rc<Segment>>,
}

fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn empty_stack() -> Stack {
    Rc::new(Vec::with_capacity(STACK_HEIGHT_LIMIT))
}

impl Store {
    pub fn new(config: StoreConfig) -> Result<Store, Error> {
        config.validate()?;
        Ok(Store {
            pool: Rc::new(Pool::new(config.memory_quota_bytes)),
            config,
            stack: empty_stack(),
            job: None,
            top_job: None,
            retired: Vec::with_capacity(STACK_HEIGHT_LIMIT),
            live_keys: Cell::new(0),
            counted_height: Cell::new(0),
            counted_deltas: std::array::from_fn(|_| Cell::new(0)),
            records_held: 0,
            now_ms: system_now_ms(),
            merges_completed: 0,
            applied_bytes: 0,
            merged_bytes: 0,
            job_vecs: Some(JobVecs::new()),
            top_job_vecs: Some(JobVecs::new()),
            spare_segments: Vec::with_capacity(SPARE_SEGMENTS_MAX),
        })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// A batch with room for `ops` ops and `bytes` bytes of keys, values and
    /// expiries (8 bytes each), its buffers taken from the store's pool.
    pub fn new_batch(&mut self, ops: usize, bytes: usize) -> Result<Batch, Error> {
        if ops > self.config.batch_ops_max || bytes > self.config.batch_bytes_max {
            return Err(Error::BatchTooLarge {
                ops,
                bytes,
                ops_max: self.config.batch_ops_max,
                bytes_max: self.config.batch_bytes_max,
            });
        }
        // Taken one at a time: on failure the ones already taken go back.
        let data = self.pool.take_data(bytes, Purpose::Batch)?;
        let meta = match self.pool.take_meta(ops * META_WORDS, Purpose::Batch) {
            Ok(meta) => meta,
            Err(error) => {
                self.pool.give(data);
                return Err(error);
            }
        };
        let table = match self
            .pool
            .take_index((ops * 2).next_power_of_two(), Purpose::Batch)
        {
            Ok(table) => table,
            Err(error) => {
                self.pool.give(data);
                self.pool.give(meta);
                return Err(error);
            }
        };
        Ok(Batch::new(data, meta, table, ops, bytes, self.pool.clone()))
    }

    /// Applies every op of `batch` at once: readers see all of it or none.
    /// On `Err` nothing is applied and the batch is dropped.
    pub fn apply(&mut self, mut batch: Batch) -> Result<(), Error> {
        if !Rc::ptr_eq(&batch.pool, &self.pool) {
            return Err(Error::ForeignBatch);
        }
        if batch.is_empty() {
            return Ok(());
        }
        // Writes outran the merger: stall here rather than grow past the
        // limit range cursors are sized for.
        while self.stack.len() >= STACK_HEIGHT_LIMIT {
            self.merge_to_completion();
        }
        let data = std::mem::take(&mut batch.data);
        let mut meta = std::mem::take(&mut batch.meta);
        let table = std::mem::take(&mut batch.table);
        if batch.superseded > 0 {
            drop_superseded(&mut meta);
        }
        let pairs: &mut [[u64; 2]] = bytemuck::cast_slice_mut(&mut meta);
        let records = pairs.len();
        // Lay the bytes out in key order too (dropping superseded ops'
        // bytes): ordered scans and merges of this segment then read `data`
        // sequentially instead of missing the cache on every record.
        let mut sorted = self
            .pool
            .take_data(data.len(), Purpose::Reorder)
            .expect("exempt from quota");
        sort_and_pack(pairs, &data, &mut sorted);
        self.pool.give(data);
        let data = sorted;
        let mut table = table;
        table.fill(0);
        let mut index = HashIndex::new(table, records);
        let mut key_value_bytes = 0;
        let mut tombstones = 0;
        // No lookups down the stack: the new segment is left for `settle` to
        // count (see `live_keys`).
        for (position, pair) in pairs.iter().enumerate() {
            let meta = Meta::unpack(*pair);
            index.insert(hash_key(meta.key(&data)), position);
            key_value_bytes += meta.key_len + meta.value_len;
            tombstones += usize::from(meta.op == Op::Delete);
        }
        self.applied_bytes += key_value_bytes as u64;
        let segment = Segment::from_pooled(
            data,
            meta,
            index,
            tombstones,
            key_value_bytes,
            self.pool.clone(),
        );
        let segment = self.segment_rc(segment);
        self.stack_mut().push(segment);
        self.records_held += records;
        Ok(())
    }

    /// Counts every segment above `counted_height` into `live_keys`, oldest
    /// first, each against the segments below it; returns the exact `len`.
    fn settle(&self) -> usize {
        let mut live = self.live_keys.get();
        for position in self.counted_height.get()..self.stack.len() {
            let delta = live_delta(&self.stack[..position], &self.stack[position]);
            self.counted_deltas[position].set(delta);
            live = add_live(live, delta);
        }
        self.live_keys.set(live);
        self.counted_height.set(self.stack.len());
        live
    }

    fn stack_mut(&mut self) -> &mut Vec<Rc<Segment>> {
        unshare(&mut self.stack)
    }

    /// `segment` behind an `Rc`, reusing a spare allocation if there is one.
    fn segment_rc(&mut self, segment: Segment) -> Rc<Segment> {
        match self.spare_segments.pop() {
            Some(mut spare) => {
                *Rc::get_mut(&mut spare).expect("spares are unshared") = segment;
                spare
            }
            None => Rc::new(segment),
        }
    }

    /// The live value of `key` now. No allocation.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.get_entry(key).map(|entry| entry.value)
    }

    /// The live record for `key` now, with its expiry.
    #[inline]
    pub fn get_entry(&self, key: &[u8]) -> Option<Entry<'_>> {
        lookup(&self.stack, key, self.now_ms)
    }

    /// The first of three stages of loading what a lookup of the key hashed
    /// to `hash` reads, without waiting: the index slots it starts at, in
    /// every segment. A lookup misses the cache three times in a row (index
    /// slot, then the record's `meta`, then its bytes), each address known
    /// only once the line before it is in, so a reader holding many keys
    /// runs this stage over all of them, then [`Store::prefetch_meta`] over
    /// all, then [`Store::prefetch_record`] over all, with other work in
    /// between if it has any: the misses overlap, and by the time it looks
    /// the keys up their lines are in the cache. Hints only: a stage run
    /// before the previous one's lines arrived merely waits for them, and
    /// none changes any result.
    #[inline]
    pub fn prefetch_slots(&self, hash: KeyHash) {
        for segment in self.stack.iter().rev() {
            segment.prefetch(hash.0);
        }
    }

    /// The second stage (see [`Store::prefetch_slots`]): starts loading
    /// the `meta` of the record a lookup of `hash`'s key will most likely
    /// read (in the newest segment whose index has its fingerprint) and
    /// says where it is, for [`Store::prefetch_record`].
    #[inline]
    pub fn prefetch_meta(&self, hash: KeyHash) -> Option<RecordHint> {
        for (depth, segment) in self.stack.iter().rev().enumerate() {
            if let Some(position) = segment.prefetch_meta(hash.0) {
                return Some(RecordHint {
                    depth: depth as u32,
                    position: position as u32,
                });
            }
        }
        None
    }

    /// The third stage (see [`Store::prefetch_slots`]): starts loading the
    /// bytes of the record `hint` names.
    #[inline]
    pub fn prefetch_record(&self, hint: RecordHint) {
        let depth = hint.depth as usize;
        if depth < self.stack.len() {
            self.stack[self.stack.len() - 1 - depth].prefetch_record(hint.position as usize);
        }
    }

    /// A frozen view of the store as of now. O(1).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.stack.clone(), self.now_ms)
    }

    /// Live records with keys in `range`, ascending (see [`Snapshot::range`]).
    pub fn range<'k, R: RangeBounds<&'k [u8]>>(&self, range: R) -> Range<'_> {
        Range::new(&self.stack, &range, self.now_ms)
    }

    /// Live records with keys in `range`, descending.
    pub fn range_rev<'k, R: RangeBounds<&'k [u8]>>(&self, range: R) -> RangeRev<'_> {
        RangeRev::new(&self.stack, &range, self.now_ms)
    }

    /// Keys whose newest version is a set. Expired keys count until a merge
    /// at the bottom of the stack drops them (as Redis counts them until
    /// they are evicted).
    ///
    /// O(1) after the first call following writes; that one counts the
    /// segments written since the last count (one lookup per record).
    pub fn len(&self) -> usize {
        self.settle()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every record (Redis `FLUSHDB`). Snapshots keep what they saw;
    /// a running merge is abandoned.
    pub fn clear(&mut self) {
        self.job = None;
        self.top_job = None;
        if let Some(stack) = Rc::get_mut(&mut self.stack) {
            self.retired.append(stack);
        }
        self.stack = empty_stack();
        self.live_keys.set(0);
        self.counted_height.set(0);
        self.records_held = 0;
    }

    /// The expiry clock, Unix ms. Starts at the system clock; the caller
    /// advances it (once per event-loop round keeps `get` free of syscalls).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn set_now_ms(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// The stack is taller than `stack_height_max`, or holds mostly garbage
    /// (see `Store::garbage_heavy`), or a merge is running.
    pub fn merge_needed(&self) -> bool {
        self.job.is_some()
            || self.top_job.is_some()
            || !self.retired.is_empty()
            || self.stack.len() > self.config.stack_height_max
            || self.garbage_heavy()
    }

    /// Whether dead records (shadowed versions and tombstones) outnumber the
    /// live keys. The size-tiered policy alone never brings the bottom
    /// segment into a merge while the segments above it stay small, and
    /// tombstones are small: a store whose every key was deleted would keep
    /// its memory forever. A merge of the whole stack (in budgeted steps like
    /// any other) drops all of it. Since every write adds at most one dead
    /// record, the rewrite costs at most two record copies per write since
    /// the last one: amortised O(1). Below [`GARBAGE_RECORDS_MIN`] dead
    /// records a store with live keys is left alone (not worth a rewrite).
    ///
    /// Asked every round, so it must not settle every round: segments not
    /// yet counted bound the live keys (a set adds at most one, a delete
    /// removes at most one), the answer falls as the live keys rise, and only
    /// when the bounds disagree is the exact count taken.
    fn garbage_heavy(&self) -> bool {
        let counted = self.live_keys.get();
        let (mut sets, mut deletes) = (0, 0);
        for segment in &self.stack[self.counted_height.get()..] {
            sets += segment.len() - segment.tombstones();
            deletes += segment.tombstones();
        }
        let heavy_at_least = self.garbage_heavy_with(counted.saturating_sub(deletes));
        let heavy_at_most = self.garbage_heavy_with(counted + sets);
        if heavy_at_least == heavy_at_most {
            return heavy_at_least;
        }
        if deletes == 0 {
            // Only sets since the last count: the garbage is overwritten
            // versions, which the size-tiered merges reach the bottom for
            // anyway (a run takes in the bottom once the segments above hold
            // half its size). Counting them here cost a lookup per
            // written record: 5 % of a server core under a SET/GET load.
            return false;
        }
        self.garbage_heavy_with(self.settle())
    }

    /// [`Store::garbage_heavy`] were `live` the live keys: true for every
    /// `live` below some threshold and false above it.
    fn garbage_heavy_with(&self, live: usize) -> bool {
        let dead = self.records_held.saturating_sub(live);
        // An empty store holds nothing worth keeping, however little.
        (live == 0 && dead > 0)
            || (self.stack.len() >= 2 && dead >= GARBAGE_RECORDS_MIN && dead >= live)
    }

    /// Advances the merger for at most `budget` of this thread's CPU time
    /// (capped at the configured `merge_step_budget`), starting a merge if
    /// one is needed. CPU time, not wall time: see `cpu_clock`.
    pub fn merge_step(&mut self, budget: Duration) -> MergeStatus {
        self.merge_step_below(budget, 0)
    }

    /// [`Store::merge_step`] leaving the newest `pinned` segments out of any
    /// merge it starts: a persistence layer's segments not yet on disk,
    /// which it may still have to take back ([`Store::pop_newest_segment`]).
    /// The segments below them merge meanwhile; before this, a durable store
    /// in async mode (whose newest segments are unwritten most of the time)
    /// merged only in the moments after a flush, its stack climbed to the
    /// height limit, and every apply then stalled on an unbudgeted merge.
    /// A merge already running never holds pinned segments: they are the
    /// newest, pushed after it started.
    ///
    /// Pinned segments do not count towards `stack_height_max` either: a
    /// merge starts once the segments it may take are too many. Counting
    /// the pinned ones (up to 16 on a busy durable store) kept the merger
    /// merging the newest two or three unpinned segments into the output
    /// of the last merge, over and over: a bulk load's merges copied each
    /// byte 4.0-4.2 times with them counted, 3.2 without (BENCHMARKS.md,
    /// "Sixth session"). The pinned ones are on their way to the disk and
    /// become mergeable within a flush interval.
    pub fn merge_step_below(&mut self, budget: Duration, pinned: usize) -> MergeStatus {
        assert!(
            pinned <= self.stack.len(),
            "{pinned} pinned of {}",
            self.stack.len()
        );
        let mergeable = self.stack.len() - pinned;
        for job in [&self.job, &self.top_job].into_iter().flatten() {
            assert!(
                job.run().end <= mergeable,
                "a running merge holds a pinned segment"
            );
        }
        let start = ClockPair::now();
        let budget = budget.min(self.config.merge_step_budget);
        // Releasing pages is kernel work of uneven cost: only in the first
        // half of the budget, like page faults in a merge.
        if !self.release_retired(start.deadline(budget / 2)) {
            return MergeStatus::InProgress;
        }
        if self.top_job.is_none() {
            if let Some(run) = self.top_run_needed(mergeable) {
                let vecs = self.top_job_vecs.take().unwrap_or_else(JobVecs::new);
                self.top_job = Some(self.new_job(run, true, vecs));
            }
        }
        if let Some(top) = self.top_job.as_mut() {
            if !top.step(start, budget) {
                return MergeStatus::InProgress;
            }
            self.swap_top();
            return MergeStatus::Swapped;
        }
        if self.job.is_none() {
            if mergeable < 2 {
                return MergeStatus::Idle;
            }
            if mergeable > self.config.stack_height_max {
                self.start_merge(None, mergeable, true);
            } else if self.garbage_heavy() {
                self.start_merge(Some(0..mergeable), mergeable, true);
            } else {
                return MergeStatus::Idle;
            }
        }
        let job = self.job.as_mut().expect("a merge is running");
        if !job.step(start, budget) {
            return MergeStatus::InProgress;
        }
        self.swap();
        MergeStatus::Swapped
    }

    /// While a long merge runs (a bottom merge of a large store takes many
    /// steps), batches keep landing above its run. Left alone they would pile
    /// up until it swaps, and every point read probes each of them: measured
    /// in the server, 30-50 segments under a steady write load. So once more
    /// than `stack_height_max` mergeable segments sit above the running
    /// merge, they get a merge of their own, which runs first (it is small)
    /// and is shifted down when the long one swaps.
    /// The run stays below `mergeable`, and pinned segments do not count
    /// (see [`Store::merge_step_below`]).
    fn top_run_needed(&self, mergeable: usize) -> Option<std::ops::Range<usize>> {
        let above = self.job.as_ref()?.run().end;
        if mergeable < above + 2 || mergeable - above <= self.config.stack_height_max {
            return None;
        }
        let mut sizes = [0usize; STACK_HEIGHT_LIMIT];
        for (size, segment) in sizes.iter_mut().zip(self.stack[above..mergeable].iter()) {
            *size = segment.data_len() + segment.len() * META_WORDS * 8;
        }
        let run = choose_run(&sizes[..mergeable - above], false);
        Some(run.start + above..run.end + above)
    }

    /// Releases retired segments' memory a chunk at a time; true when done.
    fn release_retired(&mut self, mut deadline: CpuDeadline) -> bool {
        while let Some(last) = self.retired.last_mut() {
            if deadline.passed() {
                return false;
            }
            // Shared with a snapshot: its last holder frees it.
            let released = Rc::get_mut(last)
                .map_or(true, |segment| segment.release_pages(RELEASE_CHUNK_BYTES));
            if released {
                let mut segment = self.retired.pop().expect("a last retired segment");
                if let Some(hollow) = Rc::get_mut(&mut segment) {
                    hollow.hollow_out();
                    if self.spare_segments.len() < SPARE_SEGMENTS_MAX {
                        self.spare_segments.push(segment);
                    }
                }
            }
        }
        true
    }

    /// Finishes the running merge, if any, then rewrites the whole stack
    /// into one segment without tombstones or expired records, without a
    /// time budget. For bulk loads, tests and
    /// benchmarks; a server drives `merge_step` instead.
    pub fn compact(&mut self) {
        if self.job.is_some() || self.top_job.is_some() {
            self.merge_to_completion();
        }
        if !self.stack.is_empty() {
            self.start_merge(Some(0..self.stack.len()), self.stack.len(), false);
            self.merge_to_completion();
        }
    }

    /// Starts a merge of `run`, or of the run the policy picks among the
    /// oldest `mergeable` segments.
    fn start_merge(
        &mut self,
        run: Option<std::ops::Range<usize>>,
        mergeable: usize,
        budgeted: bool,
    ) {
        assert!(self.job.is_none() && self.top_job.is_none());
        assert!(mergeable <= self.stack.len());
        let run = run.unwrap_or_else(|| {
            // On the stack, not the heap: starting a merge allocates nothing.
            let mut sizes = [0usize; STACK_HEIGHT_LIMIT];
            for (size, segment) in sizes.iter_mut().zip(self.stack.iter()) {
                *size = segment.data_len() + segment.len() * META_WORDS * 8;
            }
            choose_run(&sizes[..mergeable], true)
        });
        assert!(run.end <= mergeable);
        let vecs = self.job_vecs.take().unwrap_or_else(JobVecs::new);
        self.job = Some(self.new_job(run, budgeted, vecs));
    }

    fn new_job(&self, run: std::ops::Range<usize>, budgeted: bool, vecs: JobVecs) -> MergeJob {
        MergeJob::new(
            &self.stack,
            run,
            self.now_ms,
            self.pool.clone(),
            !budgeted,
            vecs,
        )
    }

    /// Finishes the running merges without a time budget (the top one
    /// first), or when none runs, starts one and finishes it.
    fn merge_to_completion(&mut self) {
        let unbounded = Duration::from_secs(3600 * 24 * 365);
        if let Some(top) = self.top_job.as_mut() {
            while !top.step(ClockPair::now(), unbounded) {}
            self.swap_top();
        }
        if self.job.is_none() {
            self.start_merge(None, self.stack.len(), false);
        }
        let job = self.job.as_mut().expect("a merge is running");
        while !job.step(ClockPair::now(), unbounded) {}
        self.swap();
        self.release_retired(ClockPair::now().deadline(unbounded));
    }

    fn swap_top(&mut self) {
        let job = self.top_job.take().expect("a finished top merge");
        debug_assert!(!job.drop_bottom, "a top merge sits above another merge");
        let vecs = self.swap_job(job);
        self.top_job_vecs = Some(vecs);
    }

    fn swap(&mut self) {
        let job = self.job.take().expect("a finished merge");
        let run_end = job.run().end;
        let height_before = self.stack.len();
        let vecs = self.swap_job(job);
        self.job_vecs = Some(vecs);
        if let Some(top) = self.top_job.as_mut() {
            // The run shrank to one segment (or none): the top merge's
            // inputs moved down by the difference.
            assert!(top.run_start >= run_end, "a top merge sits above the merge");
            top.run_start -= height_before - self.stack.len();
        }
    }

    /// Replaces `job`'s inputs with its output; returns its vectors.
    fn swap_job(&mut self, job: MergeJob) -> JobVecs {
        let run = job.run();
        let bottom = job.drop_bottom;
        debug_assert_eq!(bottom, run.start == 0);
        // A merge above the bottom keeps every key's newest version, so the
        // count of the segments below the run stays right, and the output
        // of counted inputs adds to it what they added together.
        let counted = self.counted_height.get();
        let inputs_delta: isize = (run.start..counted.min(run.end))
            .map(|position| self.counted_deltas[position].get())
            .sum();
        for (input, segment) in job.inputs().iter().zip(&self.stack[run.clone()]) {
            assert!(
                Rc::ptr_eq(input, segment),
                "merge inputs moved in the stack"
            );
        }
        let (output, vecs) = job.finish();
        let output = output.map(|output| self.segment_rc(output));
        let stack = unshare(&mut self.stack);
        let records_in: usize = stack[run.clone()].iter().map(|segment| segment.len()).sum();
        self.records_held -= records_in;
        self.retired.extend(stack.drain(run.clone()));
        let output_sets = output.as_ref().map(|output| {
            // A bottom merge drops every tombstone.
            assert!(!bottom || output.tombstones() == 0);
            output.len() - output.tombstones()
        });
        if let Some(output) = output {
            self.merged_bytes += output.key_value_bytes() as u64;
            self.records_held += output.len();
            stack.insert(run.start, output);
        }
        debug_assert_eq!(
            self.records_held,
            stack.iter().map(|segment| segment.len()).sum::<usize>()
        );
        if bottom {
            // With nothing below it, a bottom segment's live keys are its
            // sets; what was counted above it is counted again later.
            self.live_keys.set(output_sets.unwrap_or(0));
            self.counted_height.set(usize::from(output_sets.is_some()));
            self.counted_deltas[0].set(output_sets.map_or(0, |sets| sets as isize));
        } else if counted >= run.end {
            // Every input was counted: the output takes their place and
            // their deltas, and the counted segments above move down.
            let removed = run.len() - usize::from(output_sets.is_some());
            if output_sets.is_some() {
                self.counted_deltas[run.start].set(inputs_delta);
            } else {
                assert_eq!(inputs_delta, 0, "only empty inputs merge to nothing");
            }
            for position in run.end..counted {
                let delta = self.counted_deltas[position].get();
                self.counted_deltas[position - removed].set(delta);
            }
            self.counted_height.set(counted - removed);
        } else if counted > run.start {
            // Some inputs were counted: take their count back, and the
            // output is counted with the segments above it later.
            self.live_keys
                .set(add_live(self.live_keys.get(), -inputs_delta));
            self.counted_height.set(run.start);
        }
        debug_assert!(self.counted_height.get() <= stack.len());
        debug_assert_eq!(
            self.live_keys.get() as isize,
            self.counted_deltas[..self.counted_height.get()]
                .iter()
                .map(Cell::get)
                .sum::<isize>()
        );
        self.merges_completed += 1;
        vecs
    }

    /// Bytes of every buffer the store holds, as counted against the quota
    /// (the same as `stats().memory_used_bytes`, without walking the stack).
    pub fn memory_used_bytes(&self) -> usize {
        self.pool.held_bytes()
    }

    /// Merges finished since the store was opened.
    pub fn merges_completed(&self) -> u64 {
        self.merges_completed
    }

    /// Segments in the stack (what `stats().height` reports, without
    /// counting `len`: cheap enough for every commit).
    pub fn height(&self) -> usize {
        self.stack.len()
    }

    /// An account of the store. Counts `len` exactly first (see
    /// [`Store::len`]), so not for every round.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            height: self.stack.len(),
            records_held: self.records_held,
            key_value_bytes: self
                .stack
                .iter()
                .map(|segment| segment.key_value_bytes())
                .sum(),
            memory_used_bytes: self.pool.held_bytes(),
            memory_quota_bytes: self.pool.quota_bytes(),
            live_keys: self.len(),
            merge_in_progress: self.job.is_some() || self.top_job.is_some(),
            merges_completed: self.merges_completed,
            applied_bytes: self.applied_bytes,
            merged_bytes: self.merged_bytes,
        }
    }

    /// Pushes a segment whose `data` and `meta` bytes are owned elsewhere
    /// (e.g. mapped from a file written from [`Snapshot::segments`]) on top
    /// of the stack, as if applied as one batch. Every record is validated.
    pub fn push_external_segment(
        &mut self,
        data: ExternalBytes,
        meta: ExternalBytes,
    ) -> Result<(), Error> {
        let segment = Segment::from_external(data, meta, self.pool.clone())?;
        while self.stack.len() >= STACK_HEIGHT_LIMIT {
            self.merge_to_completion();
        }
        self.records_held += segment.len();
        let segment = self.segment_rc(segment);
        self.stack_mut().push(segment);
        Ok(())
    }

    /// Removes the newest segment (the last batch applied or segment pushed)
    /// and returns whether there was one: how the persistence layer takes
    /// back a batch whose write to disk failed, so an unacknowledged write is
    /// never served. A running merge is abandoned (its inputs may include the
    /// segment); the next `merge_step` starts over.
    pub fn pop_newest_segment(&mut self) -> bool {
        let Some(top) = self.stack.last().cloned() else {
            return false;
        };
        self.job = None;
        self.top_job = None;
        self.stack_mut().pop();
        self.records_held -= top.len();
        if self.counted_height.get() > self.stack.len() {
            // Counted: take back exactly what counting it added.
            let added = live_delta(&self.stack, &top);
            self.live_keys.set(add_live(self.live_keys.get(), -added));
            self.counted_height.set(self.stack.len());
        }
        true
    }

    /// Gives every spare pooled buffer back to the allocator.
    pub fn trim(&mut self) {
        self.pool.trim();
    }
}

/// The stack's `Vec`, copied first if a snapshot shares it. The copy keeps
/// room for the height limit, so pushes never reallocate.
fn unshare(stack: &mut Stack) -> &mut Vec<Rc<Segment>> {
    if Rc::get_mut(stack).is_none() {
        let mut copy = Vec::with_capacity(STACK_HEIGHT_LIMIT);
        copy.extend(stack.iter().cloned());
        *stack = Rc::new(copy);
    }
    Rc::get_mut(stack).expect("stack is unshared")
}

/// How `segment`, pushed on `below`, changes the count of keys whose newest
/// version is a set. Keys are unique within a segment, so each record adds
/// a key (a set over nothing or a delete), removes one (a delete over a set)
/// or changes nothing.
fn live_delta(below: &[Rc<Segment>], segment: &Segment) -> isize {
    let mut delta = 0;
    let mut hashes = [0u64; LOOKUP_GROUP];
    for group_start in (0..segment.len()).step_by(LOOKUP_GROUP) {
        let group = group_start..(group_start + LOOKUP_GROUP).min(segment.len());
        // Hash a group of keys and prefetch their index slots in every
        // segment first, so the group's lookups overlap their cache misses.
        for (hash, position) in hashes.iter_mut().zip(group.clone()) {
            *hash = hash_key(segment.key(position));
            for below in below {
                below.prefetch(*hash);
            }
        }
        for (&hash, position) in hashes.iter().zip(group) {
            let was_live = newest_is_set(below, segment.key(position), hash);
            delta += match (segment.meta(position).op, was_live) {
                (Op::Set, false) => 1,
                (Op::Delete, true) => -1,
                _ => 0,
            };
        }
    }
    delta
}

/// Whether the newest version of `key` in `segments` (oldest first) is a
/// set, expired or not (`len` counts expired keys until a merge drops them).
fn newest_is_set(segments: &[Rc<Segment>], key: &[u8], hash: u64) -> bool {
    for segment in segments.iter().rev() {
        match segment.find(key, hash) {
            None => continue,
            Some(Found::Delete) => return false,
            Some(Found::Set { .. }) => return true,
        }
    }
    false
}

fn add_live(live: usize, delta: isize) -> usize {
    live.checked_add_signed(delta).expect("live keys >= 0")
}

/// Removes ops a later op on the same key replaced, keeping order.
fn drop_superseded(meta: &mut Vec<u64>) {
    let mut kept = 0;
    for at in (0..meta.len()).step_by(META_WORDS) {
        let words = [meta[at], meta[at + 1]];
        if !Meta::unpack(words).superseded {
            meta[kept] = words[0];
            meta[kept + 1] = words[1];
            kept += META_WORDS;
        }
    }
    meta.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchOp, KEY_LEN_MAX, VALUE_LEN_MAX};

    fn store() -> Store {
        Store::new(StoreConfig {
            memory_quota_bytes: 64 << 20,
            batch_ops_max: 1024,
            batch_bytes_max: VALUE_LEN_MAX + 1024,
            stack_height_max: 4,
            merge_step_budget: Duration::from_millis(50),
        })
        .unwrap()
    }

    fn set(store: &mut Store, key: &[u8], value: &[u8]) {
        let mut batch = store.new_batch(1, key.len() + value.len()).unwrap();
        batch.set(key, value).unwrap();
        store.apply(batch).unwrap();
    }

    #[test]
    fn config_is_validated() {
        let bad = |config: StoreConfig| Store::new(config).err().unwrap();
        let good = StoreConfig::default();
        assert!(Store::new(good.clone()).is_ok());
        assert!(matches!(
            bad(StoreConfig {
                memory_quota_bytes: 0,
                ..good.clone()
            }),
            Error::InvalidConfig {
                field: "memory_quota_bytes",
                ..
            }
        ));
        assert!(matches!(
            bad(StoreConfig {
                batch_ops_max: crate::BATCH_OPS_LIMIT + 1,
                ..good.clone()
            }),
            Error::InvalidConfig {
                field: "batch_ops_max",
                ..
            }
        ));
        assert!(matches!(
            bad(StoreConfig {
                batch_bytes_max: 0,
                ..good.clone()
            }),
            Error::InvalidConfig {
                field: "batch_bytes_max",
                ..
            }
        ));
        assert!(matches!(
            bad(StoreConfig {
                stack_height_max: 1,
                ..good.clone()
            }),
            Error::InvalidConfig {
                field: "stack_height_max",
                ..
            }
        ));
        assert!(matches!(
            bad(StoreConfig {
                merge_step_budget: Duration::ZERO,
                ..good
            }),
            Error::InvalidConfig {
                field: "merge_step_budget_us",
                ..
            }
        ));
    }

    #[test]
    fn key_and_value_limits() {
        let mut store = Store::new(StoreConfig {
            memory_quota_bytes: 1 << 30,
            ..StoreConfig::default()
        })
        .unwrap();
        let bytes_max = store.config().batch_bytes_max;
        let mut batch = store.new_batch(4, bytes_max).unwrap();
        let long_key = vec![7u8; KEY_LEN_MAX + 1];
        assert_eq!(
            batch.set(&long_key, b"v"),
            Err(Error::KeyTooLong {
                len: KEY_LEN_MAX + 1,
                max: KEY_LEN_MAX
            })
        );
        assert_eq!(
            batch.alloc_set(b"k", VALUE_LEN_MAX + 1).err(),
            Some(Error::ValueTooLong {
                len: VALUE_LEN_MAX + 1,
                max: VALUE_LEN_MAX
            })
        );
        batch.set(&long_key[..KEY_LEN_MAX], b"max key").unwrap();
        store.apply(batch).unwrap();
        let mut batch = store.new_batch(1, bytes_max).unwrap();
        batch
            .alloc_set_with_expiry(b"big", VALUE_LEN_MAX, u64::MAX)
            .unwrap()[VALUE_LEN_MAX - 1] = 9;
        store.apply(batch).unwrap();
        assert_eq!(store.get(&long_key[..KEY_LEN_MAX]), Some(&b"max key"[..]));
        let big = store.get(b"big").unwrap();
        assert_eq!((big.len(), big[VALUE_LEN_MAX - 1]), (VALUE_LEN_MAX, 9));
    }

    #[test]
    fn batch_capacity_limits() {
        let mut store = store();
        assert_eq!(
            store.new_batch(1025, 10).err(),
            Some(Error::BatchTooLarge {
                ops: 1025,
                bytes: 10,
                ops_max: 1024,
                bytes_max: VALUE_LEN_MAX + 1024
            })
        );
        let mut batch = store.new_batch(2, 10).unwrap();
        assert_eq!((batch.ops_left(), batch.bytes_left()), (2, 10));
        assert_eq!(
            batch.set(b"abcdef", b"ghijk"),
            Err(Error::BatchBytesFull {
                needed: 11,
                left: 10
            })
        );
        assert_eq!(
            batch.set_with_expiry(b"ab", b"b", 5),
            Err(Error::BatchBytesFull {
                needed: 11,
                left: 10
            }),
            "an expiry takes 8 bytes"
        );
        batch.set(b"a", b"b").unwrap();
        batch.delete(b"c").unwrap();
        assert_eq!(batch.set(b"d", b""), Err(Error::BatchFull { ops_max: 2 }));
        assert_eq!((batch.ops_left(), batch.bytes_left()), (0, 7));
        store.apply(batch).unwrap();
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn batch_reads_its_own_writes_and_last_write_wins() {
        let mut store = store();
        let mut batch = store.new_batch(8, 256).unwrap();
        assert_eq!(batch.get(b"k"), None);
        batch.set(b"k", b"1").unwrap();
        batch.set_with_expiry(b"k", b"2", u64::MAX).unwrap();
        assert_eq!(
            batch.get(b"k"),
            Some(BatchOp::Set {
                value: b"2",
                expire_at_ms: Some(u64::MAX)
            })
        );
        batch.delete(b"j").unwrap();
        assert_eq!(batch.get(b"j"), Some(BatchOp::Delete));
        batch.set(b"j", b"3").unwrap();
        batch.delete(b"k").unwrap();
        batch.alloc_set(b"k", 1).unwrap()[0] = b'4';
        assert_eq!(batch.len(), 6);
        store.apply(batch).unwrap();
        assert_eq!(store.get(b"k"), Some(&b"4"[..]));
        assert_eq!(store.get_entry(b"k").unwrap().expire_at_ms, None);
        assert_eq!(store.get(b"j"), Some(&b"3"[..]));
        assert_eq!(store.stats().records_held, 2);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn memory_quota_fails_the_whole_batch() {
        let mut store = Store::new(StoreConfig {
            memory_quota_bytes: 64 * 1024,
            ..StoreConfig::default()
        })
        .unwrap();
        let mut applied = 0u32;
        let error = loop {
            let batch = store.new_batch(16, 1024);
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(error) => break error,
            };
            for i in 0..16u32 {
                batch
                    .set(&(applied * 16 + i).to_be_bytes(), &[1; 32])
                    .unwrap();
            }
            store.apply(batch).unwrap();
            applied += 1;
            assert!(applied < 1000, "quota never hit");
        };
        assert!(matches!(error, Error::MemoryQuota { .. }), "{error}");
        assert_eq!(store.len(), applied as usize * 16);
        let stats = store.stats();
        assert!(stats.memory_used_bytes <= stats.memory_quota_bytes);
        // Merging frees the batch buffers for reuse.
        store.compact();
        assert!(store.new_batch(16, 1024).is_ok());
    }

    #[test]
    fn foreign_batches_are_refused() {
        let mut first = store();
        let mut second = store();
        let mut batch = first.new_batch(1, 8).unwrap();
        batch.set(b"k", b"v").unwrap();
        assert_eq!(second.apply(batch), Err(Error::ForeignBatch));
        assert!(second.is_empty() && first.is_empty());
    }

    #[test]
    fn expiry_hides_records_and_bottom_merges_drop_them() {
        let mut store = store();
        store.set_now_ms(1000);
        let mut batch = store.new_batch(2, 64).unwrap();
        batch.set_with_expiry(b"soon", b"v", 1500).unwrap();
        batch.set_with_expiry(b"later", b"v", 5000).unwrap();
        store.apply(batch).unwrap();
        set(&mut store, b"other", b"x");
        let before = store.snapshot();
        store.set_now_ms(1500);
        assert_eq!(store.get(b"soon"), None);
        assert_eq!(store.get(b"later"), Some(&b"v"[..]));
        assert_eq!(
            before.get(b"soon"),
            Some(&b"v"[..]),
            "the snapshot keeps its clock"
        );
        assert_eq!(store.len(), 3, "expired but unmerged keys still count");
        store.compact();
        assert_eq!(store.len(), 2);
        assert_eq!(store.stats().records_held, 2);
        assert_eq!(
            before.get(b"soon"),
            Some(&b"v"[..]),
            "snapshots survive merges"
        );
    }

    #[test]
    fn merge_steps_respect_their_budget_and_swap() {
        let mut store = store();
        for i in 0..6u32 {
            set(&mut store, &i.to_be_bytes(), b"value");
        }
        assert!(store.merge_needed());
        let mut steps = 0;
        loop {
            steps += 1;
            match store.merge_step(Duration::from_millis(10)) {
                MergeStatus::Swapped => break,
                MergeStatus::InProgress => continue,
                MergeStatus::Idle => panic!("a merge was needed"),
            }
        }
        assert!(steps >= 1);
        assert!(store.stats().height < 6);
        assert_eq!(store.len(), 6);
        for i in 0..6u32 {
            assert_eq!(store.get(&i.to_be_bytes()), Some(&b"value"[..]));
        }
        assert_eq!(
            store.merge_step(Duration::from_millis(10)),
            MergeStatus::Idle
        );
    }

    #[test]
    fn segments_above_a_long_merge_are_merged_meanwhile() {
        let mut store = Store::new(StoreConfig {
            memory_quota_bytes: 256 << 20,
            stack_height_max: 3,
            ..StoreConfig::default()
        })
        .unwrap();
        let mut model = std::collections::HashMap::new();
        let write = |store: &mut Store,
                     model: &mut std::collections::HashMap<u32, [u8; 4]>,
                     keys: std::ops::Range<u32>,
                     round: u32| {
            let mut batch = store.new_batch(keys.len(), keys.len() * 16).unwrap();
            for key in keys {
                let value = (key ^ round).to_le_bytes();
                batch.set(&key.to_be_bytes(), &value).unwrap();
                model.insert(key, value);
            }
            store.apply(batch).unwrap();
        };
        // Four large segments: the merge they need takes many small steps
        // (sized for a merger at ~5 ns per record of a one-input run).
        for round in 0..4 {
            write(&mut store, &mut model, 0..60_000, round);
        }
        let mut top_merges = 0;
        let mut rounds_during_long_merge = 0;
        for round in 4..400u32 {
            let first = (round * 37) % 20_000;
            write(&mut store, &mut model, first..first + 10, round);
            // A core with time to spare: tidy the top, then one step of the
            // long merge (too small a budget to finish it in one).
            while store.top_job.is_some() || store.top_run_needed(store.stack.len()).is_some() {
                store.merge_step(Duration::from_micros(50));
                top_merges += usize::from(store.top_job.is_none());
            }
            store.merge_step(Duration::from_micros(50));
            if let Some(long) = store.job.as_ref().map(|job| job.run()) {
                rounds_during_long_merge += 1;
                // Its run, at most the height limit above it, and the
                // segment that tipped it over.
                let above = store.height() - long.end;
                assert!(above <= 3 + 1, "{above} segments above the long merge");
            }
            let probe = (round * 101) % 20_000;
            assert_eq!(
                store.get(&probe.to_be_bytes()),
                Some(&model[&probe][..]),
                "key {probe} after round {round}"
            );
        }
        assert!(rounds_during_long_merge > 10, "the long merge was short");
        assert!(top_merges > 0, "no merge ran above the long one");
        store.compact();
        assert_eq!(store.height(), 1);
        assert_eq!(store.len(), model.len());
        for (key, value) in &model {
            assert_eq!(store.get(&key.to_be_bytes()), Some(&value[..]));
        }
    }

    #[test]
    fn pinned_segments_stay_out_of_merges_while_the_rest_merge() {
        let mut store = Store::new(StoreConfig {
            memory_quota_bytes: 64 << 20,
            stack_height_max: 2,
            ..StoreConfig::default()
        })
        .unwrap();
        let write = |store: &mut Store, round: u32| {
            let mut batch = store.new_batch(100, 100 * 16).unwrap();
            for key in 0..100u32 {
                batch.set(&key.to_be_bytes(), &round.to_le_bytes()).unwrap();
            }
            store.apply(batch).unwrap();
        };
        for round in 0..8 {
            write(&mut store, round);
        }
        // The newest three may still be taken back: whatever merges, they
        // stay the same three segments on top.
        let pinned: Vec<*const Segment> = store.stack[5..].iter().map(Rc::as_ptr).collect();
        let mut swaps = 0;
        for _ in 0..1000 {
            match store.merge_step_below(Duration::from_millis(10), 3) {
                MergeStatus::Swapped => swaps += 1,
                MergeStatus::InProgress => {}
                MergeStatus::Idle => break,
            }
        }
        assert!(swaps > 0, "nothing below the pinned segments merged");
        assert_eq!(store.height(), 3 + 1, "the five below merged into one");
        let top: Vec<*const Segment> = store.stack[1..].iter().map(Rc::as_ptr).collect();
        assert_eq!(top, pinned);
        // Taken back one by one, they reveal the merged older writes.
        for round in (5..8u32).rev() {
            assert_eq!(
                store.get(&7u32.to_be_bytes()),
                Some(&round.to_le_bytes()[..])
            );
            assert!(store.pop_newest_segment());
        }
        assert_eq!(
            store.get(&7u32.to_be_bytes()),
            Some(&4u32.to_le_bytes()[..])
        );
        assert_eq!(store.len(), 100);
        // Nothing pinned left to merge: too few segments.
        assert_eq!(
            store.merge_step_below(Duration::from_millis(10), 1),
            MergeStatus::Idle
        );
    }

    #[test]
    fn pinned_segments_do_not_count_towards_the_height_bound() {
        let mut store = Store::new(StoreConfig {
            memory_quota_bytes: 64 << 20,
            stack_height_max: 2,
            ..StoreConfig::default()
        })
        .unwrap();
        // Distinct keys: no dead records, so only the height can call for
        // a merge.
        for round in 0..4u32 {
            let mut batch = store.new_batch(10, 10 * 16).unwrap();
            for key in round * 10..round * 10 + 10 {
                batch.set(&key.to_be_bytes(), b"v").unwrap();
            }
            store.apply(batch).unwrap();
        }
        assert!(store.merge_needed(), "four segments, a bound of two");
        // Two pinned: the two below are within the bound.
        assert_eq!(
            store.merge_step_below(Duration::from_millis(10), 2),
            MergeStatus::Idle
        );
        assert_eq!(store.height(), 4);
        // One pinned: three below are not.
        let mut status = MergeStatus::InProgress;
        while status == MergeStatus::InProgress {
            status = store.merge_step_below(Duration::from_millis(10), 1);
        }
        assert_eq!(status, MergeStatus::Swapped);
        assert_eq!(store.height(), 2);
        assert_eq!(store.len(), 40);
    }

    #[test]
    fn large_values_are_copied_across_many_budgeted_steps() {
        let mut store = Store::new(StoreConfig {
            memory_quota_bytes: 1 << 30,
            merge_step_budget: Duration::from_micros(1),
            stack_height_max: 2,
            ..StoreConfig::default()
        })
        .unwrap();
        let value_len = 3 * 1024 * 1024 + 17; // several copy chunks
        for round in 0..3u8 {
            let mut batch = store.new_batch(2, 2 * (value_len + 8)).unwrap();
            batch
                .alloc_set(&[round], value_len)
                .unwrap()
                .fill(round + 1);
            batch.set(b"shared", &[round]).unwrap();
            store.apply(batch).unwrap();
        }
        let mut steps = 0;
        while store.merge_needed() {
            store.merge_step(Duration::from_micros(1));
            steps += 1;
        }
        assert!(
            steps > 3,
            "a 1 us budget cannot merge 9 MiB in {steps} steps"
        );
        assert_eq!(store.stats().height, 1);
        for round in 0..3u8 {
            let value = store.get(&[round]).unwrap();
            assert_eq!(value.len(), value_len);
            assert!(value.iter().all(|&byte| byte == round + 1));
        }
        assert_eq!(store.get(b"shared"), Some(&[2u8][..]));
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn clear_drops_everything_but_snapshots_keep_theirs() {
        let mut store = store();
        set(&mut store, b"a", b"1");
        let snapshot = store.snapshot();
        store.clear();
        assert!(store.is_empty());
        assert_eq!(store.get(b"a"), None);
        assert_eq!(store.range(..).count(), 0);
        assert_eq!(snapshot.get(b"a"), Some(&b"1"[..]));
    }

    #[test]
    fn external_segments_round_trip() {
        let mut source = store();
        set(&mut source, b"a", b"1");
        set(&mut source, b"b", b"2");
        source.compact();
        let snapshot = source.snapshot();
        let (data, meta) = snapshot.segments().next().unwrap();
        let data: ExternalBytes = Rc::new(data.to_vec());
        let meta_words: Vec<u64> = meta.to_vec();
        struct Words(Vec<u64>);
        impl AsRef<[u8]> for Words {
            fn as_ref(&self) -> &[u8] {
                bytemuck::cast_slice(&self.0)
            }
        }
        let mut copy = store();
        copy.push_external_segment(data, Rc::new(Words(meta_words)))
            .unwrap();
        assert_eq!(copy.len(), 2);
        assert_eq!(copy.get(b"b"), Some(&b"2"[..]));
        set(&mut copy, b"c", b"3");
        copy.compact();
        assert_eq!(
            copy.range(..).map(|e| e.value).collect::<Vec<_>>(),
            [b"1", b"2", b"3"]
        );
    }

    #[test]
    fn deleting_every_key_gives_the_memory_back() {
        let mut store = Store::new(StoreConfig {
            memory_quota_bytes: 256 << 20,
            ..StoreConfig::default()
        })
        .unwrap();
        // Values large enough that the deletes' tombstones never grow to a
        // quarter of the bottom segment, which the size-tiered policy alone
        // would need to merge it.
        let (keys, value_len) = (20_000u32, 1000);
        let drive = |store: &mut Store| {
            while store.merge_step(Duration::from_millis(50)) != MergeStatus::Idle {}
        };
        for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
            let mut batch = store
                .new_batch(chunk.len(), chunk.len() * (4 + value_len))
                .unwrap();
            for i in chunk {
                batch.set(&i.to_be_bytes(), &[7; 1000]).unwrap();
            }
            store.apply(batch).unwrap();
            drive(&mut store);
        }
        store.trim();
        let full_bytes = store.stats().memory_used_bytes;
        assert!(full_bytes > keys as usize * value_len, "{full_bytes}");
        // Deletes in small batches, as a server's rounds apply them.
        for chunk in (0..keys).collect::<Vec<_>>().chunks(100) {
            let mut batch = store.new_batch(chunk.len(), chunk.len() * 8).unwrap();
            for i in chunk {
                batch.delete(&i.to_be_bytes()).unwrap();
            }
            store.apply(batch).unwrap();
            drive(&mut store);
        }
        assert!(store.is_empty());
        assert!(!store.merge_needed());
        store.trim();
        let stats = store.stats();
        assert_eq!(stats.records_held, 0, "dead records stayed: {stats:?}");
        assert!(
            stats.memory_used_bytes < full_bytes / 8,
            "memory not given back: {full_bytes} bytes held before, {stats:?} now",
        );
    }

    #[test]
    fn apply_stalls_instead_of_exceeding_the_stack_limit() {
        let mut store = store();
        for i in 0..(STACK_HEIGHT_LIMIT as u32 + 5) {
            set(&mut store, &i.to_be_bytes(), b"v");
        }
        assert!(store.stats().height <= STACK_HEIGHT_LIMIT);
        assert_eq!(store.len(), STACK_HEIGHT_LIMIT + 5);
    }

    /// `len` is counted lazily (see `live_keys`): asked only now and then,
    /// across budgeted merges above and at the bottom, garbage merges and
    /// popped segments, it must still match a map's size exactly.
    #[test]
    fn len_counted_lazily_stays_exact() {
        let mut store = Store::new(StoreConfig {
            memory_quota_bytes: 64 << 20,
            batch_ops_max: 64,
            batch_bytes_max: 64 * 64,
            stack_height_max: 3,
            merge_step_budget: Duration::from_micros(1),
        })
        .unwrap();
        let mut model = std::collections::BTreeMap::new();
        let mut random = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |below: u64| {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random % below
        };
        for round in 0..3000 {
            let mut batch = store.new_batch(64, 64 * 64).unwrap();
            let mut written = model.clone();
            for _ in 0..next(64) {
                let key = format!("key:{:05}", next(6000));
                // Deletes dominate now and then, so garbage merges run too.
                if next(100) < if round % 500 < 100 { 80 } else { 30 } {
                    batch.delete(key.as_bytes()).unwrap();
                    written.remove(&key);
                } else {
                    batch.set(key.as_bytes(), b"value").unwrap();
                    written.insert(key, ());
                }
            }
            store.apply(batch).unwrap();
            if next(50) == 0 {
                // Taken back, as the persistence layer does on a failed write.
                assert!(store.pop_newest_segment());
            } else {
                model = written;
            }
            for _ in 0..next(4) {
                store.merge_step(Duration::from_micros(1));
            }
            if next(40) == 0 {
                assert_eq!(store.len(), model.len(), "round {round}");
            }
        }
        assert_eq!(store.len(), model.len());
        assert!(store.merges_completed() > 0);
        store.compact();
        assert_eq!(store.len(), model.len());
        assert_eq!(store.stats().records_held, model.len());
    }
}
