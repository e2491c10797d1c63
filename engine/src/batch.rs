//! A batch: ops collected up front, applied to the store all at once.
//!
//! A batch is created with room for `ops` ops and `bytes` key/value bytes
//! (`Store::new_batch`), taking three buffers from the store's pool: `data`
//! for record bytes, `meta` for the two words per op, and a power-of-two hash
//! table (at least two slots per op) from key to the op's position, each
//! slot carrying a fingerprint of the key's hash above the position so that
//! probing past other keys rarely touches their meta and bytes (a batch open
//! over many rounds holds thousands of ops, and most GETs miss it). Ops are
//! appended in arrival order; the table always points at the latest op for a
//! key, which makes [`Batch::get`] O(1) (read-your-writes for group commit)
//! and lets a replaced op be marked superseded right away (a flag in its
//! meta word: the op itself is kept, so [`Batch::truncate`] can take the
//! later ops back and restore it), so `apply` only drops those and sorts
//! the rest: sorting moves meta integers, never bytes.
//! Apply then copies the record bytes once, in key order, into a second
//! pooled buffer, so segments are sequential in both `meta` and `data`
//! (scans and merges stream instead of missing the cache per record; moss
//! leaves batch bytes in arrival order). The batch's `meta` and table become
//! the new segment's meta and index, so a steady stream of batches allocates
//! nothing.

use crate::index::{hash_key, prefetch_read, KeyHash, RecordHint, PREFETCH_PROBES_MAX};
use crate::pool::{Pool, Purpose};
use crate::record::{append, compare_keys, key_prefix, Meta, Op, META_WORDS};
use crate::{Error, KEY_LEN_MAX, VALUE_LEN_MAX};
use std::rc::Rc;

/// The latest op for a key in an unapplied batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOp<'a> {
    Set {
        value: &'a [u8],
        expire_at_ms: Option<u64>,
    },
    Delete,
}

/// Ops to apply atomically with [`crate::Store::apply`]. Not `Send`: its
/// buffers belong to one store's pool.
pub struct Batch {
    pub(crate) data: Vec<u8>,
    pub(crate) meta: Vec<u64>,
    pub(crate) table: Vec<u32>,
    /// Low bits of a table slot holding `position + 1`; the rest hold the
    /// fingerprint.
    pos_bits: u32,
    /// Ops in `meta` that a later op on the same key replaced.
    pub(crate) superseded: usize,
    ops_max: usize,
    bytes_max: usize,
    pub(crate) pool: Rc<Pool>,
}

impl Batch {
    pub(crate) fn new(
        data: Vec<u8>,
        meta: Vec<u64>,
        table: Vec<u32>,
        ops_max: usize,
        bytes_max: usize,
        pool: Rc<Pool>,
    ) -> Batch {
        assert!(data.capacity() >= bytes_max);
        assert!(meta.capacity() >= ops_max * META_WORDS);
        assert!(table.len() >= ops_max * 2 && table.len().is_power_of_two());
        // Room for `ops_max` itself (positions are stored plus one).
        let pos_bits = usize::BITS - ops_max.leading_zeros();
        assert!(
            pos_bits < u32::BITS,
            "ops_max {ops_max} leaves no fingerprint"
        );
        Batch {
            data,
            meta,
            table,
            pos_bits,
            superseded: 0,
            ops_max,
            bytes_max,
            pool,
        }
    }

    /// Sets `key` to `value`, replacing any earlier op on `key` in this batch.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.push(Op::Set, key, value, None)
    }

    /// Sets `key` to `value` until the clock reaches `expire_at_ms` (Unix ms).
    pub fn set_with_expiry(
        &mut self,
        key: &[u8],
        value: &[u8],
        expire_at_ms: u64,
    ) -> Result<(), Error> {
        self.push(Op::Set, key, value, Some(expire_at_ms))
    }

    /// Deletes `key` (a tombstone hiding older values).
    pub fn delete(&mut self, key: &[u8]) -> Result<(), Error> {
        self.push(Op::Delete, key, &[], None)
    }

    /// Sets `key` to a `value_len`-byte value (zeroed) and returns it for
    /// the caller to fill in place, saving a copy (moss `AllocSet`).
    pub fn alloc_set(&mut self, key: &[u8], value_len: usize) -> Result<&mut [u8], Error> {
        self.alloc(key, value_len, None)
    }

    /// [`Batch::alloc_set`] with an expiry.
    pub fn alloc_set_with_expiry(
        &mut self,
        key: &[u8],
        value_len: usize,
        expire_at_ms: u64,
    ) -> Result<&mut [u8], Error> {
        self.alloc(key, value_len, Some(expire_at_ms))
    }

    fn alloc(
        &mut self,
        key: &[u8],
        value_len: usize,
        expire_at_ms: Option<u64>,
    ) -> Result<&mut [u8], Error> {
        self.check(key.len(), value_len, expire_at_ms.is_some())?;
        let start = self.data.len();
        let meta = append(&mut self.data, Op::Set, key, &[], expire_at_ms);
        let value_start = self.data.len();
        self.data.resize(value_start + value_len, 0);
        let mut meta = Meta::unpack(meta);
        meta.value_len = value_len;
        debug_assert_eq!(meta.offset, start);
        self.record(meta.pack());
        Ok(&mut self.data[value_start..])
    }

    fn push(
        &mut self,
        op: Op,
        key: &[u8],
        value: &[u8],
        expire_at_ms: Option<u64>,
    ) -> Result<(), Error> {
        self.check(key.len(), value.len(), expire_at_ms.is_some())?;
        let meta = append(&mut self.data, op, key, value, expire_at_ms);
        self.record(meta);
        Ok(())
    }

    fn check(&self, key_len: usize, value_len: usize, has_expiry: bool) -> Result<(), Error> {
        if key_len > KEY_LEN_MAX {
            return Err(Error::KeyTooLong {
                len: key_len,
                max: KEY_LEN_MAX,
            });
        }
        if value_len > VALUE_LEN_MAX {
            return Err(Error::ValueTooLong {
                len: value_len,
                max: VALUE_LEN_MAX,
            });
        }
        if self.len_with_superseded() == self.ops_max {
            return Err(Error::BatchFull {
                ops_max: self.ops_max,
            });
        }
        let needed = key_len + value_len + if has_expiry { 8 } else { 0 };
        if needed > self.bytes_left() {
            return Err(Error::BatchBytesFull {
                needed,
                left: self.bytes_left(),
            });
        }
        Ok(())
    }

    /// Appends the op's meta (its bytes are in `data` already) and points
    /// the table at it.
    fn record(&mut self, meta: [u64; 2]) {
        debug_assert!(self.data.len() <= self.bytes_max);
        let position = self.len_with_superseded();
        self.meta.extend_from_slice(&meta);
        self.index(position);
    }

    /// Points the table at op `position`, the latest op on its key, and
    /// marks the op it replaces superseded (kept whole, so a truncation can
    /// restore it).
    fn index(&mut self, position: usize) {
        let meta = self.op_meta(position);
        debug_assert!(!meta.superseded);
        let mask = self.table.len() - 1;
        let hash = hash_key(meta.key(&self.data));
        let fingerprint = self.fingerprint(hash);
        let entry = fingerprint << self.pos_bits | (position as u32 + 1);
        let mut at = hash as usize & mask;
        loop {
            let slot = self.table[at];
            if slot == 0 {
                self.table[at] = entry;
                return;
            }
            let earlier = self.slot_position(slot);
            if slot >> self.pos_bits == fingerprint && self.key(earlier) == meta.key(&self.data) {
                // Mark the replaced op so apply drops it without comparing keys.
                let mut replaced = self.op_meta(earlier);
                debug_assert!(!replaced.superseded, "the table points at latest ops only");
                replaced.superseded = true;
                self.meta[earlier * META_WORDS] = replaced.pack()[0];
                self.superseded += 1;
                self.table[at] = entry;
                return;
            }
            at = (at + 1) & mask;
        }
    }

    /// Takes back every op after the first `ops`, leaving the batch exactly
    /// as it was when it held only those: their bytes and meta dropped, each
    /// op they replaced the latest for its key again. For a sync-mode round
    /// whose log write failed: its writes were never acknowledged and must
    /// not be served, while the earlier rounds' ops (acknowledged, in the
    /// log) stay staged.
    ///
    /// Rebuilds the table from the kept ops, O(kept ops + table): a linear
    /// probing table cannot drop entries in place, and this runs only on a
    /// disk error or once per batch split.
    pub fn truncate(&mut self, ops: usize) {
        assert!(ops <= self.len(), "truncate to {ops} of {} ops", self.len());
        if ops == self.len() {
            return;
        }
        // Records are appended in op order: the first dropped op's bytes
        // start where the kept ones end.
        let data_len = self.op_meta(ops).offset;
        assert!(data_len <= self.data.len());
        self.data.truncate(data_len);
        self.meta.truncate(ops * META_WORDS);
        self.table.fill(0);
        self.superseded = 0;
        for position in 0..ops {
            let at = position * META_WORDS;
            let mut meta = Meta::unpack([self.meta[at], self.meta[at + 1]]);
            meta.superseded = false;
            self.meta[at] = meta.pack()[0];
            self.index(position);
        }
        debug_assert_eq!(self.len(), ops);
    }

    /// Moves the ops `at..` into a new batch (the latest op of each of their
    /// keys: an op there is replaced only by a later one, so no other matters)
    /// and truncates this one to `at`: the ops of one batch split where its
    /// log stopped, so that the logged part can be applied on its own.
    ///
    /// The new batch's buffers are exempt from the memory quota: they hold
    /// ops already admitted (and counted) in this batch, whose buffers go
    /// back to the pool when it is applied right after.
    pub(crate) fn split_off(&mut self, at: usize) -> Batch {
        assert!(at < self.len(), "split at {at} of {} ops", self.len());
        let (mut ops, mut bytes) = (0, 0);
        for position in at..self.len() {
            let meta = self.op_meta(position);
            if !meta.superseded {
                ops += 1;
                bytes += meta.len();
            }
        }
        let exempt = "exempt from quota";
        let data = self.pool.take_data(bytes, Purpose::Split).expect(exempt);
        let meta = (self.pool)
            .take_meta(ops * META_WORDS, Purpose::Split)
            .expect(exempt);
        let table = (self.pool)
            .take_index((ops * 2).next_power_of_two(), Purpose::Split)
            .expect(exempt);
        let mut suffix = Batch::new(data, meta, table, ops, bytes, self.pool.clone());
        for position in at..self.len() {
            let meta = self.op_meta(position);
            if meta.superseded {
                continue;
            }
            let offset = suffix.data.len();
            suffix
                .data
                .extend_from_slice(&self.data[meta.offset..meta.offset + meta.len()]);
            suffix.record(Meta { offset, ..meta }.pack());
        }
        assert_eq!(suffix.len(), ops);
        assert_eq!(suffix.bytes_left(), 0);
        self.truncate(at);
        suffix
    }

    #[inline]
    fn fingerprint(&self, hash: u64) -> u32 {
        // High hash bits: the low ones chose the slot.
        ((hash >> 32) as u32) >> self.pos_bits
    }

    #[inline]
    fn slot_position(&self, slot: u32) -> usize {
        (slot & ((1 << self.pos_bits) - 1)) as usize - 1
    }

    fn op_meta(&self, position: usize) -> Meta {
        let at = position * META_WORDS;
        Meta::unpack([self.meta[at], self.meta[at + 1]])
    }

    fn key(&self, position: usize) -> &[u8] {
        self.op_meta(position).key(&self.data)
    }

    /// The batch's part of `Store::prefetch_slots`: the table slot a
    /// [`Batch::get`] of the key hashed to `hash` starts at.
    #[inline]
    pub fn prefetch_slot(&self, hash: KeyHash) {
        prefetch_read(&self.table[hash.0 as usize & (self.table.len() - 1)]);
    }

    /// The batch's part of `Store::prefetch_meta`: starts loading the
    /// `meta` of the op a [`Batch::get`] of `hash`'s key will most likely
    /// read, and says where it is.
    #[inline]
    pub fn prefetch_meta(&self, hash: KeyHash) -> Option<RecordHint> {
        let position = self.probe(hash.0, PREFETCH_PROBES_MAX, |_| true)?;
        prefetch_read(&self.meta[position * META_WORDS]);
        Some(RecordHint {
            depth: 0,
            position: position as u32,
        })
    }

    /// Walks `hash`'s probe sequence in the table, at most `slots_max`
    /// slots, and returns the first position carrying its fingerprint that
    /// `is_match` accepts; `None` at an empty slot or the bound.
    #[inline]
    fn probe(
        &self,
        hash: u64,
        slots_max: usize,
        mut is_match: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let mask = self.table.len() - 1;
        let fingerprint = self.fingerprint(hash);
        let mut at = hash as usize & mask;
        for _ in 0..slots_max {
            let slot = self.table[at];
            if slot == 0 {
                return None;
            }
            if slot >> self.pos_bits == fingerprint {
                let position = self.slot_position(slot);
                if is_match(position) {
                    return Some(position);
                }
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// The batch's part of `Store::prefetch_record`: starts loading the
    /// bytes of the op `hint` (from this batch's `prefetch_meta`) names.
    #[inline]
    pub fn prefetch_record(&self, hint: RecordHint) {
        let position = hint.position as usize;
        if position < self.len() {
            if let Some(byte) = self.data.get(self.op_meta(position).key_offset()) {
                prefetch_read(byte);
            }
        }
    }

    /// The latest op for `key` in this batch.
    pub fn get(&self, key: &[u8]) -> Option<BatchOp<'_>> {
        // The table always has an empty slot, so a whole lap ends the probe.
        let position = self.probe(hash_key(key), self.table.len(), |position| {
            self.key(position) == key
        })?;
        let meta = self.op_meta(position);
        debug_assert!(!meta.superseded, "the table points at latest ops only");
        Some(match meta.op {
            Op::Set => BatchOp::Set {
                value: meta.value(&self.data),
                expire_at_ms: meta.expire_at_ms(&self.data),
            },
            Op::Delete => BatchOp::Delete,
        })
    }

    /// Ops `from..` that no later op replaced, laid out as a segment holds
    /// them: `meta` sorted by key with offsets into `data`, the record bytes
    /// copied into `data` in key order. Both are cleared first and only grow
    /// to this batch's size, so a caller reusing them allocates once.
    ///
    /// For a durable store that persists a batch it has not applied yet
    /// (async mode keeps one batch open over many rounds and logs what
    /// arrived since the last flush); an op replaced after it was logged
    /// is shadowed by the replacing op's later log entry.
    pub fn sorted_ops_since(&self, from: usize, meta: &mut Vec<u64>, data: &mut Vec<u8>) {
        assert!(from <= self.len(), "{from} ops of {} logged", self.len());
        meta.clear();
        data.clear();
        for at in (from * META_WORDS..self.meta.len()).step_by(META_WORDS) {
            let words = [self.meta[at], self.meta[at + 1]];
            if !Meta::unpack(words).superseded {
                meta.extend_from_slice(&words);
            }
        }
        sort_and_pack(bytemuck::cast_slice_mut(meta), &self.data, data);
    }

    fn len_with_superseded(&self) -> usize {
        self.meta.len() / META_WORDS
    }

    /// Ops accepted so far (replaced ops included: each used an op slot).
    pub fn len(&self) -> usize {
        self.len_with_superseded()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Ops that still fit.
    pub fn ops_left(&self) -> usize {
        self.ops_max - self.len_with_superseded()
    }

    /// Key, value and expiry bytes that still fit.
    pub fn bytes_left(&self) -> usize {
        self.bytes_max - self.data.len()
    }
}

/// [`sort_and_pack`]'s scratch: each op's key prefix and position, and a
/// copy of the metas to permute from.
type SortScratch = (Vec<(u128, u32)>, Vec<[u64; 2]>);

thread_local! {
    /// Kept per thread (a store never leaves its thread) so a steady stream
    /// of batches allocates nothing; it grows to the largest batch sorted,
    /// at most `batch_ops_max` ops (40 bytes an op).
    static SORT_SCRATCH: std::cell::RefCell<SortScratch> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Sorts `pairs` (packed metas of distinct keys) by key and copies their
/// records from `data` into `out` in that order, pointing each meta at its
/// copy: segments read sequentially in both `meta` and `data`.
pub(crate) fn sort_and_pack(pairs: &mut [[u64; 2]], data: &[u8], out: &mut Vec<u8>) {
    SORT_SCRATCH.with(|scratch| {
        let (keyed, copy) = &mut *scratch.borrow_mut();
        // Each key's prefix, read in arrival order (sequential in `data`),
        // so comparisons are integer ones that touch neither `meta` nor
        // `data` unless two prefixes tie: comparing through the metas took
        // 5.6 % of a server core, most of it cache misses in `data`.
        assert!(pairs.len() <= u32::MAX as usize);
        keyed.clear();
        keyed.extend(pairs.iter().enumerate().map(|(at, pair)| {
            let meta = Meta::unpack(*pair);
            (key_prefix(data, meta.key_offset(), meta.key_len), at as u32)
        }));
        // Keys are unique (replaced ops are gone): an unstable sort is exact.
        keyed.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                let key = |at: u32| Meta::unpack(pairs[at as usize]).key(data);
                compare_keys(key(a.1), key(b.1))
            })
        });
        copy.clear();
        copy.extend_from_slice(pairs);
        for (pair, &(_, at)) in pairs.iter_mut().zip(keyed.iter()) {
            *pair = copy[at as usize];
        }
    });
    for pair in pairs.iter_mut() {
        let meta = Meta::unpack(*pair);
        // The batch-internal flag must never reach a segment or a file.
        assert!(!meta.superseded, "a superseded op laid out as a segment");
        let offset = out.len();
        out.extend_from_slice(&data[meta.offset..meta.offset + meta.len()]);
        *pair = Meta { offset, ..meta }.pack();
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.len())
            .field("ops_left", &self.ops_left())
            .field("bytes_left", &self.bytes_left())
            .finish()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.data));
        self.pool.give(std::mem::take(&mut self.meta));
        self.pool.give(std::mem::take(&mut self.table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreConfig};
    use proptest::prelude::*;
    use std::time::Duration;

    /// Few keys, so overwrites and deletes of earlier ops are common.
    const KEYS: u8 = 6;
    const OPS_MAX: usize = 48;

    #[derive(Debug, Clone)]
    enum TestOp {
        Set {
            key: u8,
            value_len: usize,
            expire_at_ms: Option<u64>,
        },
        AllocSet {
            key: u8,
            value_len: usize,
            expire_at_ms: Option<u64>,
        },
        Delete {
            key: u8,
        },
    }

    fn key(key: u8) -> Vec<u8> {
        // Lengths differ per key, so a wrong offset shows as a wrong key.
        vec![b'a' + key; 1 + key as usize]
    }

    fn value(key: u8, value_len: usize, at: usize) -> Vec<u8> {
        (0..value_len).map(|i| key ^ (at + i) as u8).collect()
    }

    fn test_op() -> impl Strategy<Value = TestOp> {
        let expiry = prop::option::of(1u64..1_000);
        prop_oneof![
            (0..KEYS, 0usize..24, expiry.clone()).prop_map(|(key, value_len, expire_at_ms)| {
                TestOp::Set {
                    key,
                    value_len,
                    expire_at_ms,
                }
            }),
            (0..KEYS, 0usize..24, expiry).prop_map(|(key, value_len, expire_at_ms)| {
                TestOp::AllocSet {
                    key,
                    value_len,
                    expire_at_ms,
                }
            }),
            (0..KEYS).prop_map(|key| TestOp::Delete { key }),
        ]
    }

    fn store() -> Store {
        Store::new(StoreConfig {
            memory_quota_bytes: 16 << 20,
            batch_ops_max: OPS_MAX,
            batch_bytes_max: 64 * 1024,
            stack_height_max: 8,
            merge_step_budget: Duration::from_millis(50),
        })
        .unwrap()
    }

    fn stage(batch: &mut Batch, ops: &[TestOp], first_at: usize) {
        for (i, op) in ops.iter().enumerate() {
            let at = first_at + i;
            match *op {
                TestOp::Set {
                    key: k,
                    value_len,
                    expire_at_ms,
                } => {
                    let v = value(k, value_len, at);
                    match expire_at_ms {
                        None => batch.set(&key(k), &v).unwrap(),
                        Some(ms) => batch.set_with_expiry(&key(k), &v, ms).unwrap(),
                    }
                }
                TestOp::AllocSet {
                    key: k,
                    value_len,
                    expire_at_ms,
                } => {
                    let slot = match expire_at_ms {
                        None => batch.alloc_set(&key(k), value_len).unwrap(),
                        Some(ms) => batch.alloc_set_with_expiry(&key(k), value_len, ms).unwrap(),
                    };
                    slot.copy_from_slice(&value(k, value_len, at));
                }
                TestOp::Delete { key: k } => batch.delete(&key(k)).unwrap(),
            }
        }
    }

    fn built(store: &mut Store, ops: &[TestOp]) -> Batch {
        let mut batch = store.new_batch(OPS_MAX, 16 * 1024).unwrap();
        stage(&mut batch, ops, 0);
        batch
    }

    /// Every observable of `a` equals `b`'s.
    fn assert_same(a: &Batch, b: &Batch) {
        assert_eq!(a.len(), b.len());
        assert_eq!(a.is_empty(), b.is_empty());
        assert_eq!(a.ops_left(), b.ops_left());
        assert_eq!(a.bytes_left(), b.bytes_left());
        assert_eq!(a.superseded, b.superseded);
        for k in 0..KEYS {
            assert_eq!(a.get(&key(k)), b.get(&key(k)), "key {k}");
        }
        let (mut meta_a, mut data_a, mut meta_b, mut data_b) = Default::default();
        a.sorted_ops_since(0, &mut meta_a, &mut data_a);
        b.sorted_ops_since(0, &mut meta_b, &mut data_b);
        assert_eq!((meta_a, data_a), (meta_b, data_b));
    }

    /// The segments `store` holds, byte for byte.
    fn segments(store: &Store) -> Vec<(Vec<u8>, Vec<u64>)> {
        let snapshot = store.snapshot();
        let segments = snapshot.segments();
        segments
            .map(|(data, meta)| (data.to_vec(), meta.to_vec()))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Truncating to every position gives the batch built from the
        /// prefix alone, which keeps working the same for further ops and
        /// applies to the same segment.
        #[test]
        fn truncate_restores_the_prefix(ops in prop::collection::vec(test_op(), 0..OPS_MAX)) {
            for kept in 0..=ops.len() {
                // A batch applies only to the store whose pool it uses.
                let mut store_truncated = self::store();
                let mut store_prefix = self::store();
                let mut truncated = built(&mut store_truncated, &ops);
                truncated.truncate(kept);
                let mut prefix = built(&mut store_prefix, &ops[..kept]);
                assert_same(&truncated, &prefix);
                // The same continuation on both (the rebuilt table and
                // supersede marks must behave as the original ones).
                let rest = &ops[kept..];
                stage(&mut truncated, rest, kept + 1000);
                stage(&mut prefix, rest, kept + 1000);
                assert_same(&truncated, &prefix);
                store_truncated.apply(truncated).unwrap();
                store_prefix.apply(prefix).unwrap();
                prop_assert_eq!(segments(&store_truncated), segments(&store_prefix));
            }
        }

        /// A batch split anywhere holds the prefix; prefix then suffix,
        /// applied, read as the whole batch does.
        #[test]
        fn split_off_keeps_every_latest_op(ops in prop::collection::vec(test_op(), 1..OPS_MAX)) {
            for at in 0..ops.len() {
                let mut split_store = self::store();
                let mut whole_store = self::store();
                let mut whole = built(&mut split_store, &ops);
                let reference = built(&mut whole_store, &ops);
                let suffix = whole.split_off(at);
                assert_same(&whole, &built(&mut self::store(), &ops[..at]));
                for k in 0..KEYS {
                    let expected = reference.get(&key(k));
                    match suffix.get(&key(k)) {
                        Some(op) => prop_assert_eq!(Some(op), expected),
                        None => prop_assert_eq!(whole.get(&key(k)), expected),
                    }
                }
                prop_assert_eq!(suffix.ops_left(), 0);
                prop_assert_eq!(suffix.superseded, 0);
                split_store.apply(whole).unwrap();
                split_store.apply(suffix).unwrap();
                whole_store.apply(reference).unwrap();
                for k in 0..KEYS {
                    prop_assert_eq!(split_store.get_entry(&key(k)), whole_store.get_entry(&key(k)));
                }
            }
        }
    }

    #[test]
    fn every_prefetch_stage_is_safe_on_any_key() {
        let mut store = store();
        let mut batch = store.new_batch(8, 1024).unwrap();
        batch.set(b"", b"").unwrap();
        batch.set(b"a", b"1").unwrap();
        batch.delete(b"b").unwrap();
        batch.set(b"a", b"2").unwrap();
        for (key, latest) in [(&b""[..], 0), (b"a", 3), (b"b", 2)] {
            let hash = KeyHash::of(key);
            batch.prefetch_slot(hash);
            let hint = batch.prefetch_meta(hash).expect("a staged key has a hint");
            assert_eq!(hint.position, latest);
            batch.prefetch_record(hint);
        }
        assert_eq!(batch.prefetch_meta(KeyHash::of(b"absent")), None);
        // A stale hint (from a batch that held more ops) does nothing.
        batch.prefetch_record(RecordHint {
            depth: 0,
            position: 99,
        });
        assert_eq!(
            batch.get(b"a"),
            Some(BatchOp::Set {
                value: b"2",
                expire_at_ms: None
            })
        );
    }

    #[test]
    fn truncate_restores_an_overwritten_set_and_a_deleted_key() {
        let mut store = store();
        let mut batch = store.new_batch(8, 1024).unwrap();
        batch.set(b"a", b"1").unwrap();
        batch.delete(b"b").unwrap();
        batch.set(b"a", b"2").unwrap();
        batch.set(b"b", b"3").unwrap();
        batch.delete(b"a").unwrap();
        assert_eq!(batch.superseded, 3);
        batch.truncate(2);
        assert_eq!(
            batch.get(b"a"),
            Some(BatchOp::Set {
                value: b"1",
                expire_at_ms: None
            })
        );
        assert_eq!(batch.get(b"b"), Some(BatchOp::Delete));
        assert_eq!(batch.superseded, 0);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.bytes_left(), 1024 - 3);
        batch.truncate(0);
        assert!(batch.is_empty());
        assert_eq!(batch.get(b"a"), None);
    }
}
