//! Ordered iteration: a k-way merge over a stack's segments.
//!
//! Each segment contributes a cursor, a window `[low, high)` of positions
//! found by binary search for the range's bounds. Each step picks the
//! smallest (largest, in reverse) key under any cursor, preferring the newest
//! segment on ties, advances every cursor sitting on that key (older versions
//! are shadowed) and yields the record if it is a live set. Cursors, their
//! cached head keys and the heap ordering them live in fixed arrays of
//! [`STACK_HEIGHT_LIMIT`] entries, so creating and stepping a range allocates
//! nothing. A one-segment stack (a fully merged store) skips the heap and
//! walks its meta sequentially.

use crate::heap::CursorHeap;
use crate::record::compare_keys;
use crate::segment::Segment;
use crate::{Entry, STACK_HEIGHT_LIMIT};
use std::cmp::Ordering;
use std::ops::{Bound, RangeBounds};
use std::rc::Rc;

#[derive(Clone, Copy, Default)]
struct Cursor {
    low: u32,
    high: u32,
}

struct Merge<'a> {
    segments: &'a [Rc<Segment>],
    cursors: [Cursor; STACK_HEIGHT_LIMIT],
    /// Each live cursor's head key, cached so ordering the heap never
    /// decodes meta.
    heads: [&'a [u8]; STACK_HEIGHT_LIMIT],
    heap: CursorHeap<u8>,
    reverse: bool,
    now_ms: u64,
}

impl<'a> Merge<'a> {
    fn new(
        segments: &'a [Rc<Segment>],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        now_ms: u64,
        reverse: bool,
    ) -> Merge<'a> {
        assert!(segments.len() <= STACK_HEIGHT_LIMIT);
        let mut merge = Merge {
            segments,
            cursors: [Cursor::default(); STACK_HEIGHT_LIMIT],
            heads: [&[]; STACK_HEIGHT_LIMIT],
            heap: CursorHeap::new(),
            reverse,
            now_ms,
        };
        for (i, segment) in segments.iter().enumerate() {
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
            merge.cursors[i] = Cursor {
                low: low as u32,
                high: high.max(low) as u32,
            };
            if segments.len() > 1 && low < high {
                merge.heads[i] = segment.key(merge.head(i));
                let (heads, reverse) = (&merge.heads, reverse);
                merge
                    .heap
                    .push(i as u8, |&a, &b| before(heads, reverse, a, b));
            }
        }
        merge
    }

    #[inline]
    fn head(&self, cursor: usize) -> usize {
        let Cursor { low, high } = self.cursors[cursor];
        (if self.reverse { high - 1 } else { low }) as usize
    }

    /// Moves the top cursor past its head, keeping the heap ordered.
    #[inline]
    fn advance_top(&mut self, top: usize) {
        let cursor = &mut self.cursors[top];
        if self.reverse {
            cursor.high -= 1;
        } else {
            cursor.low += 1;
        }
        let (heads, reverse) = (&mut self.heads, self.reverse);
        if cursor.low == cursor.high {
            self.heap.pop(|&a, &b| before(heads, reverse, a, b));
        } else {
            let head = if reverse { cursor.high - 1 } else { cursor.low };
            heads[top] = self.segments[top].key(head as usize);
            self.heap
                .replace_top(top as u8, |&a, &b| before(heads, reverse, a, b));
        }
    }

    /// The segment and position to look at next, advancing past every
    /// version of its key.
    #[inline]
    fn step(&mut self) -> Option<(usize, usize)> {
        if self.segments.len() == 1 {
            let cursor = &mut self.cursors[0];
            if cursor.low == cursor.high {
                return None;
            }
            let position = if self.reverse {
                cursor.high -= 1;
                cursor.high
            } else {
                cursor.low += 1;
                cursor.low - 1
            };
            return Some((0, position as usize));
        }
        let winner = usize::from(*self.heap.peek()?);
        let key = self.heads[winner];
        let position = self.head(winner);
        self.advance_top(winner);
        // Older versions of the same key sit right below in heap order.
        while let Some(&top) = self.heap.peek() {
            let top = usize::from(top);
            if self.heads[top] != key {
                break;
            }
            self.advance_top(top);
        }
        Some((winner, position))
    }

    #[inline]
    fn next_live(&mut self) -> Option<Entry<'a>> {
        loop {
            let (segment, position) = self.step()?;
            let segments: &'a [Rc<Segment>] = self.segments;
            if let Some(entry) = segments[segment].live_entry(position, self.now_ms) {
                return Some(entry);
            }
        }
    }
}

/// Heap order: smaller head key first (larger in reverse); on equal keys the
/// newer segment (higher number) first, so it shadows the older ones.
#[inline]
fn before(heads: &[&[u8]], reverse: bool, a: u8, b: u8) -> bool {
    match compare_keys(heads[usize::from(a)], heads[usize::from(b)]) {
        Ordering::Equal => a > b,
        Ordering::Less => !reverse,
        Ordering::Greater => reverse,
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
    pub(crate) fn new<'k, R: RangeBounds<&'k [u8]>>(
        segments: &'a [Rc<Segment>],
        range: &R,
        now_ms: u64,
    ) -> Range<'a> {
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        Range {
            merge: Merge::new(segments, start, end, now_ms, false),
        }
    }
}

impl<'a> RangeRev<'a> {
    pub(crate) fn new<'k, R: RangeBounds<&'k [u8]>>(
        segments: &'a [Rc<Segment>],
        range: &R,
        now_ms: u64,
    ) -> RangeRev<'a> {
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        RangeRev {
            merge: Merge::new(segments, start, end, now_ms, true),
        }
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = Entry<'a>;

    #[inline]
    fn next(&mut self) -> Option<Entry<'a>> {
        self.merge.next_live()
    }
}

impl<'a> Iterator for RangeRev<'a> {
    type Item = Entry<'a>;

    #[inline]
    fn next(&mut self) -> Option<Entry<'a>> {
        self.merge.next_live()
    }
}
