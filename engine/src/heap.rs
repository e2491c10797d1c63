//! A fixed-capacity binary heap of cursor numbers for k-way merges.
//!
//! Ranges and the merger both repeatedly take the cursor with the smallest
//! (or largest) head key among up to [`STACK_HEIGHT_LIMIT`] segments. The
//! heap stores only cursor numbers (`u8`) in an inline array, so it never
//! allocates; the caller supplies the order, which lets ranges compare cached
//! head keys and the merger read them from its segments.

use crate::STACK_HEIGHT_LIMIT;

const _: () = assert!(STACK_HEIGHT_LIMIT <= u8::MAX as usize + 1);

pub(crate) struct CursorHeap {
    items: [u8; STACK_HEIGHT_LIMIT],
    len: usize,
}

impl CursorHeap {
    pub fn new() -> CursorHeap {
        CursorHeap {
            items: [0; STACK_HEIGHT_LIMIT],
            len: 0,
        }
    }

    #[inline]
    pub fn peek(&self) -> Option<usize> {
        (self.len > 0).then(|| self.items[0] as usize)
    }

    /// Adds `cursor`; `before(a, b)` is true when `a` must come out before `b`.
    pub fn push(&mut self, cursor: usize, before: impl Fn(usize, usize) -> bool) {
        assert!(self.len < STACK_HEIGHT_LIMIT);
        let mut at = self.len;
        self.items[at] = cursor as u8;
        self.len += 1;
        while at > 0 {
            let parent = (at - 1) / 2;
            if !before(self.items[at] as usize, self.items[parent] as usize) {
                break;
            }
            self.items.swap(at, parent);
            at = parent;
        }
    }

    /// Removes the top cursor (it was exhausted).
    #[inline]
    pub fn pop(&mut self, before: impl Fn(usize, usize) -> bool) {
        debug_assert!(self.len > 0);
        self.len -= 1;
        self.items[0] = self.items[self.len];
        self.sift_down(before);
    }

    /// Restores order after the top cursor's head key moved on.
    #[inline]
    pub fn sift_down(&mut self, before: impl Fn(usize, usize) -> bool) {
        let mut at = 0;
        loop {
            let left = 2 * at + 1;
            if left >= self.len {
                return;
            }
            let right = left + 1;
            let child = if right < self.len
                && before(self.items[right] as usize, self.items[left] as usize)
            {
                right
            } else {
                left
            };
            if !before(self.items[child] as usize, self.items[at] as usize) {
                return;
            }
            self.items.swap(at, child);
            at = child;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_in_order_with_ties_broken_by_the_caller() {
        let keys = [5, 1, 5, 3, 0, 9, 1];
        let before =
            |a: usize, b: usize| (keys[a], std::cmp::Reverse(a)) < (keys[b], std::cmp::Reverse(b));
        let mut heap = CursorHeap::new();
        for cursor in 0..keys.len() {
            heap.push(cursor, before);
        }
        let mut out = Vec::new();
        while let Some(top) = heap.peek() {
            out.push(top);
            heap.pop(before);
        }
        assert_eq!(out, [4, 6, 1, 3, 2, 0, 5]);
    }
}
