//! CRC16/XMODEM key hashing, `{hash tag}` extraction and contiguous slot ranges.

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// CRC16/XMODEM tables (polynomial 0x1021, init 0, no reflection, no final
/// xor), built at compile time so no start-up work is needed:
/// `CRC16_TABLES[k][x]` is what byte `x` followed by `k` zero bytes adds to
/// the CRC. Eight bytes then cost eight independent lookups instead of a
/// chain of eight dependent ones: every request hashes its key, and the
/// byte-at-a-time loop was 4 % of a server core at pipeline 16.
const CRC16_TABLES: [[u16; 256]; 8] = build_crc16_tables();

const fn build_crc16_tables() -> [[u16; 256]; 8] {
    let mut tables = [[0u16; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    // One more zero byte after the contribution: a byte step with input 0.
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let previous = tables[k - 1][i];
            tables[k][i] = (previous << 8) ^ tables[0][(previous >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
}

/// CRC16/XMODEM of `bytes`, the checksum Redis Cluster hashes keys with.
pub fn crc16(bytes: &[u8]) -> u16 {
    let t = &CRC16_TABLES;
    let mut crc: u16 = 0;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        // The CRC so far is two bytes that fold into the first two.
        let high = (crc >> 8) as u8 ^ c[0];
        let low = crc as u8 ^ c[1];
        crc = t[7][high as usize]
            ^ t[6][low as usize]
            ^ t[5][c[2] as usize]
            ^ t[4][c[3] as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc << 8) ^ t[0][(((crc >> 8) as u8) ^ b) as usize];
    }
    crc
}

/// The part of `key` that is hashed: the bytes between the first `{` and the
/// first `}` after it, when at least one byte lies between them; otherwise the
/// whole key (Redis's rule, so that every cluster client agrees with us).
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => &rest[..close],
        _ => key,
    }
}

/// The hash slot of `key`: CRC16 of its hash tag (or the whole key) mod 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let slot = crc16(hash_tag(key)) & (SLOT_COUNT - 1);
    debug_assert!(slot < SLOT_COUNT);
    slot
}

/// The inclusive slot range `(first, last)` owned by `core` when the slots are
/// split into `cores` contiguous ranges of near-equal size (the first
/// `SLOT_COUNT % cores` cores own one slot more).
pub fn slot_range_of_core(core: u16, cores: u16) -> (u16, u16) {
    assert!(cores > 0 && cores <= SLOT_COUNT, "cores must be 1..=16384");
    assert!(core < cores, "core {core} out of range for {cores} cores");
    let base = SLOT_COUNT / cores;
    let extra = SLOT_COUNT % cores;
    let first = core * base + core.min(extra);
    let len = base + u16::from(core < extra);
    (first, first + len - 1)
}

/// The core that owns `slot` under [`slot_range_of_core`]'s split.
pub fn core_for_slot(slot: u16, cores: u16) -> u16 {
    assert!(slot < SLOT_COUNT, "slot {slot} out of range");
    assert!(cores > 0 && cores <= SLOT_COUNT, "cores must be 1..=16384");
    let base = SLOT_COUNT / cores;
    let extra = SLOT_COUNT % cores;
    // The first `extra` cores own `base + 1` slots each.
    let big = extra * (base + 1);
    let core = if slot < big {
        slot / (base + 1)
    } else {
        extra + (slot - big) / base
    };
    debug_assert!({
        let (first, last) = slot_range_of_core(core, cores);
        first <= slot && slot <= last
    });
    core
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_reference_vector() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    /// The bitwise definition, one bit at a time.
    fn crc16_bitwise(bytes: &[u8]) -> u16 {
        let mut crc: u16 = 0;
        for &b in bytes {
            crc ^= (b as u16) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn crc16_matches_the_bitwise_definition_at_every_length() {
        let mut bytes = Vec::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..=70 {
            assert_eq!(crc16(&bytes), crc16_bitwise(&bytes), "length {len}");
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            bytes.push((state >> 56) as u8);
        }
        assert_eq!(crc16(&[0xff; 8]), crc16_bitwise(&[0xff; 8]));
    }

    #[test]
    fn key_slot_matches_redis() {
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"foo{hash_tag}"), 2515);
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & 0x3FFF);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn slot_ranges_cover_every_slot_once() {
        for cores in [1u16, 2, 3, 7, 64, 1000] {
            let mut next = 0u16;
            for core in 0..cores {
                let (first, last) = slot_range_of_core(core, cores);
                assert_eq!(first, next);
                assert!(last >= first);
                for slot in [first, last, first + (last - first) / 2] {
                    assert_eq!(core_for_slot(slot, cores), core);
                }
                next = last + 1;
            }
            assert_eq!(u32::from(next), u32::from(SLOT_COUNT));
        }
    }
}
