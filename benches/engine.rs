//! The engine against its targets: point gets (with a `HashMap` baseline in
//! the same run), applying 1,000-op batches, full ordered scans, and memory
//! overhead per record. Figures and commands: BENCHMARKS.md.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tessera_engine::Store;

#[path = "engine_common/mod.rs"]
mod common;
use common::*;

/// This thread's CPU time, in ns: unlike wall time it excludes the time
/// other processes on a shared machine run while this thread is preempted.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(result, 0);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn loaded_hash_map(n: usize) -> HashMap<Box<[u8]>, Box<[u8]>> {
    let mut map = HashMap::with_capacity(n);
    for i in 0..n as u64 {
        map.insert(Box::from(&key(i)[..]), Box::from(&value(i)[..]));
    }
    map
}

fn point_get(c: &mut Criterion) {
    if !selected("engine_get_present") {
        return;
    }
    let mut group = c.benchmark_group("engine_get_present");
    for n in [scaled(1_000_000), scaled(10_000_000)] {
        let store = loaded_store(n);
        let stats = store.stats();
        let overhead = stats.memory_used_bytes as f64 - stats.key_value_bytes as f64;
        eprintln!(
            "memory at {n} records: {} bytes held, {} key+value bytes, overhead {:.1} bytes/record \
             (Redis 7: ~78 bytes/record for the same 16-byte key, 32-byte value)",
            stats.memory_used_bytes,
            stats.key_value_bytes,
            overhead / stats.records_held as f64
        );
        let keys = shuffled_keys(n);
        let mut at = 0;
        group.bench_function(BenchmarkId::new("tessera", n), |b| {
            b.iter(|| {
                at = if at + 1 == keys.len() { 0 } else { at + 1 };
                black_box(store.get(black_box(&keys[at])));
            })
        });
        drop(store);
        let map = loaded_hash_map(n);
        group.bench_function(BenchmarkId::new("std_hashmap", n), |b| {
            b.iter(|| {
                at = if at + 1 == keys.len() { 0 } else { at + 1 };
                black_box(map.get(black_box(&keys[at][..])));
            })
        });
    }
    group.finish();
}

const BATCH_OPS: usize = 1000;

thread_local! {
    /// Every `merge_step` seen while applying batches: (wall ns, CPU ns).
    static MERGE_STEPS_NS: std::cell::RefCell<Vec<(u64, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Builds and applies 1,000-op batches of fresh random keys into `store`.
/// `merge` also runs the merger to idle after each batch (the sustained
/// cost); without it the store is cleared, untimed, whenever the stack gets
/// tall. Either way the store is cleared, untimed, at 2M keys.
fn apply_batches(store: &mut Store, next: &mut u64, iterations: u64, merge: bool) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..iterations {
        let start = Instant::now();
        apply_fresh(store, next, BATCH_OPS);
        if merge {
            while store.merge_needed() {
                let (wall, cpu) = (Instant::now(), thread_cpu_ns());
                store.merge_step(Duration::from_micros(200));
                let (wall, cpu) = (wall.elapsed().as_nanos() as u64, thread_cpu_ns() - cpu);
                MERGE_STEPS_NS.with(|steps| steps.borrow_mut().push((wall, cpu)));
            }
        }
        elapsed += start.elapsed();
        // Untimed: `height()` rather than `stats()`, which counts the live
        // keys; and the merger releases what `clear` retired, so the pool
        // reuses it instead of every batch faulting in fresh pages.
        if (!merge && store.height() >= 8) || store.len() >= 2_000_000 {
            store.clear();
            while store.merge_needed() {
                store.merge_step(Duration::from_millis(10));
            }
        }
    }
    elapsed
}

fn apply_batch(c: &mut Criterion) {
    // The server's allocator setting (`retain_freed_memory`): freed merge
    // inputs' pages are reused instead of released and faulted in again.
    let retained = std::env::var_os("TESSERA_BENCH_RETAIN_FREED").is_some()
        && tessera_engine::retain_freed_memory();
    let mut group = c.benchmark_group("engine_apply_batch_1000");
    group.throughput(Throughput::Elements(BATCH_OPS as u64));
    let mut store = Store::new(bench_config()).unwrap();
    let mut next = 0;
    group.bench_function("tessera", |b| {
        b.iter_custom(|iterations| apply_batches(&mut store, &mut next, iterations, false))
    });
    store.clear();
    group.bench_function("tessera_with_merges", |b| {
        b.iter_custom(|iterations| apply_batches(&mut store, &mut next, iterations, true))
    });
    group.finish();
    MERGE_STEPS_NS.with(|steps| {
        let steps = steps.borrow();
        for (clock, pick) in [("wall", 0), ("thread CPU", 1)] {
            let mut ns: Vec<u64> = steps
                .iter()
                .map(|&(wall, cpu)| if pick == 0 { wall } else { cpu })
                .collect();
            ns.sort_unstable();
            if let Some(&max) = ns.last() {
                let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] / 1000;
                eprintln!(
                    "merge_step {clock} time (budget 200 us, freed memory retained: {retained}) \
                     over {} steps: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
                    ns.len(),
                    at(0.5),
                    at(0.99),
                    at(0.999),
                    max / 1000
                );
            }
        }
    });
}

fn full_scan(c: &mut Criterion) {
    if !selected("engine_full_scan") {
        return;
    }
    let n = scaled(1_000_000);
    let mut group = c.benchmark_group("engine_full_scan");
    group.throughput(Throughput::Bytes((n * (KEY_LEN + VALUE_LEN)) as u64));
    group.sample_size(20);
    let merged = loaded_store(n);
    group.bench_function(BenchmarkId::new("tessera_merged", n), |b| {
        b.iter(|| {
            let snapshot = merged.snapshot();
            let (bytes, sum) = scan(snapshot.range(..));
            assert_eq!(bytes, n * (KEY_LEN + VALUE_LEN));
            black_box(sum);
        })
    });
    drop(merged);
    // The same keys spread over a stack of 8 unmerged segments.
    let mut stacked = Store::new(bench_config()).unwrap();
    let per_segment = n.div_ceil(8);
    for segment in 0..8 {
        let first = segment * per_segment;
        let last = ((segment + 1) * per_segment).min(n);
        let mut batch = stacked
            .new_batch(per_segment, per_segment * (KEY_LEN + VALUE_LEN))
            .unwrap();
        for i in first..last {
            batch.set(&key(i as u64), &value(i as u64)).unwrap();
        }
        stacked.apply(batch).unwrap();
    }
    group.bench_function(BenchmarkId::new("tessera_8_segments", n), |b| {
        b.iter(|| {
            let (bytes, sum) = scan(stacked.range(..));
            assert_eq!(bytes, n * (KEY_LEN + VALUE_LEN));
            black_box(sum);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = point_get, apply_batch, full_scan
}
criterion_main!(benches);
