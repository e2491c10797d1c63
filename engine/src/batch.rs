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
//! and lets a replaced op be marked superseded right away, so `apply` only
//! drops those and sorts the rest: sorting moves meta integers, never bytes.
//! Apply then copies the record bytes once, in key order, into a second
//! pooled buffer, so segments are sequential in both `meta` and `data`
//! (scans and merges stream instead of missing the cache per record; moss
//! leaves batch bytes in arrival order). The batch's `meta` and table become
//! the new segment's meta and index, so a steady stream of batches allocates
//! nothing.

use crate::index::{hash_key, prefetch_read};
use crate::pool::Pool;
use crate::record::{append, compare_keys, Meta, Op, META_WORDS};
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
        self.record(key, meta.pack());
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
        self.record(key, meta);
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

    /// Appends the op's meta and points the table at it.
    fn record(&mut self, key: &[u8], meta: [u64; 2]) {
        debug_assert!(self.data.len() <= self.bytes_max);
        let position = self.len_with_superseded();
        self.meta.extend_from_slice(&meta);
        let mask = self.table.len() - 1;
        let hash = hash_key(key);
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
            if slot >> self.pos_bits == fingerprint && self.key(earlier) == key {
                // Mark the replaced op so apply drops it without comparing keys.
                let mut replaced = self.op_meta(earlier);
                replaced.op = Op::Superseded;
                let words = replaced.pack();
                self.meta[earlier * META_WORDS] = words[0];
                self.superseded += 1;
                self.table[at] = entry;
                return;
            }
            at = (at + 1) & mask;
        }
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

    /// Starts loading the table slot a [`Batch::get`] of `key` reads first
    /// (see `Store::prefetch`).
    #[inline]
    pub fn prefetch(&self, key: &[u8]) {
        prefetch_read(&self.table[hash_key(key) as usize & (self.table.len() - 1)]);
    }

    /// The latest op for `key` in this batch.
    pub fn get(&self, key: &[u8]) -> Option<BatchOp<'_>> {
        let mask = self.table.len() - 1;
        let hash = hash_key(key);
        let fingerprint = self.fingerprint(hash);
        let mut at = hash as usize & mask;
        loop {
            let slot = self.table[at];
            if slot == 0 {
                return None;
            }
            if slot >> self.pos_bits != fingerprint {
                at = (at + 1) & mask;
                continue;
            }
            let meta = self.op_meta(self.slot_position(slot));
            if meta.key(&self.data) == key {
                return Some(match meta.op {
                    Op::Set => BatchOp::Set {
                        value: meta.value(&self.data),
                        expire_at_ms: meta.expire_at_ms(&self.data),
                    },
                    Op::Delete => BatchOp::Delete,
                    Op::Superseded => unreachable!("the table points at latest ops only"),
                });
            }
            at = (at + 1) & mask;
        }
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
            if Meta::unpack(words).op != Op::Superseded {
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

/// Sorts `pairs` (packed metas of distinct keys) by key and copies their
/// records from `data` into `out` in that order, pointing each meta at its
/// copy: segments read sequentially in both `meta` and `data`.
pub(crate) fn sort_and_pack(pairs: &mut [[u64; 2]], data: &[u8], out: &mut Vec<u8>) {
    // Keys are unique (replaced ops are gone): an unstable sort is exact,
    // and it needs no scratch buffer.
    pairs.sort_unstable_by(|a, b| {
        compare_keys(Meta::unpack(*a).key(data), Meta::unpack(*b).key(data))
    });
    for pair in pairs.iter_mut() {
        let meta = Meta::unpack(*pair);
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
