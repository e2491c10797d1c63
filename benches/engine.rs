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

/// This thread's minor plus major page faults, and the times the scheduler
/// took its CPU away (involuntary context switches), so far.
fn thread_faults_and_preemptions() -> (u64, u64) {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    let result = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(result, 0);
    (
        (usage.ru_minflt + usage.ru_majflt) as u64,
        usage.ru_nivcsw as u64,
    )
}

/// One `merge_step` seen while applying batches.
#[derive(Clone, Copy)]
struct StepSample {
    wall_ns: u64,
    cpu_ns: u64,
    /// Page faults the thread took during the step, and the times it was
    /// preempted (counted only with `TESSERA_BENCH_STEP_FAULTS` set: two
    /// more system calls per step).
    page_faults: u64,
    preemptions: u64,
}

/// Steps over this much CPU time missed the step budget target.
const STEP_SLOW_NS: u64 = 200_000;

thread_local! {
    static MERGE_STEPS: std::cell::RefCell<Vec<StepSample>> = const { std::cell::RefCell::new(Vec::new()) };
    static COUNT_STEP_FAULTS: bool = std::env::var_os("TESSERA_BENCH_STEP_FAULTS").is_some();
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
            let count_faults = COUNT_STEP_FAULTS.with(|count| *count);
            while store.merge_needed() {
                let before = if count_faults {
                    thread_faults_and_preemptions()
                } else {
                    (0, 0)
                };
                let (wall, cpu) = (Instant::now(), thread_cpu_ns());
                store.merge_step(Duration::from_micros(200));
                let (wall_ns, cpu_ns) = (wall.elapsed().as_nanos() as u64, thread_cpu_ns() - cpu);
                let after = if count_faults {
                    thread_faults_and_preemptions()
                } else {
                    (0, 0)
                };
                let sample = StepSample {
                    wall_ns,
                    cpu_ns,
                    page_faults: after.0 - before.0,
                    preemptions: after.1 - before.1,
                };
                MERGE_STEPS.with(|steps| steps.borrow_mut().push(sample));
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
    // And its start-up prefault of the heap (`prefault_retained_memory`),
    // in MiB: the store then grows into pages already backed.
    let prefault_bytes = std::env::var("TESSERA_BENCH_PREFAULT_MB").map_or(0, |mb| {
        mb.parse::<usize>().expect("TESSERA_BENCH_PREFAULT_MB: MiB") << 20
    });
    let started = Instant::now();
    let prefaulted = prefault_bytes > 0
        && tessera_engine::prefault_retained_memory(prefault_bytes).expect("prefault size");
    if prefaulted {
        eprintln!(
            "prefaulted {} MiB of heap in {} ms",
            prefault_bytes >> 20,
            started.elapsed().as_millis()
        );
    }
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
    MERGE_STEPS.with(|steps| {
        report_steps(
            &steps.borrow(),
            retained,
            prefaulted.then_some(prefault_bytes),
        )
    })
}

fn report_steps(steps: &[StepSample], retained: bool, prefault_bytes: Option<usize>) {
    let Some(_) = steps.first() else {
        return;
    };
    let setting = format!(
        "budget 200 us, freed memory retained: {retained}, prefaulted: {} MiB",
        prefault_bytes.unwrap_or(0) >> 20
    );
    for (clock, pick) in [("wall", 0), ("thread CPU", 1)] {
        let mut ns: Vec<u64> = steps
            .iter()
            .map(|step| if pick == 0 { step.wall_ns } else { step.cpu_ns })
            .collect();
        ns.sort_unstable();
        let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] / 1000;
        eprintln!(
            "merge_step {clock} time ({setting}) over {} steps: p50 {} us, p99 {} us, \
             p99.9 {} us, max {} us",
            ns.len(),
            at(0.5),
            at(0.99),
            at(0.999),
            at(1.0)
        );
    }
    if COUNT_STEP_FAULTS.with(|count| *count) {
        let faulted = steps.iter().filter(|step| step.page_faults > 0).count();
        let faults: u64 = steps.iter().map(|step| step.page_faults).sum();
        let over = |ns: u64, faulted: bool| {
            steps
                .iter()
                .filter(|step| step.cpu_ns > ns && (step.page_faults > 0) == faulted)
                .count()
        };
        eprintln!(
            "merge_step page faults ({setting}): {faults} in {faulted} of {} steps; steps over \
             200 / 300 / 500 us of CPU with page faults: {} / {} / {}, without: {} / {} / {}",
            steps.len(),
            over(STEP_SLOW_NS, true),
            over(300_000, true),
            over(500_000, true),
            over(STEP_SLOW_NS, false),
            over(300_000, false),
            over(500_000, false),
        );
        let slow_unfaulted = steps
            .iter()
            .filter(|step| step.cpu_ns > STEP_SLOW_NS && step.page_faults == 0);
        let preempted = |steps: &mut dyn Iterator<Item = &StepSample>| {
            let (mut all, mut preempted) = (0, 0);
            for step in steps {
                all += 1;
                preempted += usize::from(step.preemptions > 0);
            }
            (preempted, all)
        };
        let (slow_preempted, slow) = preempted(&mut slow_unfaulted.clone());
        let (all_preempted, all) = preempted(&mut steps.iter());
        eprintln!(
            "merge_step preemptions ({setting}): {slow_preempted} of the {slow} steps over 200 us \
             without page faults were preempted; {all_preempted} of all {all} steps"
        );
    }
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
