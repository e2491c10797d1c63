//! What each request asks: command (by `--ratio`), key (by `--key-pattern`
//! within the connection's key pool) and value size (by `--data-size`).
//!
//! Keys are `key:` followed by a 12-digit, zero-padded index, exactly the
//! keys `redis-benchmark -r` writes, so the two tools touch the same data.
//! In cluster mode each connection targets one port, and only keys that
//! port owns may go to it; so at start we sort the keyspace into one pool of
//! indexes per port (one CRC16 per key, once) and each connection draws from
//! its port's pool. This keeps the full keyspace and its distribution rather
//! than redis-benchmark's `{tag}` trick, which puts every key of a node in a
//! single slot.

use std::sync::Arc;

use super::config::KeyPattern;

/// `key:` + 12 digits.
pub const KEY_LEN: usize = 16;
pub const KEY_PREFIX: &[u8] = b"key:";
pub const KEY_DIGITS: usize = KEY_LEN - KEY_PREFIX.len();
/// "00" to "99": two digits per division, as the request encoder runs
/// this for every request.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        pairs[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    pairs
};
/// YCSB's default skew.
const ZIPF_THETA: f64 = 0.99;

/// Write key `index` into `out` (exactly [`KEY_LEN`] bytes).
pub fn write_key(out: &mut [u8; KEY_LEN], index: u64) {
    out[..KEY_PREFIX.len()].copy_from_slice(KEY_PREFIX);
    out[KEY_PREFIX.len()..].copy_from_slice(&key_digits(index));
}

/// Key `index`'s digits, zero-padded (the key without its prefix).
pub fn key_digits(mut index: u64) -> [u8; KEY_DIGITS] {
    assert!(index < 10u64.pow(KEY_DIGITS as u32));
    const _: () = assert!(KEY_DIGITS % 2 == 0);
    let mut digits = [0u8; KEY_DIGITS];
    for pair in digits.chunks_exact_mut(2).rev() {
        pair.copy_from_slice(&DIGIT_PAIRS[(index % 100) as usize]);
        index /= 100;
    }
    digits
}

/// SplitMix64: tiny, fast, and good enough to pick keys; seeded per
/// connection so runs are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; the bias is below
    /// 2^-32 for our bounds).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Precomputed constants of Gray et al.'s Zipfian generator (as in YCSB)
/// for `n` items; computing zeta(n) is O(n), so it is done once and shared.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: u64,
    zeta_n: f64,
    alpha: f64,
    eta: f64,
}

impl Zipf {
    pub fn new(n: u64) -> Zipf {
        assert!(n >= 1);
        let zeta = |count: u64| {
            (1..=count)
                .map(|i| 1.0 / (i as f64).powf(ZIPF_THETA))
                .sum::<f64>()
        };
        let zeta_n = zeta(n);
        let zeta_2 = zeta(2);
        let alpha = 1.0 / (1.0 - ZIPF_THETA);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - ZIPF_THETA)) / (1.0 - zeta_2 / zeta_n);
        Zipf {
            n,
            zeta_n,
            alpha,
            eta,
        }
    }

    /// A rank in `0..n`, 0 the most frequent.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zeta_n;
        if uz < 1.0 || self.n == 1 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(ZIPF_THETA) {
            return 1;
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }
}

/// Where one connection draws its keys from.
#[derive(Debug, Clone)]
pub enum KeyPool {
    /// Every index in `0..keyspace` (single mode).
    All { keyspace: u64 },
    /// Only these indexes (the ones a cluster port owns).
    Owned(Arc<[u32]>),
}

impl KeyPool {
    pub fn len(&self) -> u64 {
        match self {
            KeyPool::All { keyspace } => *keyspace,
            KeyPool::Owned(indexes) => indexes.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn index(&self, position: u64) -> u64 {
        match self {
            KeyPool::All { .. } => position,
            KeyPool::Owned(indexes) => u64::from(indexes[position as usize]),
        }
    }
}

/// Picks keys for one connection.
#[derive(Debug, Clone)]
pub struct KeyChooser {
    pool: KeyPool,
    pattern: KeyPattern,
    zipf: Option<Arc<Zipf>>,
    next_sequential: u64,
}

impl KeyChooser {
    /// `zipf` must be built for `pool.len()` items when `pattern` is Zipf.
    /// `start` spreads sequential walks of different connections apart.
    pub fn new(
        pool: KeyPool,
        pattern: KeyPattern,
        zipf: Option<Arc<Zipf>>,
        start: u64,
    ) -> KeyChooser {
        assert!(!pool.is_empty(), "a connection needs at least one key");
        if pattern == KeyPattern::Zipf {
            assert_eq!(
                zipf.as_ref().map(|z| z.n),
                Some(pool.len()),
                "zipf built for the pool size"
            );
        }
        let next_sequential = start % pool.len();
        KeyChooser {
            pool,
            pattern,
            zipf,
            next_sequential,
        }
    }

    pub fn next_index(&mut self, rng: &mut Rng) -> u64 {
        let position = match self.pattern {
            KeyPattern::Uniform => rng.below(self.pool.len()),
            KeyPattern::Zipf => self.zipf.as_ref().expect("checked in new").sample(rng),
            KeyPattern::Sequential => {
                let position = self.next_sequential;
                self.next_sequential = (position + 1) % self.pool.len();
                position
            }
        };
        self.pool.index(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_redis_benchmark() {
        let mut key = [0u8; KEY_LEN];
        write_key(&mut key, 12345);
        assert_eq!(&key, b"key:000000012345");
        write_key(&mut key, 999_999_999_999);
        assert_eq!(&key, b"key:999999999999");
        write_key(&mut key, 100_000_000_007);
        assert_eq!(&key, b"key:100000000007");
    }

    #[test]
    fn uniform_and_sequential_stay_in_the_pool() {
        let pool = KeyPool::Owned(Arc::from(vec![3u32, 7, 11]));
        let mut rng = Rng::new(1);
        let mut uniform = KeyChooser::new(pool.clone(), KeyPattern::Uniform, None, 0);
        for _ in 0..1000 {
            assert!([3, 7, 11].contains(&uniform.next_index(&mut rng)));
        }
        let mut sequential = KeyChooser::new(pool, KeyPattern::Sequential, None, 1);
        let walked: Vec<u64> = (0..4).map(|_| sequential.next_index(&mut rng)).collect();
        assert_eq!(walked, [7, 11, 3, 7]);
    }

    #[test]
    fn zipf_is_skewed_and_bounded() {
        let n = 1000;
        let zipf = Arc::new(Zipf::new(n));
        let mut chooser = KeyChooser::new(
            KeyPool::All { keyspace: n },
            KeyPattern::Zipf,
            Some(zipf),
            0,
        );
        let mut rng = Rng::new(7);
        let mut counts = vec![0u32; n as usize];
        let draws = 100_000;
        for _ in 0..draws {
            counts[chooser.next_index(&mut rng) as usize] += 1;
        }
        // Under theta 0.99 the top key takes ~13% of draws for n = 1000,
        // the top 10 well over a third, and the tail still gets some.
        assert!(counts[0] > draws / 20, "top key {}", counts[0]);
        assert!(counts[..10].iter().sum::<u32>() > draws / 3);
        assert!(counts[500..].iter().sum::<u32>() > 0);
    }
}
