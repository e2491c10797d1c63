//! The background merger: bounded, resumable merges of adjacent segments.
//!
//! Policy (tiered by size ratio): once the stack is taller than
//! `stack_height_max`, merge the longest run of newest segments in which each
//! next-older segment is at most [`SIZE_RATIO`] times the run gathered so far.
//! Small new segments thus merge among themselves, and the large base joins a
//! merge only when the segments above it have grown comparable to it, so each
//! record is rewritten O(log n) times instead of once per batch.
//!
//! The bottom of the stack, the store's bulk, has a ratio of its own,
//! [`BOTTOM_SIZE_RATIO`]: it joins only once the run above it is at least
//! half its size. Rewriting it costs the whole store, and at a ratio of 4 a
//! growing store rewrote its bottom every time it grew by a fifth: a
//! geometric sum of about five copies of the final store (a 512 MB bulk
//! load's merges copied each byte 3.3-4.0 times in all). At 2 each rewrite
//! grows the bottom by half at least, and the sum is about three copies:
//! 2.7-3.0 in all, and the in-memory ingest ran 1.13-1.19x as fast. A
//! steady overwrite load spent 0.71-0.90x the merge CPU per write, and the
//! sync-mode server's p99 fell (BENCHMARKS.md, "Sixth session"). Parity
//! (1) saved a little more on the ingest but raised that server's p99.9
//! from 7-8 ms to 9-22 ms: its bottom then waited for the dead-record
//! rule, and went in whole-stack merges. Above the
//! bottom the ratio stays 4: at 2, runs of tiny overwrite batches fell into
//! merging the same segments over and over (`merge_sim`, 45-op batches).
//!
//! A [`MergeJob`] owns `Rc`s of its input segments (they stay readable in the
//! stack and in snapshots throughout) and proceeds in steps that each stop at
//! a deadline: first a k-way merge of records into output buffers (newest
//! version wins; a run that reaches the bottom of the stack also drops
//! tombstones and records expired at the job's start), copying large values
//! in chunks so one 256 MiB value cannot blow a step; then the output's hash
//! index is built in chunks. The store then swaps the output in for the run
//! in one `Vec` edit. New batches applied meanwhile land above the run, which
//! keeps the run's position and therefore shadowing intact.
//!
//! Output buffers are sized for every input byte (an upper bound), allocated
//! once at the job's start: large ones come straight from the allocator as
//! untouched pages, so the cost of faulting them in is spread over the steps.
//!
//! The k-way merge is the merger's hot loop (every write is rewritten
//! O(log n) times), so it is built to touch as little as possible per
//! record. The heap holds each input's head record as a [`Head`]: position,
//! key location and the key's first 16 bytes as a big-endian integer. Most
//! comparisons are then one integer comparison, without unpacking meta or
//! reading `data`; only keys longer than 16 bytes that share their first 16
//! compare their tails. Meta is unpacked once per record as its cursor
//! reaches it, the inputs' buffers are looked up once per step (not per
//! record: an external segment's bytes sit behind a `dyn AsRef`), and the
//! CPU-time deadline is polled through the cheap wall clock (see
//! `cpu_clock`).
//!
//! Where one input holds a run of keys that no other input has a version
//! of, the per-record loop is skipped altogether: the run's bytes go in one
//! copy and its meta in one pass (`bulk`). A bulk load of ordered keys
//! merges that way from end to end, and so do a large segment's records
//! between two keys of a small one.

mod bulk;

use crate::cpu_clock::{ClockPair, CpuDeadline};
use crate::heap::CursorHeap;
use crate::index::{hash_key, slots_for, HashIndex};
use crate::pool::{advise_huge_pages, Pool, Purpose};
use crate::record::{compare_keys, is_expired, key_prefix, Meta, Op, META_WORDS, PREFIX_BYTES};
use crate::segment::Segment;
use crate::STACK_HEIGHT_LIMIT;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

/// A merge takes in an older segment while it is at most this many times the
/// size of the newer segments gathered so far.
pub(crate) const SIZE_RATIO: usize = 4;
/// [`SIZE_RATIO`] for the bottom segment of the stack (see the module docs).
pub(crate) const BOTTOM_SIZE_RATIO: usize = 2;
/// Records merged (or indexed) between two looks at the clock.
const RECORDS_PER_CLOCK_CHECK: usize = 32;
/// Record bytes copied between two looks at the clock (at most): 32 records
/// of up to [`COPY_CHUNK_BYTES`] each would be megabytes of copying.
const COPY_BYTES_PER_CLOCK_CHECK: usize = 64 * 1024;
/// Largest copy of record bytes done at once.
const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// The run of `sizes` (oldest first) to merge next; at least two segments.
/// `sizes[0]` is the bottom of the stack when `from_bottom` (a top merge
/// chooses among the segments above a running one).
pub(crate) fn choose_run(sizes: &[usize], from_bottom: bool) -> Range<usize> {
    let height = sizes.len();
    assert!(height >= 2, "a merge needs two segments");
    let mut start = height - 1;
    let mut total = sizes[start];
    while start > 0 {
        let ratio = if from_bottom && start == 1 {
            BOTTOM_SIZE_RATIO
        } else {
            SIZE_RATIO
        };
        if sizes[start - 1] > ratio.saturating_mul(total.max(1)) {
            break;
        }
        start -= 1;
        total += sizes[start];
    }
    start.min(height - 2)..height
}

/// A record's bytes still to be copied into the output.
struct PendingCopy {
    input: usize,
    from: usize,
    left: usize,
}

enum Phase {
    /// Touching every page of the output buffers before writing them.
    Faulting {
        data_next: usize,
        meta_next: usize,
    },
    Merging,
    /// Zeroing (and so faulting in) the output index in chunks.
    ZeroingIndex {
        slots: Vec<u32>,
        len: usize,
    },
    Indexing {
        index: HashIndex,
        next: usize,
    },
    Done {
        index: HashIndex,
    },
}

/// The job's small vectors, kept by the store from one merge to the next
/// so starting a merge allocates nothing (sized for the stack's height
/// limit once).
pub(crate) struct JobVecs {
    inputs: Vec<Rc<Segment>>,
}

impl JobVecs {
    pub fn new() -> JobVecs {
        JobVecs {
            inputs: Vec::with_capacity(STACK_HEIGHT_LIMIT),
        }
    }
}

/// What the merge writes: the output segment's buffers and counts.
struct Output {
    data: Vec<u8>,
    meta: Vec<u64>,
    key_value_bytes: usize,
    /// Deletes written (only a merge above the bottom keeps any).
    tombstones: usize,
    copy: Option<PendingCopy>,
}

impl Output {
    /// Appends the record `head` sits on, whose meta is `meta`; a record
    /// larger than [`COPY_CHUNK_BYTES`] only starts a pending copy.
    #[inline]
    fn emit(&mut self, views: &Views, head: &Head, meta: Meta) {
        let input = usize::from(head.input);
        let offset = self.data.len();
        // Only the offset changes: the first word is copied as it is.
        let word = views.meta[input][head.position * META_WORDS];
        debug_assert_eq!(word, meta.pack()[0]);
        self.meta.extend_from_slice(&[word, offset as u64]);
        self.key_value_bytes += meta.key_len + meta.value_len;
        self.tombstones += usize::from(meta.op == Op::Delete);
        self.copy = Some(PendingCopy {
            input,
            from: meta.offset,
            left: meta.len(),
        });
        if meta.len() <= COPY_CHUNK_BYTES {
            self.copy_chunk(views);
            debug_assert!(self.copy.is_none());
        }
    }

    fn copy_chunk(&mut self, views: &Views) {
        let copy = self.copy.as_mut().expect("a pending copy");
        let len = copy.left.min(COPY_CHUNK_BYTES);
        let data = views.data[copy.input];
        // Output capacity covers every input byte: this never reallocates.
        debug_assert!(self.data.len() + len <= self.data.capacity());
        self.data
            .extend_from_slice(&data[copy.from..copy.from + len]);
        copy.from += len;
        copy.left -= len;
        if copy.left == 0 {
            self.copy = None;
        }
    }
}

/// One input's head record as the merge heap sees it.
#[derive(Clone, Copy, Default)]
struct Head {
    /// The key's first [`PREFIX_BYTES`] bytes as a big-endian integer,
    /// zero-padded: integer order is byte order wherever two prefixes
    /// differ (a zero pad byte only ties with a zero key byte).
    prefix: u128,
    key_len: u32,
    /// Stack order: a higher number is a newer input.
    input: u8,
    position: usize,
    /// Where the key starts in the input's `data`.
    key_offset: usize,
}

const _: () = assert!(crate::KEY_LEN_MAX <= u32::MAX as usize);

impl Head {
    #[inline]
    fn load(views: &Views, input: usize, position: usize) -> Head {
        let meta = views.meta(input, position);
        let key_offset = meta.key_offset();
        Head {
            prefix: key_prefix(views.data[input], key_offset, meta.key_len),
            key_len: meta.key_len as u32,
            input: input as u8,
            position,
            key_offset,
        }
    }

    /// The key's bytes after the prefix (only for keys longer than it).
    fn tail<'a>(&self, views: &Views<'a>) -> &'a [u8] {
        debug_assert!(self.key_len as usize > PREFIX_BYTES);
        let data = views.data[usize::from(self.input)];
        &data[self.key_offset + PREFIX_BYTES..self.key_offset + self.key_len as usize]
    }

    #[inline]
    fn same_key(&self, other: &Head, views: &Views) -> bool {
        self.prefix == other.prefix
            && self.key_len == other.key_len
            && (self.key_len as usize <= PREFIX_BYTES || self.tail(views) == other.tail(views))
    }
}

/// The inputs' `data` and `meta`, looked up once per step.
struct Views<'a> {
    data: [&'a [u8]; STACK_HEIGHT_LIMIT],
    meta: [&'a [u64]; STACK_HEIGHT_LIMIT],
}

impl<'a> Views<'a> {
    fn new(inputs: &'a [Rc<Segment>]) -> Views<'a> {
        let mut views = Views {
            data: [&[]; STACK_HEIGHT_LIMIT],
            meta: [&[]; STACK_HEIGHT_LIMIT],
        };
        for (i, input) in inputs.iter().enumerate() {
            views.data[i] = input.data();
            views.meta[i] = input.meta_words();
        }
        views
    }

    #[inline]
    fn meta(&self, input: usize, position: usize) -> Meta {
        let words = self.meta[input];
        let at = position * META_WORDS;
        Meta::unpack([words[at], words[at + 1]])
    }

    #[inline]
    fn records(&self, input: usize) -> usize {
        self.meta[input].len() / META_WORDS
    }
}

pub(crate) struct MergeJob {
    /// Stack position of the oldest input; inputs are `run_start..run_start + inputs.len()`.
    pub run_start: usize,
    inputs: Vec<Rc<Segment>>,
    /// The run includes the bottom of the stack: tombstones and expired records go.
    pub drop_bottom: bool,
    /// The clock that decides which records are expired.
    pub now_ms: u64,
    heap: CursorHeap<Head>,
    /// When the heap's top is worth a look for a run (see `bulk`).
    runs: bulk::RunWatch,
    out: Output,
    phase: Phase,
    eager_huge_pages: bool,
    pool: Rc<Pool>,
}

impl MergeJob {
    /// `eager_huge_pages`: advise the output onto huge pages before writing
    /// it (only for merges without a time budget: the faults may stall);
    /// otherwise it is advised when done, for the kernel to collapse in the
    /// background.
    pub fn new(
        stack: &[Rc<Segment>],
        run: Range<usize>,
        now_ms: u64,
        pool: Rc<Pool>,
        eager_huge_pages: bool,
        vecs: JobVecs,
    ) -> MergeJob {
        assert!(!run.is_empty() && run.end <= stack.len());
        assert!(stack.len() <= STACK_HEIGHT_LIMIT);
        let JobVecs { mut inputs } = vecs;
        debug_assert!(inputs.is_empty());
        inputs.extend_from_slice(&stack[run.clone()]);
        let data_len: usize = inputs.iter().map(|segment| segment.data_len()).sum();
        let records: usize = inputs.iter().map(|segment| segment.len()).sum();
        let out_data = pool
            .take_data(data_len, Purpose::Merge)
            .expect("exempt from quota");
        let out_meta = pool
            .take_meta(records * META_WORDS, Purpose::Merge)
            .expect("exempt from quota");
        if eager_huge_pages {
            advise_huge_pages(&out_data);
            advise_huge_pages(&out_meta);
        }
        let mut heap = CursorHeap::new();
        {
            let views = Views::new(&inputs);
            for (i, input) in inputs.iter().enumerate() {
                if input.len() > 0 {
                    heap.push(Head::load(&views, i, 0), |a, b| before(&views, a, b));
                }
            }
        }
        MergeJob {
            run_start: run.start,
            heap,
            runs: bulk::RunWatch::new(),
            inputs,
            drop_bottom: run.start == 0,
            now_ms,
            out: Output {
                data: out_data,
                meta: out_meta,
                key_value_bytes: 0,
                tombstones: 0,
                copy: None,
            },
            phase: Phase::Faulting {
                data_next: 0,
                meta_next: 0,
            },
            eager_huge_pages,
            pool,
        }
    }

    pub fn run(&self) -> Range<usize> {
        self.run_start..self.run_start + self.inputs.len()
    }

    pub fn inputs(&self) -> &[Rc<Segment>] {
        &self.inputs
    }

    /// Works until done or until `budget` from `start` is spent; true when
    /// the output is ready.
    pub fn step(&mut self, start: ClockPair, budget: Duration) -> bool {
        // Work stops a little before the budget: the last batch of records
        // between two clock checks must still end inside it.
        let mut deadline = start.deadline(budget - budget / 4);
        // A first touch of a fresh page can cost a whole huge page of zeroing
        // (~100 us), so faults start only in the first half of the budget.
        let mut fault_deadline = start.deadline(budget / 2);
        loop {
            match &mut self.phase {
                Phase::Faulting {
                    data_next,
                    meta_next,
                } => {
                    let data = self.out.data.spare_capacity_mut();
                    if !touch_pages(data, data_next, &mut fault_deadline) {
                        return false;
                    }
                    let meta = self.out.meta.spare_capacity_mut();
                    if !touch_pages(meta, meta_next, &mut fault_deadline) {
                        return false;
                    }
                    self.phase = Phase::Merging;
                }
                Phase::Merging => {
                    if !self.merge_until(&mut deadline) {
                        return false;
                    }
                    let records = self.out.meta.len() / META_WORDS;
                    let len = slots_for(records);
                    let slots = self
                        .pool
                        .take_index_unzeroed(len, Purpose::MergeIndex)
                        .expect("exempt from quota");
                    if self.eager_huge_pages {
                        advise_huge_pages(&slots);
                    }
                    self.phase = Phase::ZeroingIndex { slots, len };
                }
                Phase::ZeroingIndex { slots, len } => {
                    // Zeroing in chunks also faults the table in outside of
                    // the random-order inserts that follow.
                    let first = slots.len();
                    while slots.len() < *len {
                        // One chunk per step at least (see `touch_pages`).
                        if slots.len() != first && fault_deadline.passed() {
                            return false;
                        }
                        let end = (slots.len() + ZERO_CHUNK_SLOTS).min(*len);
                        slots.resize(end, 0);
                    }
                    let Phase::ZeroingIndex { slots, .. } =
                        std::mem::replace(&mut self.phase, Phase::Merging)
                    else {
                        unreachable!()
                    };
                    let records = self.out.meta.len() / META_WORDS;
                    self.phase = Phase::Indexing {
                        index: HashIndex::new(slots, records),
                        next: 0,
                    };
                }
                Phase::Indexing { index, next } => {
                    let records = self.out.meta.len() / META_WORDS;
                    while *next < records {
                        let end = (*next + RECORDS_PER_CLOCK_CHECK * 2).min(records);
                        index_records(index, &self.out, *next..end);
                        *next = end;
                        if *next < records && deadline.passed() {
                            return false;
                        }
                    }
                    let Phase::Indexing { index, .. } =
                        std::mem::replace(&mut self.phase, Phase::Merging)
                    else {
                        unreachable!()
                    };
                    self.phase = Phase::Done { index };
                }
                Phase::Done { .. } => return true,
            }
        }
    }

    /// The merged segment, or `None` if nothing survived, and the job's
    /// vectors emptied for the next job.
    pub fn finish(mut self) -> (Option<Segment>, JobVecs) {
        let mut vecs = JobVecs {
            inputs: std::mem::take(&mut self.inputs),
        };
        // Dropping the inputs' `Rc`s here lets the store find the retired
        // segments unshared.
        vecs.inputs.clear();
        (self.finish_segment(), vecs)
    }

    fn finish_segment(&mut self) -> Option<Segment> {
        let Phase::Done { index } = std::mem::replace(&mut self.phase, Phase::Merging) else {
            panic!("finish before the merge is done");
        };
        let data = std::mem::take(&mut self.out.data);
        let meta = std::mem::take(&mut self.out.meta);
        if !self.eager_huge_pages {
            advise_huge_pages(&data);
            advise_huge_pages(&meta);
            advise_huge_pages(index.slots());
        }
        if meta.is_empty() {
            self.pool.give(data);
            self.pool.give(meta);
            self.pool.give(index.into_slots());
            return None;
        }
        Some(Segment::from_pooled(
            data,
            meta,
            index,
            self.out.tombstones,
            self.out.key_value_bytes,
            self.pool.clone(),
        ))
    }

    fn merge_until(&mut self, deadline: &mut CpuDeadline) -> bool {
        let views = Views::new(&self.inputs);
        let (heap, out) = (&mut self.heap, &mut self.out);
        loop {
            if out.copy.is_some() {
                out.copy_chunk(&views);
                if deadline.passed() {
                    return false;
                }
                continue;
            }
            let mut copied_bytes = 0;
            for _ in 0..RECORDS_PER_CLOCK_CHECK {
                let Some(&winner) = heap.peek() else {
                    return true;
                };
                if self.runs.worth_a_look(winner.input) {
                    let run = bulk::copy_run(&views, heap, out, self.drop_bottom, self.now_ms);
                    self.runs.looked(run.is_some());
                    if let Some(bytes) = run {
                        copied_bytes += bytes;
                        if copied_bytes >= COPY_BYTES_PER_CLOCK_CHECK {
                            break;
                        }
                        continue;
                    }
                }
                let meta = views.meta(usize::from(winner.input), winner.position);
                advance(&views, heap, &winner);
                // Older versions of the key come next in heap order: skip them.
                while let Some(&top) = heap.peek() {
                    if !top.same_key(&winner, &views) {
                        break;
                    }
                    advance(&views, heap, &top);
                }
                if keep(
                    &views,
                    usize::from(winner.input),
                    self.drop_bottom,
                    self.now_ms,
                    meta,
                ) {
                    out.emit(&views, &winner, meta);
                    copied_bytes += meta.len();
                    if out.copy.is_some() || copied_bytes >= COPY_BYTES_PER_CLOCK_CHECK {
                        break;
                    }
                }
            }
            if deadline.passed() {
                return false;
            }
        }
    }
}

impl Drop for MergeJob {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.out.data));
        self.pool.give(std::mem::take(&mut self.out.meta));
        let phase = std::mem::replace(&mut self.phase, Phase::Merging);
        if let Phase::ZeroingIndex { slots, .. } = phase {
            self.pool.give(slots);
            return;
        }
        if let Phase::Indexing { index, .. } | Phase::Done { index } = phase {
            self.pool.give(index.into_slots());
        }
    }
}

/// Records whose index slots are loaded together: inserts land in random
/// slots of a table far larger than the cache, and prefetching a group's
/// slots before inserting any overlaps their misses.
const INDEX_PREFETCH_RECORDS: usize = 16;

/// Inserts the output records at `positions` into `index`.
fn index_records(index: &mut HashIndex, out: &Output, positions: Range<usize>) {
    let mut hashes = [0u64; INDEX_PREFETCH_RECORDS];
    let mut start = positions.start;
    while start < positions.end {
        let group = start..(start + INDEX_PREFETCH_RECORDS).min(positions.end);
        for (hash, position) in hashes.iter_mut().zip(group.clone()) {
            let at = position * META_WORDS;
            let meta = Meta::unpack([out.meta[at], out.meta[at + 1]]);
            *hash = hash_key(meta.key(&out.data));
            index.prefetch(*hash);
        }
        for (&hash, position) in hashes.iter().zip(group.clone()) {
            index.insert(hash, position);
        }
        start = group.end;
    }
}

/// Index slots zeroed between two looks at the clock (16 KiB).
const ZERO_CHUNK_SLOTS: usize = 4096;

/// Bytes between two touches when faulting pages in.
const PAGE_BYTES: usize = 4096;

/// Writes one element per page of `buffer` from `*next` on, so the page
/// faults happen here, in steps that can stop between them, rather than in
/// the middle of a merge or index step. False if `deadline` came first
/// (after the first page).
pub(crate) fn touch_pages<T: Default + Copy>(
    buffer: &mut [std::mem::MaybeUninit<T>],
    next: &mut usize,
    deadline: &mut CpuDeadline,
) -> bool {
    let stride = (PAGE_BYTES / std::mem::size_of::<T>()).max(1);
    let first = *next;
    while *next < buffer.len() {
        // One page per call whatever the clock says, so steps of any budget
        // (or any slowness, as in a debug build) move the merge on.
        if *next != first && deadline.passed() {
            return false;
        }
        let slot = buffer[*next].as_mut_ptr();
        // SAFETY: `slot` points at an element of `buffer`, which we borrow
        // mutably; the write is volatile only so it cannot be optimised out.
        unsafe { std::ptr::write_volatile(slot, T::default()) };
        *next += stride;
    }
    true
}

/// Heap order: smallest head key first; the newest input first on ties.
#[inline]
fn before(views: &Views, a: &Head, b: &Head) -> bool {
    if a.prefix != b.prefix {
        return a.prefix < b.prefix;
    }
    if a.key_len != b.key_len && a.key_len.min(b.key_len) as usize <= PREFIX_BYTES {
        // Equal padded prefixes and a key of at most PREFIX_BYTES: it is a
        // prefix of the other key, so the shorter comes first.
        return a.key_len < b.key_len;
    }
    if a.key_len as usize <= PREFIX_BYTES {
        // The same key (equal lengths, both within the prefix).
        return a.input > b.input;
    }
    before_by_tails(views, a, b)
}

/// [`before`] for two keys longer than [`PREFIX_BYTES`] with equal prefixes,
/// kept out of line so the common path stays small enough to inline.
#[inline(never)]
fn before_by_tails(views: &Views, a: &Head, b: &Head) -> bool {
    match compare_keys(a.tail(views), b.tail(views)) {
        std::cmp::Ordering::Equal => a.input > b.input,
        order => order == std::cmp::Ordering::Less,
    }
}

/// Whether `a`'s key is smaller than `b`'s, whichever inputs they are in.
#[inline]
fn key_below(views: &Views, a: &Head, b: &Head) -> bool {
    before(views, a, b) && !a.same_key(b, views)
}

/// Moves the heap's top cursor, `top`, past its head record.
#[inline]
fn advance(views: &Views, heap: &mut CursorHeap<Head>, top: &Head) {
    let input = usize::from(top.input);
    let position = top.position + 1;
    if position == views.records(input) {
        heap.pop(|a, b| before(views, a, b));
    } else {
        heap.replace_top(Head::load(views, input, position), |a, b| {
            before(views, a, b)
        });
    }
}

/// Whether the merge keeps the newest version of a key, `meta` in `input`.
#[inline]
fn keep(views: &Views, input: usize, drop_bottom: bool, now_ms: u64, meta: Meta) -> bool {
    if !drop_bottom {
        return true;
    }
    match meta.op {
        Op::Delete => false,
        Op::Set => !is_expired(meta.expire_at_ms(views.data[input]), now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::append;
    use crate::segment::ExternalBytes;
    use std::collections::BTreeMap;

    /// A pseudo-random sequence (xorshift), so failures reproduce.
    struct Random(u64);

    impl Random {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % bound
        }

        /// Keys that stress the prefix order: lengths around 16, zero bytes
        /// (which tie with the prefix's padding), long shared prefixes.
        fn key(&mut self) -> Vec<u8> {
            let len = match self.below(4) {
                0 => self.below(4),
                1 => 14 + self.below(5),
                _ => self.below(40),
            } as usize;
            let alphabet = [0u8, 1, b'k', 0xff];
            (0..len)
                .map(|at| {
                    if at < 12 && self.below(4) > 0 {
                        b'k'
                    } else {
                        alphabet[self.below(4) as usize]
                    }
                })
                .collect()
        }
    }

    /// What one input holds for a key: `None` is a delete.
    type Version = Option<(Vec<u8>, Option<u64>)>;

    /// Meta words as external segment bytes.
    struct Words(Vec<u64>);

    impl AsRef<[u8]> for Words {
        fn as_ref(&self) -> &[u8] {
            bytemuck::cast_slice(&self.0)
        }
    }

    /// A segment over `records` (sorted by key, unique keys), in bytes owned
    /// outside the pool, as a mapped segment file would be.
    fn segment(records: &BTreeMap<Vec<u8>, Version>, pool: &Rc<Pool>) -> Rc<Segment> {
        let mut data = Vec::new();
        let mut meta = Vec::new();
        for (key, version) in records {
            let words = match version {
                Some((value, expire_at_ms)) => {
                    append(&mut data, Op::Set, key, value, *expire_at_ms)
                }
                None => append(&mut data, Op::Delete, key, b"", None),
            };
            meta.extend_from_slice(&words);
        }
        let data: ExternalBytes = Rc::new(data);
        let meta: ExternalBytes = Rc::new(Words(meta));
        Rc::new(Segment::from_external(data, meta, pool.clone()).unwrap())
    }

    /// Merges `stack[run]` to the end in steps of `budget` and returns the
    /// output's records and the number of steps taken.
    fn merge(
        stack: &[Rc<Segment>],
        run: Range<usize>,
        now_ms: u64,
        pool: &Rc<Pool>,
        budget: Duration,
    ) -> (Vec<(Vec<u8>, Version)>, usize) {
        let mut job = MergeJob::new(stack, run, now_ms, pool.clone(), false, JobVecs::new());
        let mut steps = 1;
        while !job.step(ClockPair::now(), budget) {
            steps += 1;
        }
        let (output, vecs) = job.finish();
        assert!(vecs.inputs.is_empty());
        let Some(output) = output else {
            return (Vec::new(), steps);
        };
        let records = (0..output.len())
            .map(|position| {
                let meta = output.meta(position);
                let data = output.data();
                let version = (meta.op == Op::Set)
                    .then(|| (meta.value(data).to_vec(), meta.expire_at_ms(data)));
                (meta.key(data).to_vec(), version)
            })
            .collect::<Vec<(Vec<u8>, Version)>>();
        // The output's byte count (the store's accounting) matches what it
        // holds, whichever path copied each record.
        let key_value_bytes: usize = records
            .iter()
            .map(|(key, version)| key.len() + version.as_ref().map_or(0, |(v, _)| v.len()))
            .sum();
        assert_eq!(output.key_value_bytes(), key_value_bytes);
        (records, steps)
    }

    /// Merges `inputs` (oldest first) from the bottom and from the second
    /// input, in tiny and in unbounded steps, and checks each output
    /// against a model: the newest version of each key wins, and a merge
    /// from the bottom drops deletes and expired records.
    fn check_against_model(
        inputs: &[BTreeMap<Vec<u8>, Version>],
        now_ms: u64,
        pool: &Rc<Pool>,
        seed: u64,
    ) {
        let height = inputs.len();
        let stack: Vec<Rc<Segment>> = inputs.iter().map(|r| segment(r, pool)).collect();
        for start in [0, 1] {
            let mut model: BTreeMap<Vec<u8>, Version> = BTreeMap::new();
            for records in &inputs[start..] {
                model.extend(records.clone());
            }
            if start == 0 {
                model.retain(|_, version| {
                    matches!(version, Some((_, expiry)) if !is_expired(*expiry, now_ms))
                });
            }
            let expected: Vec<_> = model.into_iter().collect();
            for budget in [Duration::from_micros(20), Duration::from_secs(60)] {
                let (merged, _) = merge(&stack, start..height, now_ms, pool, budget);
                assert_eq!(merged, expected, "seed {seed}, run {start}..{height}");
            }
        }
    }

    #[test]
    fn merges_match_a_model_for_keys_that_stress_the_prefix_order() {
        let pool = Rc::new(Pool::new(1 << 30));
        let now_ms = 1000;
        for seed in 1..=40u64 {
            let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let height = 2 + random.below(6) as usize;
            let mut inputs = Vec::new();
            for _ in 0..height {
                let mut records = BTreeMap::new();
                for _ in 0..random.below(300) {
                    let version = match random.below(8) {
                        0 => None,
                        1 => Some((b"expired".to_vec(), Some(now_ms))),
                        2 => Some((b"later".to_vec(), Some(now_ms + 1))),
                        _ => Some((random.below(1000).to_be_bytes().to_vec(), None)),
                    };
                    records.insert(random.key(), version);
                }
                inputs.push(records);
            }
            check_against_model(&inputs, now_ms, &pool, seed);
        }
    }

    /// Inputs that hold key ranges of their own, block by block (as a bulk
    /// load's segments do), with some keys in two inputs, tombstones,
    /// expired records and values too large for one bulk copy: every merge
    /// is mostly runs (`bulk`), and must still match the model.
    #[test]
    fn runs_of_one_input_merge_as_the_model_says() {
        let pool = Rc::new(Pool::new(1 << 30));
        let now_ms = 1000;
        for seed in 1..=30u64 {
            let mut random = Random(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
            let height = 2 + random.below(5) as usize;
            let mut inputs = vec![BTreeMap::new(); height];
            let mut next_key = 0u64;
            while next_key < 3000 {
                let input = random.below(height as u64) as usize;
                for _ in 0..1 + random.below(300) {
                    // Long keys share their first 16 bytes: their order is
                    // settled by the tails.
                    let key = if seed % 2 == 0 {
                        format!("user:profile:{next_key:010}").into_bytes()
                    } else {
                        format!("k{next_key:08}").into_bytes()
                    };
                    let version = match random.below(40) {
                        0 => None,
                        1 => Some((b"expired".to_vec(), Some(now_ms))),
                        2 => Some((vec![3; 100 << 10], None)),
                        _ => Some((next_key.to_be_bytes().to_vec(), None)),
                    };
                    inputs[input].insert(key.clone(), version.clone());
                    if random.below(50) == 0 {
                        let other = random.below(height as u64) as usize;
                        inputs[other].insert(key, Some((b"other".to_vec(), None)));
                    }
                    next_key += 1;
                }
            }
            check_against_model(&inputs, now_ms, &pool, seed);
        }
    }

    /// A segment whose records' bytes are not in key order (the format
    /// allows any layout): a run must not be copied as one block.
    #[test]
    fn records_out_of_layout_order_are_copied_one_by_one() {
        let pool = Rc::new(Pool::new(1 << 30));
        let keys: Vec<Vec<u8>> = (0..500u32)
            .map(|i| format!("key{i:05}").into_bytes())
            .collect();
        // Bytes laid out newest key first, in pairs swapped, so some
        // neighbours are contiguous and some are not.
        let mut layout: Vec<usize> = (0..keys.len()).rev().collect();
        for pair in layout.chunks_exact_mut(2).step_by(3) {
            pair.swap(0, 1);
        }
        let mut data = Vec::new();
        let mut words = vec![[0u64; META_WORDS]; keys.len()];
        for &at in &layout {
            words[at] = append(&mut data, Op::Set, &keys[at], &[at as u8; 40], None);
        }
        let meta: Vec<u64> = words.concat();
        let scattered = Rc::new(
            Segment::from_external(Rc::new(data), Rc::new(Words(meta)), pool.clone()).unwrap(),
        );
        let tail: BTreeMap<Vec<u8>, Version> =
            [(b"zz".to_vec(), Some((b"last".to_vec(), None)))].into();
        let stack = vec![scattered, segment(&tail, &pool)];
        let (merged, _) = merge(&stack, 0..2, 0, &pool, Duration::from_secs(60));
        let mut expected: Vec<(Vec<u8>, Version)> = keys
            .iter()
            .enumerate()
            .map(|(at, key)| (key.clone(), Some((vec![at as u8; 40], None))))
            .collect();
        expected.push((b"zz".to_vec(), Some((b"last".to_vec(), None))));
        assert_eq!(merged, expected);
    }

    #[test]
    fn budgeted_steps_stop_and_resume_mid_merge() {
        let pool = Rc::new(Pool::new(1 << 30));
        let mut random = Random(7);
        let inputs: Vec<BTreeMap<Vec<u8>, Version>> = (0..3)
            .map(|_| {
                (0..20_000)
                    .map(|_| {
                        (
                            random.below(1 << 40).to_be_bytes().to_vec(),
                            Some((vec![1; 32], None)),
                        )
                    })
                    .collect()
            })
            .collect();
        let stack: Vec<Rc<Segment>> = inputs.iter().map(|r| segment(r, &pool)).collect();
        let (budgeted, steps) = merge(&stack, 1..3, 0, &pool, Duration::from_micros(50));
        let (whole, _) = merge(&stack, 1..3, 0, &pool, Duration::from_secs(60));
        assert!(steps > 1, "40,000 records in one 50 us step");
        assert_eq!(budgeted, whole);
        assert!(budgeted.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn head_order_is_key_order_then_newest_input() {
        let mut random = Random(99);
        let mut keys: Vec<Vec<u8>> = (0..400).map(|_| random.key()).collect();
        keys.sort();
        keys.dedup();
        // Both inputs hold every key; the last record's key ends `data`, so
        // its prefix cannot be loaded past the key.
        let mut data = Vec::new();
        let mut meta = Vec::new();
        for key in &keys {
            meta.extend_from_slice(&append(&mut data, Op::Set, key, b"", None));
        }
        let mut views = Views {
            data: [&[]; STACK_HEIGHT_LIMIT],
            meta: [&[]; STACK_HEIGHT_LIMIT],
        };
        for input in 0..2 {
            views.data[input] = &data;
            views.meta[input] = &meta;
        }
        let heads: Vec<Head> = (0..2)
            .flat_map(|input| (0..keys.len()).map(move |at| (input, at)))
            .map(|(input, at)| Head::load(&views, input, at))
            .collect();
        for a in &heads {
            for b in &heads {
                let (key_a, key_b) = (&keys[a.position], &keys[b.position]);
                let expected = key_a < key_b || (key_a == key_b && a.input > b.input);
                assert_eq!(before(&views, a, b), expected, "{key_a:?} {key_b:?}");
                assert_eq!(a.same_key(b, &views), key_a == key_b);
            }
        }
    }

    #[test]
    fn key_prefix_pads_short_keys_with_zeros() {
        let data = *b"abcdefghijklmnopqrstu";
        let full = u128::from_be_bytes(data[..16].try_into().unwrap());
        assert_eq!(key_prefix(&data, 0, 16), full);
        assert_eq!(key_prefix(&data, 0, 20), full);
        assert_eq!(key_prefix(&data, 0, 0), 0);
        assert_eq!(key_prefix(&data, 0, 1), u128::from(b'a') << 120);
        // Near the end of `data`, where 16 bytes cannot be loaded at once.
        assert_eq!(
            key_prefix(&data, 19, 2),
            u128::from_be_bytes(*b"tu\0\0\0\0\0\0\0\0\0\0\0\0\0\0")
        );
        assert_eq!(key_prefix(&data, 21, 0), 0);
    }

    #[test]
    fn small_segments_merge_among_themselves() {
        for from_bottom in [false, true] {
            assert_eq!(choose_run(&[1000, 1, 1, 1], from_bottom), 1..4);
            assert_eq!(choose_run(&[1000, 300, 10, 10], from_bottom), 2..4);
            assert_eq!(choose_run(&[10, 10], from_bottom), 0..2);
        }
        assert_eq!(choose_run(&[100, 30, 10, 10], false), 0..4);
    }

    #[test]
    fn the_bottom_joins_only_a_run_of_half_its_size() {
        // 110 is within 4x of the 50 above it, but not within 2x.
        assert_eq!(choose_run(&[110, 30, 10, 10], true), 1..4);
        assert_eq!(choose_run(&[100, 30, 10, 10], true), 0..4);
        // Above the bottom the ratio is still 4.
        assert_eq!(choose_run(&[1000, 100, 30, 10, 10], true), 1..5);
    }

    #[test]
    fn a_run_has_at_least_two_segments() {
        for from_bottom in [false, true] {
            assert_eq!(choose_run(&[1_000_000, 1000, 10, 1], from_bottom), 2..4);
            assert_eq!(choose_run(&[5, 0], from_bottom), 0..2);
        }
    }
}
