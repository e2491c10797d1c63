//! Bulk copies: a run of records that one input holds alone, copied as one
//! block instead of record by record.
//!
//! While the heap's top input keeps holding the smallest key, the records
//! it holds below the next input's head key have no other version in the
//! merge, and in a segment they sit one after the other in `data`. Such a
//! run needs none of the per-record work (a heap replacement, a duplicate
//! check, a copy call): one `memcpy` of its bytes and a pass over its meta
//! that moves each offset by the same amount. Runs are how a bulk load of
//! ordered keys merges (every input a key range of its own: each merge is a
//! concatenation), and how a small segment merges into a large one (the
//! large one's records between two of the small one's keys).
//!
//! Finding a run costs a few key comparisons and one record load when there
//! is none, so it is only looked for after the same input won
//! [`STREAK_MIN`] times in a row, and after each look that found none the
//! streak it takes doubles (up to [`STREAK_MAX`]): a merge of evenly
//! interleaved inputs, which has no runs, then pays almost nothing for
//! them (`merge_sim`'s random overwrites merge at the same CPU per record).
//! Its end is found by galloping: probes at doubling distances, then a
//! binary search, so a run of `n` records costs `O(log n)` key loads. A run
//! stops before any record the merge would drop (a tombstone or an expired
//! record at the bottom of the stack), before a record whose bytes do not
//! follow the previous record's (a layout the format allows), and at
//! [`RUN_BYTES_MAX`], so a step still looks at the clock often.

use super::{before, keep, key_below, CursorHeap, Head, Op, Output, Views, META_WORDS};

/// Most bytes one bulk copy moves: the per-record loop's clock-check
/// interval, so a step's deadline is kept as well as before.
pub(super) const RUN_BYTES_MAX: usize = super::COPY_BYTES_PER_CLOCK_CHECK;

/// Wins in a row by one input after which a run is looked for.
const STREAK_MIN: u32 = 2;
/// Longest streak a run waits for after looks that found none.
const STREAK_MAX: u32 = 64;

/// Decides when the heap's top is worth a look for a run.
pub(super) struct RunWatch {
    input: u8,
    streak: u32,
    streak_wanted: u32,
}

impl RunWatch {
    pub fn new() -> RunWatch {
        RunWatch {
            input: 0,
            streak: 0,
            streak_wanted: STREAK_MIN,
        }
    }

    /// Counts `input` at the heap's top once more; true when its streak is
    /// long enough for a look.
    #[inline]
    pub fn worth_a_look(&mut self, input: u8) -> bool {
        if self.streak > 0 && input == self.input {
            self.streak += 1;
        } else {
            (self.input, self.streak) = (input, 1);
        }
        self.streak >= self.streak_wanted
    }

    /// The look found a run or not.
    #[inline]
    pub fn looked(&mut self, found: bool) {
        self.streak_wanted = if found {
            STREAK_MIN
        } else {
            (self.streak_wanted * 2).min(STREAK_MAX)
        };
    }
}

/// Copies the run of records at the heap's top, if its input holds at least
/// two records below every other input's head, and moves the top past it.
/// Returns the bytes copied, or `None` (nothing changed) without a run.
/// (Not a byte count alone: a run of one empty record copies no byte.)
pub(super) fn copy_run(
    views: &Views,
    heap: &mut CursorHeap<Head>,
    out: &mut Output,
    drop_bottom: bool,
    now_ms: u64,
) -> Option<usize> {
    debug_assert!(out.copy.is_none());
    let top = *heap.peek()?;
    let bound = heap.runner_up(|a, b| before(views, a, b)).copied();
    if let Some(bound) = &bound {
        // An equal key elsewhere is an older version to skip: the
        // per-record path handles that.
        if !key_below(views, &top, bound) {
            return None;
        }
    }
    let input = usize::from(top.input);
    let records = views.records(input);
    let end = run_end(views, &top, bound.as_ref());
    assert!(top.position < end && end <= records);
    if end - top.position < 2 {
        return None;
    }
    let run = copyable_prefix(views, input, top.position..end, drop_bottom, now_ms);
    if run.end == top.position {
        return None;
    }
    emit_run(views, out, input, top.position, &run);
    if run.end == records {
        heap.pop(|a, b| before(views, a, b));
    } else {
        heap.replace_top(Head::load(views, input, run.end), |a, b| {
            before(views, a, b)
        });
    }
    Some(run.bytes)
}

/// What [`copyable_prefix`] found: where the run ends, and what its
/// records add to the output's counts (counted as it read their meta, so
/// `emit_run` need not unpack it again).
struct CopyableRun {
    end: usize,
    bytes: usize,
    key_value_bytes: usize,
    tombstones: usize,
}

/// The first position after `top` in its input whose key is not below
/// `bound` (the input's end without one), found by galloping. Probing stops
/// early once the probed records' bytes pass [`RUN_BYTES_MAX`] (their
/// offsets say so when the layout is contiguous, and `copyable_prefix`
/// checks): a longer run would only be cut there.
fn run_end(views: &Views, top: &Head, bound: Option<&Head>) -> usize {
    let input = usize::from(top.input);
    let records = views.records(input);
    let start_offset = views.meta(input, top.position).offset;
    let below = |position: usize| {
        bound.map_or(true, |bound| {
            key_below(views, &Head::load(views, input, position), bound)
        })
    };
    // `good` is below the bound; `bad` is the input's end or not below it.
    let mut good = top.position;
    let mut step = 1;
    let mut bad = loop {
        let probe = good + step;
        if probe >= records {
            break records;
        }
        if !below(probe) {
            break probe;
        }
        good = probe;
        if views.meta(input, probe).offset.saturating_sub(start_offset) > RUN_BYTES_MAX {
            // Far enough: everything up to `good` is below the bound.
            return good;
        }
        step *= 2;
    };
    while bad - good > 1 {
        let middle = good + (bad - good) / 2;
        if below(middle) {
            good = middle;
        } else {
            bad = middle;
        }
    }
    bad
}

/// The longest prefix of `positions` that one block copy can move (every
/// record kept, each record's bytes right after the previous one's, at
/// most [`RUN_BYTES_MAX`] bytes in all).
fn copyable_prefix(
    views: &Views,
    input: usize,
    positions: std::ops::Range<usize>,
    drop_bottom: bool,
    now_ms: u64,
) -> CopyableRun {
    let start_offset = views.meta(input, positions.start).offset;
    let mut run = CopyableRun {
        end: positions.end,
        bytes: 0,
        key_value_bytes: 0,
        tombstones: 0,
    };
    for position in positions {
        let meta = views.meta(input, position);
        if meta.offset != start_offset + run.bytes
            || run.bytes + meta.len() > RUN_BYTES_MAX
            || !keep(views, input, drop_bottom, now_ms, meta)
        {
            run.end = position;
            break;
        }
        run.bytes += meta.len();
        run.key_value_bytes += meta.key_len + meta.value_len;
        run.tombstones += usize::from(meta.op == Op::Delete);
    }
    run
}

/// Appends `input`'s records from `start` to `run.end` (their bytes
/// contiguous in its `data`) to the output: one copy of the bytes, and
/// their meta with each offset moved to the output's.
fn emit_run(views: &Views, out: &mut Output, input: usize, start: usize, run: &CopyableRun) {
    assert!(start < run.end && run.bytes <= RUN_BYTES_MAX);
    let words = &views.meta[input][start * META_WORDS..run.end * META_WORDS];
    let from = views.meta(input, start).offset;
    let to = out.data.len();
    // Output capacity covers every input byte: this never reallocates.
    debug_assert!(to + run.bytes <= out.data.capacity());
    debug_assert!(out.meta.len() + words.len() <= out.meta.capacity());
    out.data
        .extend_from_slice(&views.data[input][from..from + run.bytes]);
    for record in words.chunks_exact(META_WORDS) {
        // Only the offset changes: the first word is copied as it is.
        out.meta
            .extend_from_slice(&[record[0], (record[1] as usize - from + to) as u64]);
    }
    out.key_value_bytes += run.key_value_bytes;
    out.tombstones += run.tombstones;
}
