//! Ordered iteration: a k-way merge over a stack's segments.
//!
//! Each segment contributes a cursor, a window `[low, high)` of positions
//! found by binary search for the range's bounds. Each step picks the
//! smallest (largest, in reverse) key under any cursor, preferring the newest
//! segment on ties, advances every cursor sitting on that key (older versions
//! are shadowed) and yields the record if it is a live set. The cursors live
//! in a fixed array of [`STACK_HEIGHT_LIMIT`] entries, so creating and
//! stepping a range allocates nothing. Picking the head is a linear scan over
//! the cursors: stacks are short (the merger keeps them near
//! `stack_height_max`), where a scan beats a heap, and a one-segment stack
//! (a fully merged store) takes a plain sequential path.

use crate::segment::Segment;
use crate::{Entry, STACK_HEIGHT_LIMIT};
use std::cmp::Ordering;
use std::ops::Bound;
use std::rc::Rc;

#[derive(Clone, Copy, Default)]
struct Cursor {
    low: u32,
    high: u32,
}

struct Merge<'a> {
    segments: &'a [Rc<Segment>],
    cursors: [Cursor; STACK_HEIGHT_LIMIT],
    now_ms: u64,
}

impl<'a> Merge<'a> {
    fn new(
        segments: &'a [Rc<Segment>],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        now_ms: u64,
    ) -> Merge<'a> {
        assert!(segments.len() <= STACK_HEIGHT_LIMIT);
        let mut cursors = [Cursor::default(); STACK_HEIGHT_LIMIT];
        for (cursor, segment) in cursors.iter_mut().zip(segments) {
            let low = match start {
                Bound::Included(key) => segment.seek(key, true),
                Bound::Excluded(key) => segment.seek(key, false),
                Bound::Unbounded => 0,
            };
            let high = match end {
                Bound::Included(key) => segment.seek(key, false),
                Bound::Excluded(key) => segment.seek(key, true),
                Bound::Unbounded => segment.len(),
            };
            // An inverted range is empty, not a panic.
            *cursor = Cursor {
                low: low as u32,
                high: high.max(low) as u32,
            };
        }
        Merge {
            segments,
            cursors,
            now_ms,
        }
    }

    /// The position to look at next and the segment it is in, advancing past
    /// every version of its key.
    fn step(&mut self, reverse: bool) -> Option<(usize, usize)> {
        let count = self.segments.len();
        if count == 1 {
            let cursor = &mut self.cursors[0];
            if cursor.low == cursor.high {
                return None;
            }
            let position = if reverse {
                cursor.high -= 1;
                cursor.high
            } else {
                cursor.low += 1;
                cursor.low - 1
            };
            return Some((0, position as usize));
        }
        let mut best: Option<(usize, &'a [u8])> = None;
        for (i, cursor) in self.cursors[..count].iter().enumerate() {
            if cursor.low == cursor.high {
                continue;
            }
            let head = if reverse { cursor.high - 1 } else { cursor.low };
            let key = self.segments[i].key(head as usize);
            let better = match best {
                None => true,
                // `>=`/`<=`: a later (newer) segment wins ties.
                Some((_, best_key)) => {
                    let order = key.cmp(best_key);
                    order == Ordering::Equal || (order == Ordering::Less) != reverse
                }
            };
            if better {
                best = Some((i, key));
            }
        }
        let (winner, key) = best?;
        let position = if reverse {
            self.cursors[winner].high - 1
        } else {
            self.cursors[winner].low
        };
        for (i, cursor) in self.cursors[..count].iter_mut().enumerate() {
            if cursor.low == cursor.high {
                continue;
            }
            let head = if reverse { cursor.high - 1 } else { cursor.low };
            if self.segments[i].key(head as usize) == key {
                if reverse {
                    cursor.high -= 1;
                } else {
                    cursor.low += 1;
                }
            }
        }
        Some((winner, position as usize))
    }

    #[inline]
    fn next_live(&mut self, reverse: bool) -> Option<Entry<'a>> {
        loop {
            let (segment, position) = self.step(reverse)?;
            let segments: &'a [Rc<Segment>] = self.segments;
            if let Some(entry) = segments[segment].live_entry(position, self.now_ms) {
                return Some(entry);
            }
        }
    }
}

/// Live records of a snapshot in ascending key order.
pub struct Range<'a> {
    merge: Merge<'a>,
}

/// Live records of a snapshot in descending key order.
pub struct RangeRev<'a> {
    merge: Merge<'a>,
}

impl<'a> Range<'a> {
    pub(crate) fn new(
        segments: &'a [Rc<Segment>],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        now_ms: u64,
    ) -> Range<'a> {
        Range {
            merge: Merge::new(segments, start, end, now_ms),
        }
    }
}

impl<'a> RangeRev<'a> {
    pub(crate) fn new(
        segments: &'a [Rc<Segment>],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        now_ms: u64,
    ) -> RangeRev<'a> {
        RangeRev {
            merge: Merge::new(segments, start, end, now_ms),
        }
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = Entry<'a>;

    #[inline]
    fn next(&mut self) -> Option<Entry<'a>> {
        self.merge.next_live(false)
    }
}

impl<'a> Iterator for RangeRev<'a> {
    type Item = Entry<'a>;

    #[inline]
    fn next(&mut self) -> Option<Entry<'a>> {
        self.merge.next_live(true)
    }
}
