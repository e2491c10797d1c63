//! The record layout shared by batches, segments and (later) segment files.
//!
//! A record is two `u64` meta words plus its bytes in the segment's `data`:
//!
//! ```text
//! meta[2i]     = flags << 48 | op << 46 | key_len << 29 | value_len
//!                (29 bits of value length, 17 of key length, 2 of op, flags)
//! meta[2i + 1] = offset of the record's bytes in `data`
//! data[offset..] = [expire_at_ms: u64 LE, only if FLAG_EXPIRY] key value
//! ```
//!
//! One flag, `FLAG_SUPERSEDED`, exists only inside an unapplied batch: it
//! marks an op a later op on the same key replaced, keeping the op itself
//! (set or delete) so that taking the later op back (`Batch::truncate`)
//! restores it exactly. It never reaches a segment or a file: the code that
//! lays ops out as a segment asserts that, and [`Meta::unpack_checked`]
//! refuses it as an unknown flag.
//!
//! Records without expiry pay nothing for it. Every field has a defined
//! little-endian byte form so `data` and `meta` can be written to a file and
//! mapped back byte for byte; the crate refuses to build on big-endian targets
//! rather than silently write a different format.

use crate::{KEY_LEN_MAX, VALUE_LEN_MAX};

#[cfg(not(target_endian = "little"))]
compile_error!("tessera-engine's segment format is defined little-endian");

/// Meta words per record.
pub(crate) const META_WORDS: usize = 2;
/// Bytes the optional expiry takes in `data`.
pub(crate) const EXPIRY_LEN: usize = 8;

const VALUE_LEN_BITS: u32 = 29;
const KEY_LEN_BITS: u32 = 17;
const OP_BITS: u32 = 2;
const KEY_LEN_SHIFT: u32 = VALUE_LEN_BITS;
const OP_SHIFT: u32 = KEY_LEN_SHIFT + KEY_LEN_BITS;
const FLAGS_SHIFT: u32 = OP_SHIFT + OP_BITS;
const FLAG_EXPIRY: u64 = 1;
/// Batch-internal (see the module docs); not part of the format.
const FLAG_SUPERSEDED: u64 = 2;
/// Flags a segment or file may hold.
const FLAGS_KNOWN: u64 = FLAG_EXPIRY;

const _: () = assert!(VALUE_LEN_MAX < 1 << VALUE_LEN_BITS);
const _: () = assert!(KEY_LEN_MAX < 1 << KEY_LEN_BITS);

/// What a record does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Set = 1,
    Delete = 2,
}

/// One record's meta, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub op: Op,
    pub key_len: usize,
    pub value_len: usize,
    pub has_expiry: bool,
    /// A later op in the same batch replaced this one (batch-internal).
    pub superseded: bool,
    pub offset: usize,
}

impl Meta {
    pub fn pack(self) -> [u64; 2] {
        debug_assert!(self.key_len <= KEY_LEN_MAX);
        debug_assert!(self.value_len <= VALUE_LEN_MAX);
        let expiry = if self.has_expiry { FLAG_EXPIRY } else { 0 };
        let superseded = if self.superseded { FLAG_SUPERSEDED } else { 0 };
        let flags = expiry | superseded;
        let word = flags << FLAGS_SHIFT
            | (self.op as u64) << OP_SHIFT
            | (self.key_len as u64) << KEY_LEN_SHIFT
            | self.value_len as u64;
        [word, self.offset as u64]
    }

    /// Unpacks trusted meta (built by this crate). External meta goes through
    /// [`Meta::unpack_checked`] first.
    #[inline]
    pub fn unpack(words: [u64; 2]) -> Meta {
        let word = words[0];
        let op = match (word >> OP_SHIFT) & ((1 << OP_BITS) - 1) {
            1 => Op::Set,
            2 => Op::Delete,
            _ => unreachable!("meta ops 0 and 3 are never written"),
        };
        Meta {
            op,
            key_len: ((word >> KEY_LEN_SHIFT) & ((1 << KEY_LEN_BITS) - 1)) as usize,
            value_len: (word & ((1 << VALUE_LEN_BITS) - 1)) as usize,
            has_expiry: (word >> FLAGS_SHIFT) & FLAG_EXPIRY != 0,
            superseded: (word >> FLAGS_SHIFT) & FLAG_SUPERSEDED != 0,
            offset: words[1] as usize,
        }
    }

    /// Unpacks meta from outside the process, refusing what this crate never writes.
    pub fn unpack_checked(words: [u64; 2], data_len: usize) -> Result<Meta, &'static str> {
        let word = words[0];
        if word >> FLAGS_SHIFT & !FLAGS_KNOWN != 0 {
            return Err("unknown flag bits");
        }
        let op = (word >> OP_SHIFT) & ((1 << OP_BITS) - 1);
        if op != Op::Set as u64 && op != Op::Delete as u64 {
            return Err("op is neither set nor delete");
        }
        let meta = Meta::unpack(words);
        if meta.key_len > KEY_LEN_MAX {
            return Err("key longer than KEY_LEN_MAX");
        }
        if meta.value_len > VALUE_LEN_MAX {
            return Err("value longer than VALUE_LEN_MAX");
        }
        if meta.op == Op::Delete && (meta.value_len != 0 || meta.has_expiry) {
            return Err("delete with a value or an expiry");
        }
        let end = meta
            .offset
            .checked_add(meta.len())
            .ok_or("record offset overflows")?;
        if end > data_len {
            return Err("record bytes past the end of data");
        }
        Ok(meta)
    }

    /// Bytes the record takes in `data`.
    #[inline]
    pub fn len(&self) -> usize {
        self.header_len() + self.key_len + self.value_len
    }

    #[inline]
    fn header_len(&self) -> usize {
        if self.has_expiry {
            EXPIRY_LEN
        } else {
            0
        }
    }

    /// Where the key starts in `data`.
    #[inline]
    pub fn key_offset(&self) -> usize {
        self.offset + self.header_len()
    }

    #[inline]
    pub fn key<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        let start = self.key_offset();
        &data[start..start + self.key_len]
    }

    #[inline]
    pub fn value<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        let start = self.offset + self.header_len() + self.key_len;
        &data[start..start + self.value_len]
    }

    #[inline]
    pub fn expire_at_ms(&self, data: &[u8]) -> Option<u64> {
        if !self.has_expiry {
            return None;
        }
        let bytes: [u8; EXPIRY_LEN] = data[self.offset..self.offset + EXPIRY_LEN]
            .try_into()
            .expect("slice has EXPIRY_LEN bytes");
        Some(u64::from_le_bytes(bytes))
    }
}

/// Key bytes held as one integer where keys are compared often (the merge
/// heap, sorting a batch): 16 covers typical keys whole (`user:1234567890`,
/// `key:000000012345`), which then never compare bytes.
pub(crate) const PREFIX_BYTES: usize = 16;

/// The first [`PREFIX_BYTES`] of the `len`-byte key at `data[at..]` as a
/// big-endian integer, zero-padded: integer order is byte order wherever two
/// prefixes differ (a zero pad byte only ties with a zero key byte, and a
/// tie is settled by comparing the keys).
#[inline]
pub(crate) fn key_prefix(data: &[u8], at: usize, len: usize) -> u128 {
    if let Some(bytes) = data.get(at..at + PREFIX_BYTES) {
        // One load of 16 bytes (the key and whatever follows it), with the
        // bytes past the key masked off.
        let word = u128::from_be_bytes(bytes.try_into().expect("PREFIX_BYTES bytes"));
        if len >= PREFIX_BYTES {
            return word;
        }
        return word & !(u128::MAX >> (8 * len));
    }
    let len = len.min(PREFIX_BYTES);
    let mut bytes = [0u8; PREFIX_BYTES];
    bytes[..len].copy_from_slice(&data[at..at + len]);
    u128::from_be_bytes(bytes)
}

/// Byte-wise lexicographic order of keys (the same as `a.cmp(b)` on
/// slices), comparing eight bytes at a time as big-endian words: sorting,
/// merging and range steps compare short keys far more often than long ones,
/// and this keeps them out of a `memcmp` call.
#[inline]
pub(crate) fn compare_keys(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let mut a_words = a.chunks_exact(8);
    let mut b_words = b.chunks_exact(8);
    for (a_word, b_word) in (&mut a_words).zip(&mut b_words) {
        let a_word = u64::from_be_bytes(a_word.try_into().expect("8 bytes"));
        let b_word = u64::from_be_bytes(b_word.try_into().expect("8 bytes"));
        if a_word != b_word {
            return a_word.cmp(&b_word);
        }
    }
    let done = a.len().min(b.len()) / 8 * 8;
    a[done..].cmp(&b[done..])
}

/// A record is visible while the clock is before its expiry (`now < expire_at`),
/// so a key set to expire at `t` is gone at `t`.
#[inline]
pub(crate) fn is_expired(expire_at_ms: Option<u64>, now_ms: u64) -> bool {
    matches!(expire_at_ms, Some(at) if at <= now_ms)
}

/// Appends one record's bytes to `data` and returns its packed meta. The caller
/// has checked the limits and made room.
pub(crate) fn append(
    data: &mut Vec<u8>,
    op: Op,
    key: &[u8],
    value: &[u8],
    expire_at_ms: Option<u64>,
) -> [u64; 2] {
    let offset = data.len();
    if let Some(at) = expire_at_ms {
        data.extend_from_slice(&at.to_le_bytes());
    }
    data.extend_from_slice(key);
    data.extend_from_slice(value);
    Meta {
        op,
        key_len: key.len(),
        value_len: value.len(),
        has_expiry: expire_at_ms.is_some(),
        superseded: false,
        offset,
    }
    .pack()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_at_the_limits() {
        for (op, key_len, value_len, has_expiry, superseded) in [
            (Op::Set, 0, 0, false, false),
            (Op::Set, KEY_LEN_MAX, VALUE_LEN_MAX, true, true),
            (Op::Delete, 1, 0, false, true),
            (Op::Set, 17, 5, true, false),
        ] {
            let meta = Meta {
                op,
                key_len,
                value_len,
                has_expiry,
                superseded,
                offset: usize::MAX >> 1,
            };
            assert_eq!(Meta::unpack(meta.pack()), meta);
        }
    }

    #[test]
    fn record_bytes_round_trip() {
        let mut data = Vec::new();
        let first = Meta::unpack(append(&mut data, Op::Set, b"k", b"vv", Some(7)));
        let second = Meta::unpack(append(&mut data, Op::Set, b"key", b"", None));
        assert_eq!(first.key(&data), b"k");
        assert_eq!(first.value(&data), b"vv");
        assert_eq!(first.expire_at_ms(&data), Some(7));
        assert_eq!(second.key(&data), b"key");
        assert_eq!(second.value(&data), b"");
        assert_eq!(second.expire_at_ms(&data), None);
        assert_eq!(data.len(), 8 + 1 + 2 + 3);
    }

    #[test]
    fn checked_unpack_refuses_what_is_never_written() {
        let good = Meta {
            op: Op::Set,
            key_len: 1,
            value_len: 1,
            has_expiry: false,
            superseded: false,
            offset: 0,
        };
        assert!(Meta::unpack_checked(good.pack(), 2).is_ok());
        assert!(Meta::unpack_checked(good.pack(), 1).is_err());
        let superseded = Meta {
            superseded: true,
            ..good
        };
        assert!(Meta::unpack_checked(superseded.pack(), 2).is_err());
        let mut op_three = good.pack();
        op_three[0] |= 3 << OP_SHIFT;
        assert!(Meta::unpack_checked(op_three, 2).is_err());
        let mut words = good.pack();
        words[0] |= 1 << 63;
        assert!(Meta::unpack_checked(words, 2).is_err());
        assert!(Meta::unpack_checked([0, 0], 2).is_err());
        let delete_with_value = Meta {
            op: Op::Delete,
            ..good
        };
        assert!(Meta::unpack_checked(delete_with_value.pack(), 2).is_err());
    }

    #[test]
    fn key_order_is_slice_order() {
        let keys: [&[u8]; 10] = [
            b"",
            b"a",
            b"ab",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefgi",
            b"abcdefghijklmnop",
            b"abcdefghijklmnoq",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xff",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(compare_keys(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn expiry_is_exclusive() {
        assert!(!is_expired(None, u64::MAX));
        assert!(!is_expired(Some(10), 9));
        assert!(is_expired(Some(10), 10));
    }
}
