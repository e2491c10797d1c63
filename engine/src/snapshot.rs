//! Snapshots: a shared, frozen view of a store's segment stack.
//!
//! The store keeps its stack as `Rc<Vec<Rc<Segment>>>`. Taking a snapshot
//! clones that outer `Rc` (O(1), no allocation). The store edits its stack
//! copy-on-write: while no snapshot shares the `Vec`, applies and merge swaps
//! edit it in place; once one does, the next edit copies the `Vec` of `Rc`s
//! (a few dozen pointers), never records. Segments are immutable, so a
//! snapshot is isolated from every later batch, merge and `clear`, and holding
//! one costs only the segments it keeps alive after the store moved on.

use crate::index::hash_key;
use crate::range::{Range, RangeRev};
use crate::record::is_expired;
use crate::segment::{Found, Segment};
use std::ops::RangeBounds;
use std::rc::Rc;

pub(crate) type Stack = Rc<Vec<Rc<Segment>>>;

/// A live record: key, value and expiry (Unix ms), borrowed from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub expire_at_ms: Option<u64>,
}

/// The newest version of `key` in `segments` (oldest first), if it is a live set.
#[inline]
pub(crate) fn lookup<'a>(
    segments: &'a [Rc<Segment>],
    key: &[u8],
    now_ms: u64,
) -> Option<Entry<'a>> {
    let hash = hash_key(key);
    for segment in segments.iter().rev() {
        match segment.find(key, hash) {
            None => continue,
            Some(Found::Delete) => return None,
            Some(Found::Set {
                key,
                value,
                expire_at_ms,
            }) => {
                if is_expired(expire_at_ms, now_ms) {
                    return None;
                }
                return Some(Entry {
                    key,
                    value,
                    expire_at_ms,
                });
            }
        }
    }
    None
}

/// A frozen, O(1)-cloneable view of a store. Not `Send`: it shares the
/// store's segments through `Rc`.
#[derive(Clone)]
pub struct Snapshot {
    stack: Stack,
    now_ms: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("height", &self.height())
            .field("now_ms", &self.now_ms)
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(stack: Stack, now_ms: u64) -> Snapshot {
        Snapshot { stack, now_ms }
    }

    /// The live value of `key` as of the snapshot, judged by its clock.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.get_entry(key).map(|entry| entry.value)
    }

    /// The live record for `key`, with its expiry.
    pub fn get_entry(&self, key: &[u8]) -> Option<Entry<'_>> {
        lookup(&self.stack, key, self.now_ms)
    }

    /// Live records with keys in `range`, ascending. Bounds are `&[u8]`:
    /// `snap.range(..)`, `snap.range(a..b)`, `snap.range(a..=b)`,
    /// `snap.range(a..)`, `snap.range((Bound::Excluded(a), Bound::Unbounded))`.
    pub fn range<'k, R: RangeBounds<&'k [u8]>>(&self, range: R) -> Range<'_> {
        Range::new(&self.stack, &range, self.now_ms)
    }

    /// Live records with keys in `range`, descending.
    pub fn range_rev<'k, R: RangeBounds<&'k [u8]>>(&self, range: R) -> RangeRev<'_> {
        RangeRev::new(&self.stack, &range, self.now_ms)
    }

    /// The clock (Unix ms) this snapshot judges expiry by.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn set_now_ms(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Each segment's raw `data` bytes and `meta` words, oldest first: the
    /// byte-exact form a persistence layer writes out (meta as little-endian
    /// `u64`s) and hands back through [`crate::Store::push_external_segment`].
    pub fn segments(&self) -> impl Iterator<Item = (&[u8], &[u64])> {
        self.stack
            .iter()
            .map(|segment| (segment.data(), segment.meta_words()))
    }

    /// Segments in this snapshot (oldest first).
    pub fn height(&self) -> usize {
        self.stack.len()
    }
}
