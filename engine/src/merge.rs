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

use crate::heap::CursorHeap;
use crate::index::{hash_key, slots_for, HashIndex};
use crate::pool::{Pool, Purpose};
use crate::record::{is_expired, Meta, Op, META_WORDS};
use crate::segment::Segment;
use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

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
    Merging,
    Indexing { index: HashIndex, next: usize },
    Done { index: HashIndex },
}

pub(crate) struct MergeJob {
    /// Stack position of the oldest input; inputs are `run_start..run_start + inputs.len()`.
    pub run_start: usize,
    inputs: Vec<Rc<Segment>>,
    /// Segments above the run when the job started (for live-key accounting).
    above: Vec<Rc<Segment>>,
    /// The run includes the bottom of the stack: tombstones and expired records go.
    pub drop_bottom: bool,
    /// The clock that decides which records are expired.
    pub now_ms: u64,
    cursors: Vec<usize>,
    heap: CursorHeap,
    out_data: Vec<u8>,
    out_meta: Vec<u64>,
    key_value_bytes: usize,
    copy: Option<PendingCopy>,
    phase: Phase,
    /// Keys whose newest version this merge drops as expired.
    pub expired_dropped: usize,
    /// Of those, keys that a batch applied during the merge wrote again: the
    /// batch accounted for them in `len`, so the drop must not.
    pub expired_redecided: usize,
    pool: Rc<Pool>,
}

impl MergeJob {
    pub fn new(stack: &[Rc<Segment>], run: Range<usize>, now_ms: u64, pool: Rc<Pool>) -> MergeJob {
        assert!(!run.is_empty() && run.end <= stack.len());
        let inputs = stack[run.clone()].to_vec();
        let data_len: usize = inputs.iter().map(|segment| segment.data_len()).sum();
        let records: usize = inputs.iter().map(|segment| segment.len()).sum();
        let out_data = pool
            .take_data(data_len, Purpose::Merge)
            .expect("exempt from quota");
        let out_meta = pool
            .take_meta(records * META_WORDS, Purpose::Merge)
            .expect("exempt from quota");
        let cursors = vec![0; inputs.len()];
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
            above: stack[run.end..].to_vec(),
            drop_bottom: run.start == 0,
            now_ms,
            out_data,
            out_meta,
            key_value_bytes: 0,
            copy: None,
            phase: Phase::Merging,
            expired_dropped: 0,
            expired_redecided: 0,
            pool,
        }
    }

    pub fn run(&self) -> Range<usize> {
        self.run_start..self.run_start + self.inputs.len()
    }

    pub fn inputs(&self) -> &[Rc<Segment>] {
        &self.inputs
    }

    /// Works until done or `deadline`; true when the output is ready.
    pub fn step(&mut self, deadline: Instant) -> bool {
        loop {
            match &mut self.phase {
                Phase::Merging => {
                    if !self.merge_until(deadline) {
                        return false;
                    }
                    let records = self.out_meta.len() / META_WORDS;
                    let slots = self
                        .pool
                        .take_index(slots_for(records), Purpose::MergeIndex)
                        .expect("exempt from quota");
                    self.phase = Phase::Indexing {
                        index: HashIndex::new(slots, records),
                        next: 0,
                    };
                }
                Phase::Indexing { index, next } => {
                    let records = self.out_meta.len() / META_WORDS;
                    while *next < records {
                        let end = (*next + RECORDS_PER_CLOCK_CHECK * 8).min(records);
                        for position in *next..end {
                            let at = position * META_WORDS;
                            let meta = Meta::unpack([self.out_meta[at], self.out_meta[at + 1]]);
                            index.insert(hash_key(meta.key(&self.out_data)), position);
                        }
                        *next = end;
                        if *next < records && Instant::now() >= deadline {
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

    /// The merged segment, or `None` if nothing survived.
    pub fn finish(mut self) -> Option<Segment> {
        let Phase::Done { index } = std::mem::replace(&mut self.phase, Phase::Merging) else {
            panic!("finish before the merge is done");
        };
        let data = std::mem::take(&mut self.out_data);
        let meta = std::mem::take(&mut self.out_meta);
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
            self.key_value_bytes,
            self.pool.clone(),
        ))
    }

    fn merge_until(&mut self, deadline: Instant) -> bool {
        loop {
            if self.copy.is_some() {
                self.copy_chunk();
                if Instant::now() >= deadline {
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
            if Instant::now() >= deadline {
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
        let keep = keep(
            segment,
            &self.above,
            self.drop_bottom,
            self.now_ms,
            meta,
            key,
            &mut self.expired_dropped,
        );
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
        if let Phase::Indexing { index, .. } | Phase::Done { index } = phase {
            self.pool.give(index.into_slots());
        }
    }
}

/// Heap order: smallest head key first; the newest input first on ties.
fn before(inputs: &[Rc<Segment>], cursors: &[usize], a: usize, b: usize) -> bool {
    match inputs[a].key(cursors[a]).cmp(inputs[b].key(cursors[b])) {
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
fn keep(
    input: &Segment,
    above: &[Rc<Segment>],
    drop_bottom: bool,
    now_ms: u64,
    meta: Meta,
    key: &[u8],
    expired_dropped: &mut usize,
) -> bool {
    if !drop_bottom {
        return true;
    }
    match meta.op {
        Op::Delete => false,
        Op::Set => {
            if !is_expired(meta.expire_at_ms(input.data()), now_ms) {
                return true;
            }
            // The key stops counting as live unless a version above the run
            // (present when the job started) already decides it.
            let hash = hash_key(key);
            if !above
                .iter()
                .any(|segment| segment.find(key, hash).is_some())
            {
                *expired_dropped += 1;
            }
            false
        }
        Op::Superseded => unreachable!("superseded ops never reach a segment"),
    }
}

/// Whether the newest version of a key, a set found in stack segment
/// `segment` expiring at `expire_at_ms`, is about to be dropped by `job`.
pub(crate) fn drops_as_expired(job: &MergeJob, segment: usize, expire_at_ms: Option<u64>) -> bool {
    job.drop_bottom && job.run().contains(&segment) && is_expired(expire_at_ms, job.now_ms)
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
