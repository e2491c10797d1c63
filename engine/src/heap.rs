//! A fixed-capacity binary heap for k-way merges over a segment stack.
//!
//! Ranges and the merger both repeatedly take the cursor with the smallest
//! (or largest) head key among up to [`STACK_HEIGHT_LIMIT`] segments. The
//! heap keeps its items in an inline array, so it never allocates, and the
//! caller supplies the order. Ranges store cursor numbers (`u8`) and compare
//! the head keys they cache beside the heap; the merger stores each cursor's
//! whole head (position and a key prefix) in the item itself, so ordering
//! its heap reads nothing but the items.

use crate::STACK_HEIGHT_LIMIT;

const _: () = assert!(STACK_HEIGHT_LIMIT <= u8::MAX as usize + 1);

pub(crate) struct CursorHeap<T> {
    items: [T; STACK_HEIGHT_LIMIT],
    len: usize,
}

impl<T: Copy + Default> CursorHeap<T> {
    pub fn new() -> CursorHeap<T> {
        CursorHeap {
            items: [T::default(); STACK_HEIGHT_LIMIT],
            len: 0,
        }
    }

    #[inline]
    pub fn peek(&self) -> Option<&T> {
        self.items[..self.len].first()
    }

    /// The item that would come out after the top (the better of the top's
    /// children), without changing anything.
    #[inline]
    pub fn runner_up(&self, before: impl Fn(&T, &T) -> bool) -> Option<&T> {
        match self.len {
            0 | 1 => None,
            2 => Some(&self.items[1]),
            _ if before(&self.items[2], &self.items[1]) => Some(&self.items[2]),
            _ => Some(&self.items[1]),
        }
    }

    /// Adds `item`; `before(a, b)` is true when `a` must come out before `b`.
    pub fn push(&mut self, item: T, before: impl Fn(&T, &T) -> bool) {
        assert!(self.len < STACK_HEIGHT_LIMIT);
        let mut at = self.len;
        self.len += 1;
        while at > 0 {
            let parent = (at - 1) / 2;
            if !before(&item, &self.items[parent]) {
                break;
            }
            self.items[at] = self.items[parent];
            at = parent;
        }
        self.items[at] = item;
    }

    /// Removes the top item (its cursor was exhausted).
    #[inline]
    pub fn pop(&mut self, before: impl Fn(&T, &T) -> bool) {
        assert!(self.len > 0);
        self.len -= 1;
        if self.len > 0 {
            self.replace_top(self.items[self.len], before);
        }
    }

    /// Puts `item` in place of the top item (its cursor moved on) and
    /// restores the order.
    #[inline]
    pub fn replace_top(&mut self, item: T, before: impl Fn(&T, &T) -> bool) {
        assert!(self.len > 0);
        // A hole moves down from the top, and `item` is written once where
        // it stops, instead of swapping it down level by level.
        let mut at = 0;
        loop {
            let left = 2 * at + 1;
            if left >= self.len {
                break;
            }
            let right = left + 1;
            let child = if right < self.len && before(&self.items[right], &self.items[left]) {
                right
            } else {
                left
            };
            if !before(&self.items[child], &item) {
                break;
            }
            self.items[at] = self.items[child];
            at = child;
        }
        self.items[at] = item;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_in_order_with_ties_broken_by_the_caller() {
        let keys = [5, 1, 5, 3, 0, 9, 1];
        let before = |&a: &u8, &b: &u8| {
            let (a, b) = (a as usize, b as usize);
            (keys[a], std::cmp::Reverse(a)) < (keys[b], std::cmp::Reverse(b))
        };
        let mut heap = CursorHeap::new();
        for cursor in 0..keys.len() {
            heap.push(cursor as u8, before);
        }
        let mut out = Vec::new();
        while let Some(&top) = heap.peek() {
            out.push(top);
            let runner_up = heap.runner_up(before).copied();
            heap.pop(before);
            assert_eq!(runner_up, heap.peek().copied());
        }
        assert_eq!(out, [4, 6, 1, 3, 2, 0, 5]);
    }

    #[test]
    fn replacing_the_top_keeps_a_full_heap_ordered() {
        // Items are (key, id); every replacement takes the next key of a
        // pseudo-random sequence, as a merge cursor moving on would.
        let before = |a: &(u32, u32), b: &(u32, u32)| a < b;
        let mut heap = CursorHeap::new();
        let mut next = 7u32;
        let mut random = || {
            next = next.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            next >> 16
        };
        for id in 0..STACK_HEIGHT_LIMIT as u32 {
            heap.push((random(), id), before);
        }
        let mut model: Vec<(u32, u32)> = heap.items[..heap.len].to_vec();
        for _ in 0..1000 {
            model.sort_unstable();
            assert_eq!(heap.peek(), model.first());
            let replacement = (random(), model[0].1);
            model[0] = replacement;
            heap.replace_top(replacement, before);
        }
        model.sort_unstable();
        let mut out = Vec::new();
        while let Some(&top) = heap.peek() {
            out.push(top);
            heap.pop(before);
        }
        assert_eq!(out, model);
    }
}
