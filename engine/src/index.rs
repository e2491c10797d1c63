//! A segment's immutable hash index: key hash to record position.
//!
//! Binary search down a stack of sorted segments costs ~log2(n) cache misses
//! per segment; at 10M keys that is far from a hash table. Each segment
//! therefore carries an open-addressing table of `u32` slots built once when
//! the segment is made (at apply or at the end of a merge) and never changed,
//! so snapshots share it for free. Ordered iteration still uses the sorted
//! `meta`; the index only answers "where is this key".
//!
//! A slot holds `fingerprint << pos_bits | (position + 1)`, 0 meaning empty.
//! `pos_bits` is just wide enough for the segment's record count and the
//! remaining high bits carry a fingerprint of the key's hash, so probes past
//! other keys almost never touch `meta` or `data` (at 10M records: 24 bits of
//! position, 8 of fingerprint). Slots are chosen with a multiply-shift range
//! reduction, so the table can have any size: merged segments get
//! `n * 5 / 4` slots (load 0.8, 5 bytes per record, which with 16 bytes of
//! meta keeps the per-record overhead under 24 bytes at any n), while
//! segments made from a batch reuse the batch's own table (load <= 0.5).
//! Linear probing keeps a probe sequence within one or two cache lines.

use xxhash_rust::xxh3::xxh3_64;

/// Most records one segment may hold: positions need at least one bit of
/// fingerprint beside them in a `u32` slot.
pub(crate) const SEGMENT_RECORDS_MAX: usize = (1 << 31) - 1;

/// The hash every index and lookup uses.
#[inline]
pub(crate) fn hash_key(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// A key's hash as the store's tables use it, computed once by a reader
/// that prefetches a key in several stages (see [`crate::Store::prefetch_slots`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub(crate) u64);

impl KeyHash {
    #[inline]
    pub fn of(key: &[u8]) -> KeyHash {
        KeyHash(hash_key(key))
    }
}

/// Slots for a merged segment of `records` records.
pub(crate) fn slots_for(records: usize) -> usize {
    records + records / 4 + 1
}

pub(crate) struct HashIndex {
    slots: Vec<u32>,
    pos_bits: u32,
}

impl HashIndex {
    /// An index over `records` records in a zeroed table. The caller inserts
    /// every position before the first lookup.
    pub fn new(slots: Vec<u32>, records: usize) -> HashIndex {
        assert!(records <= SEGMENT_RECORDS_MAX);
        assert!(
            slots.len() > records,
            "an open-addressing table needs an empty slot"
        );
        debug_assert!(slots.iter().all(|&slot| slot == 0));
        let pos_bits = usize::BITS - records.leading_zeros();
        debug_assert!(pos_bits < 32);
        HashIndex {
            slots,
            pos_bits: pos_bits.max(1),
        }
    }

    pub fn into_slots(self) -> Vec<u32> {
        self.slots
    }

    /// Takes the table out, leaving an index that must not be used again.
    pub fn take_slots(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.slots)
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        (((hash as u32) as u64 * self.slots.len() as u64) >> 32) as usize
    }

    #[inline]
    fn fingerprint(&self, hash: u64) -> u32 {
        // The high hash bits, independent of the low ones that pick the slot.
        ((hash >> 32) as u32) >> self.pos_bits
    }

    pub fn slots(&self) -> &Vec<u32> {
        &self.slots
    }

    /// Records `position` under `hash`. Positions are unique per segment.
    pub fn insert(&mut self, hash: u64, position: usize) {
        debug_assert!(position < (1 << self.pos_bits) - 1);
        let entry = self.fingerprint(hash) << self.pos_bits | (position as u32 + 1);
        let mut at = self.home(hash);
        loop {
            if self.slots[at] == 0 {
                self.slots[at] = entry;
                return;
            }
            at += 1;
            if at == self.slots.len() {
                at = 0;
            }
        }
    }

    /// The position of the record whose key satisfies `is_key`, probing
    /// candidates with `hash`'s fingerprint.
    #[inline]
    pub fn find(&self, hash: u64, is_key: impl FnMut(usize) -> bool) -> Option<usize> {
        // The table always has an empty slot, so a whole lap ends the probe.
        self.probe(hash, self.slots.len(), is_key)
    }

    /// Walks `hash`'s probe sequence, at most `slots_max` slots, and
    /// returns the first position carrying its fingerprint that `is_match`
    /// accepts; `None` at an empty slot or the bound.
    #[inline]
    fn probe(
        &self,
        hash: u64,
        slots_max: usize,
        mut is_match: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        let fingerprint = self.fingerprint(hash);
        let pos_mask = (1u32 << self.pos_bits) - 1;
        let mut at = self.home(hash);
        for _ in 0..slots_max {
            let slot = self.slots[at];
            if slot == 0 {
                return None;
            }
            if slot >> self.pos_bits == fingerprint {
                let position = (slot & pos_mask) as usize - 1;
                if is_match(position) {
                    return Some(position);
                }
            }
            at += 1;
            if at == self.slots.len() {
                at = 0;
            }
        }
        None
    }

    /// Hints the CPU to start loading `hash`'s home slot, so a batch of
    /// lookups overlaps its cache misses instead of paying them one by one.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        prefetch_read(&self.slots[self.home(hash)]);
    }

    /// The first position whose slot carries `hash`'s fingerprint, without
    /// looking at any key: the record a lookup of `hash` will most likely
    /// read, for prefetching it. `None` when the probe meets an empty slot,
    /// or after [`PREFETCH_PROBES_MAX`] slots (a hint stays cheap even in a
    /// pathological cluster).
    #[inline]
    pub fn first_candidate(&self, hash: u64) -> Option<usize> {
        self.probe(hash, PREFETCH_PROBES_MAX, |_| true)
    }
}

/// Slots a prefetch hint probes at most before giving up on the hint.
pub(crate) const PREFETCH_PROBES_MAX: usize = 16;

/// Where the record a lookup of a prefetched key will read probably lies,
/// as found by a `prefetch_meta` of a [`crate::Store`] or [`crate::Batch`]:
/// the next stage, `prefetch_record`, loads its bytes without probing the
/// tables again. Only a hint: handed to the store or batch that made it
/// after that changed (a batch applied, a merge swapped in), it points at
/// some other record or nowhere, which costs one useless cache line and
/// never changes a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHint {
    /// Segments above the record's, from the newest; 0 in a batch.
    pub(crate) depth: u32,
    pub(crate) position: u32,
}

/// Hints the CPU to start loading the cache line holding `value`.
#[inline]
pub(crate) fn prefetch_read<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint that never faults, and the address is a
    // live reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch(
            value as *const T as *const i8,
            std::arch::x86_64::_MM_HINT_T0,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1000 distinct keys and an index over them, key `i` at position `i`.
    fn thousand_keys_indexed() -> (Vec<Vec<u8>>, HashIndex) {
        let keys: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut index = HashIndex::new(vec![0; slots_for(keys.len())], keys.len());
        for (position, key) in keys.iter().enumerate() {
            index.insert(hash_key(key), position);
        }
        (keys, index)
    }

    #[test]
    fn finds_every_inserted_key_and_no_other() {
        let (keys, index) = thousand_keys_indexed();
        for (position, key) in keys.iter().enumerate() {
            assert_eq!(
                index.find(hash_key(key), |p| keys[p] == *key),
                Some(position)
            );
        }
        let absent = 5000u32.to_le_bytes();
        assert_eq!(index.find(hash_key(&absent), |p| keys[p] == absent), None);
    }

    #[test]
    fn the_first_candidate_of_a_present_key_is_usually_its_position() {
        let (keys, index) = thousand_keys_indexed();
        let mut hits = 0;
        for (position, key) in keys.iter().enumerate() {
            let candidate = index.first_candidate(hash_key(key));
            assert!(candidate.is_none_or(|candidate| candidate < keys.len()));
            hits += usize::from(candidate == Some(position));
        }
        // 1000 records give 10 position bits and 21 of fingerprint: another
        // key's slot matches a probe's fingerprint about never; only a probe
        // longer than the hint's bound (a rare cluster at load 0.8) misses.
        assert!(hits >= 980, "{hits} of 1000");
    }

    #[test]
    fn a_full_table_but_one_slot_still_terminates() {
        let mut index = HashIndex::new(vec![0; 4], 3);
        for position in 0..3 {
            index.insert(
                (position as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                position,
            );
        }
        assert_eq!(index.find(12345, |_| false), None);
    }
}
