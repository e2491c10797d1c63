//! An immutable sorted run of records: `data`, `meta` and a hash index.
//!
//! Records are sorted by key with unique keys, so a segment answers a point
//! lookup through its [`HashIndex`] and an ordered range by binary search on
//! `meta` followed by a sequential walk. A segment is never changed after it
//! is built; stacks and snapshots share it through `Rc`.
//!
//! The bytes behind `data` and `meta` are a [`Storage`]: either buffers owned
//! by (and returned on drop to) the store's pool, or bytes owned by someone
//! else, e.g. a memory-mapped segment file. The record layout is the same
//! either way (see `record`), which is what lets a later persistence layer
//! write the two buffers out and map them back without any translation.

use crate::allocator::freed_memory_kept;
use crate::index::{hash_key, prefetch_read, slots_for, HashIndex, SEGMENT_RECORDS_MAX};
use crate::pool::{release_pages, Pool, Purpose};
use crate::record::{compare_keys, is_expired, Meta, Op, META_WORDS};
use crate::{Entry, Error};
use std::cmp::Ordering;
use std::rc::Rc;

/// Bytes whose owner is outside the store, e.g. a file mapping.
pub type ExternalBytes = Rc<dyn AsRef<[u8]>>;

/// The backing of a segment's `data` or `meta`.
pub(crate) enum Storage<T> {
    /// A buffer from the store's pool, given back when the segment drops.
    Pooled(Vec<T>),
    /// Bytes owned elsewhere; `meta` must be 8-byte aligned.
    External(ExternalBytes),
}

impl<T: bytemuck::Pod> Storage<T> {
    #[inline]
    fn as_slice(&self) -> &[T] {
        match self {
            Storage::Pooled(buffer) => buffer,
            Storage::External(bytes) => bytemuck::cast_slice((**bytes).as_ref()),
        }
    }
}

/// Size of a transparent huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// Buffers from this size up give their pages back before they are freed or
/// pooled: freeing (or, once the pool is full, unmapping) megabytes of
/// resident pages at once would blow a merge step. A pooled buffer refaults
/// zero pages as it is written again.
const RELEASE_BYTES_MIN: usize = 1024 * 1024;

/// Address and size of a pooled buffer worth releasing page by page.
fn large_region<T>(storage: &Storage<T>) -> (usize, usize) {
    match storage {
        Storage::Pooled(buffer) => large_vec_region(buffer),
        Storage::External(_) => (0, 0),
    }
}

fn large_vec_region<T>(buffer: &Vec<T>) -> (usize, usize) {
    let bytes = buffer.capacity() * std::mem::size_of::<T>();
    if bytes < RELEASE_BYTES_MIN {
        return (0, 0);
    }
    (buffer.as_ptr() as usize, bytes)
}

/// What one lookup in one segment found.
pub(crate) enum Found<'a> {
    Set {
        key: &'a [u8],
        value: &'a [u8],
        expire_at_ms: Option<u64>,
    },
    Delete,
}

pub(crate) struct Segment {
    data: Storage<u8>,
    meta: Storage<u64>,
    index: HashIndex,
    records: usize,
    /// Records that are deletes: with `records`, bounds on how a segment the
    /// store has not yet counted can move `len` (see `Store::garbage_heavy`).
    tombstones: usize,
    key_value_bytes: usize,
    /// Bytes of large buffers already given back by `release_pages`.
    released_bytes: usize,
    pool: Rc<Pool>,
}

impl Segment {
    /// A segment over sorted, unique-key records in pooled buffers, with an
    /// index already holding every position.
    pub fn from_pooled(
        data: Vec<u8>,
        meta: Vec<u64>,
        index: HashIndex,
        tombstones: usize,
        key_value_bytes: usize,
        pool: Rc<Pool>,
    ) -> Segment {
        let records = meta.len() / META_WORDS;
        assert_eq!(meta.len() % META_WORDS, 0);
        assert!(records <= SEGMENT_RECORDS_MAX);
        assert!(tombstones <= records);
        let segment = Segment {
            data: Storage::Pooled(data),
            meta: Storage::Pooled(meta),
            index,
            records,
            tombstones,
            key_value_bytes,
            released_bytes: 0,
            pool,
        };
        debug_assert!(segment.is_sorted());
        debug_assert_eq!(
            (0..records)
                .filter(|&position| segment.meta(position).op == Op::Delete)
                .count(),
            tombstones
        );
        segment
    }

    /// A segment over bytes owned elsewhere (e.g. mapped from a file written
    /// from a segment's `data` and `meta`). Every record is checked: bounds,
    /// ops, flags, strictly ascending keys. The index is rebuilt into a
    /// pooled buffer.
    pub fn from_external(
        data: ExternalBytes,
        meta: ExternalBytes,
        pool: Rc<Pool>,
    ) -> Result<Segment, Error> {
        let corrupt = |reason, record| Error::CorruptSegment { reason, record };
        let meta_bytes = (*meta).as_ref();
        if meta_bytes.len() % (META_WORDS * 8) != 0 {
            return Err(corrupt("meta length is not a whole number of records", 0));
        }
        if bytemuck::try_cast_slice::<u8, u64>(meta_bytes).is_err() {
            return Err(corrupt("meta is not 8-byte aligned", 0));
        }
        let records = meta_bytes.len() / (META_WORDS * 8);
        if records > SEGMENT_RECORDS_MAX {
            return Err(corrupt("too many records", records));
        }
        let data_bytes = (*data).as_ref();
        let words: &[u64] = bytemuck::cast_slice(meta_bytes);
        let mut key_value_bytes = 0;
        let mut tombstones = 0;
        let mut previous: Option<&[u8]> = None;
        for record in 0..records {
            let at = record * META_WORDS;
            let meta = Meta::unpack_checked([words[at], words[at + 1]], data_bytes.len())
                .map_err(|reason| corrupt(reason, record))?;
            let key = meta.key(data_bytes);
            if previous.is_some_and(|previous| previous >= key) {
                return Err(corrupt("keys are not strictly ascending", record));
            }
            previous = Some(key);
            key_value_bytes += meta.key_len + meta.value_len;
            tombstones += usize::from(meta.op == Op::Delete);
        }
        let slots = pool.take_index(slots_for(records), Purpose::Load)?;
        let mut index = HashIndex::new(slots, records);
        for position in 0..records {
            let at = position * META_WORDS;
            let key = Meta::unpack([words[at], words[at + 1]]).key(data_bytes);
            index.insert(hash_key(key), position);
        }
        Ok(Segment {
            data: Storage::External(data),
            meta: Storage::External(meta),
            index,
            records,
            tombstones,
            key_value_bytes,
            released_bytes: 0,
            pool,
        })
    }

    fn is_sorted(&self) -> bool {
        (1..self.records).all(|i| self.key(i - 1) < self.key(i))
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.records
    }

    /// Records that are deletes.
    pub fn tombstones(&self) -> usize {
        self.tombstones
    }

    pub fn key_value_bytes(&self) -> usize {
        self.key_value_bytes
    }

    /// Bytes of `data` in use.
    pub fn data_len(&self) -> usize {
        self.data.as_slice().len()
    }

    #[inline]
    pub fn data(&self) -> &[u8] {
        self.data.as_slice()
    }

    /// The raw `meta` words (2 per record), as a persistence layer writes them.
    pub fn meta_words(&self) -> &[u64] {
        self.meta.as_slice()
    }

    #[inline]
    pub fn meta(&self, position: usize) -> Meta {
        let words = self.meta.as_slice();
        let at = position * META_WORDS;
        Meta::unpack([words[at], words[at + 1]])
    }

    #[inline]
    pub fn key(&self, position: usize) -> &[u8] {
        self.meta(position).key(self.data.as_slice())
    }

    /// The newest (only) record for `key` in this segment.
    #[inline]
    pub fn find(&self, key: &[u8], hash: u64) -> Option<Found<'_>> {
        let data = self.data.as_slice();
        let words = self.meta.as_slice();
        let mut meta = None;
        self.index.find(hash, |position| {
            let at = position * META_WORDS;
            let candidate = Meta::unpack([words[at], words[at + 1]]);
            let found = candidate.key(data) == key;
            if found {
                meta = Some(candidate);
            }
            found
        })?;
        let meta = meta.expect("index found a position");
        debug_assert!(!meta.superseded, "superseded ops never reach a segment");
        Some(match meta.op {
            Op::Set => Found::Set {
                key: meta.key(data),
                value: meta.value(data),
                expire_at_ms: meta.expire_at_ms(data),
            },
            Op::Delete => Found::Delete,
        })
    }

    /// Starts loading the index slot a lookup of `hash` begins at.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Starts loading the `meta` of the record a lookup of `hash` will
    /// most likely read (the first slot with its fingerprint; its index
    /// slot should be loaded by now), and returns its position.
    #[inline]
    pub fn prefetch_meta(&self, hash: u64) -> Option<usize> {
        let position = self.index.first_candidate(hash)?;
        prefetch_read(&self.meta.as_slice()[position * META_WORDS]);
        Some(position)
    }

    /// Starts loading the bytes (expiry, key, value) of the record at
    /// `position`, whose `meta` should be loaded by now. Out of range (a
    /// stale hint) does nothing.
    #[inline]
    pub fn prefetch_record(&self, position: usize) {
        if position < self.records {
            // An empty key and value at the very end have no byte.
            if let Some(byte) = self.data.as_slice().get(self.meta(position).key_offset()) {
                prefetch_read(byte);
            }
        }
    }

    /// Gives back up to `chunk_bytes` more of the physical pages of this
    /// (retired, unshared) segment's buffers of 1 MiB and more; true once
    /// all are (at once in a process that keeps freed memory). Smaller ones
    /// are freed or pooled on drop as they are.
    pub fn release_pages(&mut self, chunk_bytes: usize) -> bool {
        if freed_memory_kept() {
            // Pages the allocator keeps for reuse would only fault back in
            // (see `crate::allocator`): nothing to release.
            return true;
        }
        let regions = [
            large_region(&self.data),
            large_region(&self.meta),
            large_vec_region(self.index.slots()),
        ];
        let mut skip = self.released_bytes;
        for (address, bytes) in regions {
            if skip >= bytes {
                skip -= bytes;
                continue;
            }
            // End chunks on huge-page boundaries: releasing part of a huge
            // page makes the kernel split it first, which costs far more.
            let from = address + skip;
            let boundary = (from + 1).next_multiple_of(HUGE_PAGE_BYTES);
            let len = (bytes - skip).min(chunk_bytes).min(boundary - from).max(1);
            release_pages(from, len);
            self.released_bytes += len;
            return false;
        }
        true
    }

    /// First position whose key is `>= key` (or `> key` when `inclusive` is false).
    pub fn seek(&self, key: &[u8], inclusive: bool) -> usize {
        let (mut low, mut high) = (0, self.records);
        while low < high {
            let middle = low + (high - low) / 2;
            let before = match compare_keys(self.key(middle), key) {
                Ordering::Less => true,
                Ordering::Equal => !inclusive,
                Ordering::Greater => false,
            };
            if before {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// The live entry at `position`, or `None` for a tombstone or an expired record.
    #[inline]
    pub fn live_entry(&self, position: usize, now_ms: u64) -> Option<Entry<'_>> {
        let meta = self.meta(position);
        if meta.op != Op::Set {
            return None;
        }
        let data = self.data.as_slice();
        let expire_at_ms = meta.expire_at_ms(data);
        if is_expired(expire_at_ms, now_ms) {
            return None;
        }
        Some(Entry {
            key: meta.key(data),
            value: meta.value(data),
            expire_at_ms,
        })
    }
}

impl Segment {
    /// Gives every buffer back (to the pool, or drops external bytes),
    /// leaving an empty segment with no records: what the store keeps in a
    /// spare `Rc` to reuse its allocation for the next segment.
    pub fn hollow_out(&mut self) {
        if let Storage::Pooled(data) =
            std::mem::replace(&mut self.data, Storage::Pooled(Vec::new()))
        {
            self.pool.give(data);
        }
        if let Storage::Pooled(meta) =
            std::mem::replace(&mut self.meta, Storage::Pooled(Vec::new()))
        {
            self.pool.give(meta);
        }
        self.pool.give(self.index.take_slots());
        self.records = 0;
        self.tombstones = 0;
        self.key_value_bytes = 0;
        self.released_bytes = 0;
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.hollow_out();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::append;

    fn external_parts(records: &[(&[u8], Op, &[u8])]) -> (ExternalBytes, ExternalBytes) {
        let mut data = Vec::new();
        let mut meta: Vec<u64> = Vec::new();
        for &(key, op, value) in records {
            meta.extend_from_slice(&append(&mut data, op, key, value, None));
        }
        // A Vec<u64> keeps the 8-byte alignment mapped files have.
        (Rc::new(data), Rc::new(AlignedBytes(meta)))
    }

    struct AlignedBytes(Vec<u64>);
    impl AsRef<[u8]> for AlignedBytes {
        fn as_ref(&self) -> &[u8] {
            bytemuck::cast_slice(&self.0)
        }
    }

    #[test]
    fn external_segment_reads_like_a_pooled_one() {
        let pool = Rc::new(Pool::new(1 << 20));
        let (data, meta) = external_parts(&[
            (b"a", Op::Set, b"1"),
            (b"b", Op::Delete, b""),
            (b"c", Op::Set, b"3"),
        ]);
        let segment = Segment::from_external(data, meta, pool.clone()).unwrap();
        assert_eq!(segment.len(), 3);
        assert!(matches!(
            segment.find(b"a", hash_key(b"a")),
            Some(Found::Set { value: b"1", .. })
        ));
        assert!(matches!(
            segment.find(b"b", hash_key(b"b")),
            Some(Found::Delete)
        ));
        assert!(segment.find(b"d", hash_key(b"d")).is_none());
        assert_eq!(segment.seek(b"b", true), 1);
        assert_eq!(segment.seek(b"b", false), 2);
        assert_eq!(segment.live_entry(2, 0).unwrap().value, b"3");
        assert!(segment.live_entry(1, 0).is_none());
        drop(segment);
        pool.trim();
        assert_eq!(pool.held_bytes(), 0);
    }

    #[test]
    fn every_prefetch_stage_is_safe_on_any_key() {
        let pool = Rc::new(Pool::new(1 << 20));
        // The empty key with an empty value is a record with no bytes at
        // all: its key offset is the end of `data`.
        let empty: &[(&[u8], Op, &[u8])] = &[(b"", Op::Set, b"")];
        let two: &[(&[u8], Op, &[u8])] = &[(b"a", Op::Set, b"1"), (b"b", Op::Delete, b"")];
        for records in [empty, two] {
            let (data, meta) = external_parts(records);
            let segment = Segment::from_external(data, meta, pool.clone()).unwrap();
            for (position, &(key, _, _)) in records.iter().enumerate() {
                segment.prefetch(hash_key(key));
                assert_eq!(segment.prefetch_meta(hash_key(key)), Some(position));
                segment.prefetch_record(position);
            }
            assert_eq!(segment.prefetch_meta(hash_key(b"absent")), None);
            // A stale hint past the end does nothing.
            segment.prefetch_record(records.len());
            segment.prefetch_record(usize::MAX);
        }
    }

    #[test]
    fn external_segment_rejects_unsorted_keys_and_bad_bounds() {
        let pool = Rc::new(Pool::new(1 << 20));
        let (data, meta) = external_parts(&[(b"b", Op::Set, b"1"), (b"a", Op::Set, b"2")]);
        assert_eq!(
            Segment::from_external(data, meta.clone(), pool.clone()).err(),
            Some(Error::CorruptSegment {
                reason: "keys are not strictly ascending",
                record: 1
            })
        );
        let short: ExternalBytes = Rc::new(vec![0u8; 2]);
        assert!(matches!(
            Segment::from_external(short, meta, pool.clone()),
            Err(Error::CorruptSegment {
                reason: "record bytes past the end of data",
                ..
            })
        ));
        let ragged: ExternalBytes = Rc::new(AlignedBytes(vec![0u64; 3]));
        assert!(Segment::from_external(Rc::new(Vec::<u8>::new()), ragged, pool).is_err());
    }
}
