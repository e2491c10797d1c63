//! The background merger: bounded, resumable merges of adjacent segments.
//!
//! Policy (tiered by size ratio): once the stack is taller than
//! `stack_height_max`, merge the longest run of newest segments in which each
//! next-older segment is at most [`SIZE_RATIO`] times the run gathered so far.
//! Small new segments thus merge among themselves, and the large base joins a
//! merge only when the segments above it have grown comparable to it, so each
//! record is rewritten O(log n) times instead of once per batch.
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

use crate::cpu_clock::CpuInstant;
use crate::heap::CursorHeap;
use crate::index::{hash_key, slots_for, HashIndex};
use crate::pool::{advise_huge_pages, Pool, Purpose};
use crate::record::{compare_keys, is_expired, Meta, Op, META_WORDS};
use crate::segment::Segment;
use crate::STACK_HEIGHT_LIMIT;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

/// A merge takes in an older segment while it is at most this many times the
/// size of the newer segments gathered so far.
pub(crate) const SIZE_RATIO: usize = 4;
/// Records merged (or indexed) between two looks at the clock.
const RECORDS_PER_CLOCK_CHECK: usize = 32;
/// Largest copy of record bytes done at once.
const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// The run of `sizes` (oldest first) to merge next; at least two segments.
pub(crate) fn choose_run(sizes: &[usize]) -> Range<usize> {
    let height = sizes.len();
    assert!(height >= 2, "a merge needs two segments");
    let mut start = height - 1;
    let mut total = sizes[start];
    while start > 0 && sizes[start - 1] <= SIZE_RATIO.saturating_mul(total.max(1)) {
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
    cursors: Vec<usize>,
}

impl JobVecs {
    pub fn new() -> JobVecs {
        JobVecs {
            inputs: Vec::with_capacity(STACK_HEIGHT_LIMIT),
            cursors: Vec::with_capacity(STACK_HEIGHT_LIMIT),
        }
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
    cursors: Vec<usize>,
    heap: CursorHeap,
    out_data: Vec<u8>,
    out_meta: Vec<u64>,
    key_value_bytes: usize,
    /// Deletes written to the output (only a merge above the bottom keeps any).
    tombstones: usize,
    copy: Option<PendingCopy>,
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
        let JobVecs {
            mut inputs,
            mut cursors,
        } = vecs;
        debug_assert!(inputs.is_empty() && cursors.is_empty());
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
        cursors.resize(inputs.len(), 0);
        let mut heap = CursorHeap::new();
        for (i, input) in inputs.iter().enumerate() {
            if input.len() > 0 {
                heap.push(i, |a, b| before(&inputs, &cursors, a, b));
            }
        }
        MergeJob {
            run_start: run.start,
            cursors,
            heap,
            inputs,
            drop_bottom: run.start == 0,
            now_ms,
            out_data,
            out_meta,
            key_value_bytes: 0,
            tombstones: 0,
            copy: None,
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
    pub fn step(&mut self, start: CpuInstant, budget: Duration) -> bool {
        // Work stops a little before the budget: the last batch of records
        // between two clock checks must still end inside it.
        let deadline = start + (budget - budget / 4);
        // A first touch of a fresh page can cost a whole huge page of zeroing
        // (~100 us), so faults start only in the first half of the budget.
        let fault_deadline = start + budget / 2;
        loop {
            match &mut self.phase {
                Phase::Faulting {
                    data_next,
                    meta_next,
                } => {
                    let data = self.out_data.spare_capacity_mut();
                    if !touch_pages(data, data_next, fault_deadline) {
                        return false;
                    }
                    let meta = self.out_meta.spare_capacity_mut();
                    if !touch_pages(meta, meta_next, fault_deadline) {
                        return false;
                    }
                    self.phase = Phase::Merging;
                }
                Phase::Merging => {
                    if !self.merge_until(deadline) {
                        return false;
                    }
                    let records = self.out_meta.len() / META_WORDS;
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
                    while slots.len() < *len {
                        if CpuInstant::now() >= fault_deadline {
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
                    let records = self.out_meta.len() / META_WORDS;
                    self.phase = Phase::Indexing {
                        index: HashIndex::new(slots, records),
                        next: 0,
                    };
                }
                Phase::Indexing { index, next } => {
                    let records = self.out_meta.len() / META_WORDS;
                    while *next < records {
                        let end = (*next + RECORDS_PER_CLOCK_CHECK * 2).min(records);
                        for position in *next..end {
                            let at = position * META_WORDS;
                            let meta = Meta::unpack([self.out_meta[at], self.out_meta[at + 1]]);
                            index.insert(hash_key(meta.key(&self.out_data)), position);
                        }
                        *next = end;
                        if *next < records && CpuInstant::now() >= deadline {
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
            cursors: std::mem::take(&mut self.cursors),
        };
        // Dropping the inputs' `Rc`s here lets the store find the retired
        // segments unshared.
        vecs.inputs.clear();
        vecs.cursors.clear();
        (self.finish_segment(), vecs)
    }

    fn finish_segment(&mut self) -> Option<Segment> {
        let Phase::Done { index } = std::mem::replace(&mut self.phase, Phase::Merging) else {
            panic!("finish before the merge is done");
        };
        let data = std::mem::take(&mut self.out_data);
        let meta = std::mem::take(&mut self.out_meta);
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
            self.tombstones,
            self.key_value_bytes,
            self.pool.clone(),
        ))
    }

    fn merge_until(&mut self, deadline: CpuInstant) -> bool {
        loop {
            if self.copy.is_some() {
                self.copy_chunk();
                if CpuInstant::now() >= deadline {
                    return false;
                }
                continue;
            }
            for _ in 0..RECORDS_PER_CLOCK_CHECK {
                if !self.merge_one() {
                    debug_assert!(self.copy.is_none());
                    return true;
                }
                if self.copy.is_some() {
                    break;
                }
            }
            if CpuInstant::now() >= deadline {
                return false;
            }
        }
    }

    /// Takes the next key off the inputs; false when they are exhausted.
    fn merge_one(&mut self) -> bool {
        let Some(winner) = self.heap.peek() else {
            return false;
        };
        let segment = &self.inputs[winner];
        let position = self.cursors[winner];
        let meta = segment.meta(position);
        let key = segment.key(position);
        let keep = keep(segment, self.drop_bottom, self.now_ms, meta);
        advance(&self.inputs, &mut self.cursors, &mut self.heap, winner);
        // Older versions of the key come next in heap order: skip them.
        while let Some(top) = self.heap.peek() {
            if self.inputs[top].key(self.cursors[top]) != key {
                break;
            }
            advance(&self.inputs, &mut self.cursors, &mut self.heap, top);
        }
        if keep {
            self.emit(winner, meta);
        }
        true
    }

    fn emit(&mut self, input: usize, meta: Meta) {
        let offset = self.out_data.len();
        self.out_meta
            .extend_from_slice(&Meta { offset, ..meta }.pack());
        self.key_value_bytes += meta.key_len + meta.value_len;
        self.tombstones += usize::from(meta.op == Op::Delete);
        self.copy = Some(PendingCopy {
            input,
            from: meta.offset,
            left: meta.len(),
        });
        if meta.len() <= COPY_CHUNK_BYTES {
            self.copy_chunk();
            debug_assert!(self.copy.is_none());
        }
    }

    fn copy_chunk(&mut self) {
        let copy = self.copy.as_mut().expect("a pending copy");
        let len = copy.left.min(COPY_CHUNK_BYTES);
        let data = self.inputs[copy.input].data();
        // Output capacity covers every input byte: this never reallocates.
        debug_assert!(self.out_data.len() + len <= self.out_data.capacity());
        self.out_data
            .extend_from_slice(&data[copy.from..copy.from + len]);
        copy.from += len;
        copy.left -= len;
        if copy.left == 0 {
            self.copy = None;
        }
    }
}

impl Drop for MergeJob {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.out_data));
        self.pool.give(std::mem::take(&mut self.out_meta));
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

/// Index slots zeroed between two looks at the clock (16 KiB).
const ZERO_CHUNK_SLOTS: usize = 4096;

/// Bytes between two touches when faulting pages in.
const PAGE_BYTES: usize = 4096;

/// Writes one element per page of `buffer` from `*next` on, so the page
/// faults happen here, in steps that can stop between them, rather than in
/// the middle of a merge or index step. False if `deadline` came first.
pub(crate) fn touch_pages<T: Default + Copy>(
    buffer: &mut [std::mem::MaybeUninit<T>],
    next: &mut usize,
    deadline: CpuInstant,
) -> bool {
    let stride = (PAGE_BYTES / std::mem::size_of::<T>()).max(1);
    while *next < buffer.len() {
        if CpuInstant::now() >= deadline {
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
fn before(inputs: &[Rc<Segment>], cursors: &[usize], a: usize, b: usize) -> bool {
    match compare_keys(inputs[a].key(cursors[a]), inputs[b].key(cursors[b])) {
        std::cmp::Ordering::Equal => a > b,
        order => order == std::cmp::Ordering::Less,
    }
}

/// Moves cursor `top` (the heap's top) past its head record.
fn advance(inputs: &[Rc<Segment>], cursors: &mut [usize], heap: &mut CursorHeap, top: usize) {
    cursors[top] += 1;
    let cursors: &[usize] = cursors;
    if cursors[top] == inputs[top].len() {
        heap.pop(|a, b| before(inputs, cursors, a, b));
    } else {
        heap.sift_down(|a, b| before(inputs, cursors, a, b));
    }
}

/// Whether the merge keeps the newest version of `key`, `meta` in `input`.
fn keep(input: &Segment, drop_bottom: bool, now_ms: u64, meta: Meta) -> bool {
    if !drop_bottom {
        return true;
    }
    match meta.op {
        Op::Delete => false,
        Op::Set => !is_expired(meta.expire_at_ms(input.data()), now_ms),
        Op::Superseded => unreachable!("superseded ops never reach a segment"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_segments_merge_among_themselves() {
        assert_eq!(choose_run(&[1000, 1, 1, 1]), 1..4);
        assert_eq!(choose_run(&[1000, 300, 10, 10]), 2..4);
        assert_eq!(choose_run(&[100, 30, 10, 10]), 0..4);
        assert_eq!(choose_run(&[10, 10]), 0..2);
    }

    #[test]
    fn a_run_has_at_least_two_segments() {
        assert_eq!(choose_run(&[1_000_000, 1000, 10, 1]), 2..4);
        assert_eq!(choose_run(&[5, 0]), 0..2);
    }
}
