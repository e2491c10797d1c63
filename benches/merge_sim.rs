//! The merger's CPU per written record under a steady overwrite load, the
//! shape the server sees: 100k keys (16-byte keys, 32-byte values), then
//! 900k random overwrites applied in batches of `PER` ops (default 450), and
//! up to `STEPS` (default 100) `merge_step(200 us)` calls after each batch.
//! Prints the thread CPU time of every `merge_step` divided by the written
//! records, and the stack height seen between steps.
//!
//! ```sh
//! PER=450 STEPS=100 cargo bench --bench merge_sim
//! ```

use std::time::Duration;
use tessera::engine::{Store, StoreConfig};

const KEYS: u64 = 100_000;
const WRITES: usize = 900_000;
const VALUE: [u8; 32] = [7; 32];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}"))
    })
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn key(index: u64) -> [u8; 16] {
    let mut key = *b"key:000000000000";
    let digits = format!("{index:012}");
    key[4..].copy_from_slice(digits.as_bytes());
    key
}

fn main() {
    let per = env("PER", 450);
    let steps = env("STEPS", 100);
    assert!(per > 0 && steps > 0);
    let mut store = Store::new(StoreConfig {
        memory_quota_bytes: 1 << 30,
        ..StoreConfig::default()
    })
    .expect("store");
    for chunk in 0..KEYS / 10_000 {
        let mut batch = store.new_batch(10_000, 10_000 * 48).expect("batch");
        for i in 0..10_000 {
            batch.set(&key(chunk * 10_000 + i), &VALUE).expect("set");
        }
        store.apply(batch).expect("apply");
    }
    store.compact();
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut merge_cpu = Duration::ZERO;
    let (mut height_sum, mut height_samples, mut height_max) = (0, 0, 0);
    for _ in 0..WRITES / per {
        let mut batch = store.new_batch(per, per * 48).expect("batch");
        for _ in 0..per {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            batch.set(&key(rng % KEYS), &VALUE).expect("set");
        }
        store.apply(batch).expect("apply");
        for _ in 0..steps {
            if !store.merge_needed() {
                break;
            }
            let before = thread_cpu();
            store.merge_step(Duration::from_micros(200));
            merge_cpu += thread_cpu() - before;
            height_sum += store.height();
            height_samples += 1;
            height_max = height_max.max(store.height());
        }
    }
    let written = (WRITES / per * per) as f64;
    println!(
        "PER={per} STEPS={steps}: merge CPU {:.3} us per written record, stack height mean {:.1} max {height_max}",
        merge_cpu.as_secs_f64() * 1e6 / written,
        height_sum as f64 / height_samples.max(1) as f64,
    );
}
