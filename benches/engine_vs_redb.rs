//! Tessera's engine side by side with redb (in memory, `InMemoryBackend`,
//! no durability), the embedded ordered key-value store a Rust user would
//! most likely pick instead, on the same workloads: point gets, 1,000-op
//! batches, full ordered scans. 16-byte random keys, 32-byte values.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use redb::backends::InMemoryBackend;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use std::time::{Duration, Instant};

#[path = "engine_common/mod.rs"]
mod common;
use common::*;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const BATCH_OPS: usize = 1000;

fn redb_database() -> Database {
    Database::builder()
        .create_with_backend(InMemoryBackend::new())
        .unwrap()
}

fn redb_insert(db: &Database, range: std::ops::Range<u64>) {
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(Durability::None);
    {
        let mut table = tx.open_table(TABLE).unwrap();
        for i in range {
            table.insert(&key(i)[..], &value(i)[..]).unwrap();
        }
    }
    tx.commit().unwrap();
}

fn loaded_redb(n: usize) -> Database {
    let db = redb_database();
    let mut next = 0u64;
    while (next as usize) < n {
        let end = (next + LOAD_BATCH_OPS as u64).min(n as u64);
        redb_insert(&db, next..end);
        next = end;
    }
    db
}

fn point_get(c: &mut Criterion) {
    if !selected("compare_get_present") {
        return;
    }
    let n = scaled(1_000_000);
    let keys = shuffled_keys(n);
    let mut group = c.benchmark_group("compare_get_present");
    let store = loaded_store(n);
    let mut at = 0;
    group.bench_function(BenchmarkId::new("tessera", n), |b| {
        b.iter(|| {
            at = if at + 1 == keys.len() { 0 } else { at + 1 };
            black_box(store.get(black_box(&keys[at])));
        })
    });
    drop(store);
    let db = loaded_redb(n);
    let tx = db.begin_read().unwrap();
    let table = tx.open_table(TABLE).unwrap();
    group.bench_function(BenchmarkId::new("redb_in_memory", n), |b| {
        b.iter(|| {
            at = if at + 1 == keys.len() { 0 } else { at + 1 };
            black_box(
                table
                    .get(black_box(&keys[at][..]))
                    .unwrap()
                    .map(|v| v.value().len()),
            );
        })
    });
    group.finish();
}

fn apply_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("compare_apply_batch_1000");
    group.throughput(Throughput::Elements(BATCH_OPS as u64));
    let mut store = tessera_engine::Store::new(bench_config()).unwrap();
    let mut next = 0u64;
    group.bench_function("tessera_with_merges", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                apply_fresh(&mut store, &mut next, BATCH_OPS);
                while store.merge_needed() {
                    store.merge_step(Duration::from_micros(200));
                }
                elapsed += start.elapsed();
                if store.len() >= 2_000_000 {
                    store.clear();
                }
            }
            elapsed
        })
    });
    // redb grows one database across samples the same way (reset at 2M keys).
    let mut db = redb_database();
    let mut written = 0u64;
    group.bench_function("redb_in_memory", |b| {
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                redb_insert(&db, next..next + BATCH_OPS as u64);
                elapsed += start.elapsed();
                next += BATCH_OPS as u64;
                written += BATCH_OPS as u64;
                if written >= 2_000_000 {
                    db = redb_database();
                    written = 0;
                }
            }
            elapsed
        })
    });
    group.finish();
}

fn full_scan(c: &mut Criterion) {
    if !selected("compare_full_scan") {
        return;
    }
    let n = scaled(1_000_000);
    let bytes_expected = n * (KEY_LEN + VALUE_LEN);
    let mut group = c.benchmark_group("compare_full_scan");
    group.throughput(Throughput::Bytes(bytes_expected as u64));
    group.sample_size(20);
    let store = loaded_store(n);
    group.bench_function(BenchmarkId::new("tessera", n), |b| {
        b.iter(|| {
            let (bytes, sum) = scan(store.range(..));
            assert_eq!(bytes, bytes_expected);
            black_box(sum);
        })
    });
    drop(store);
    let db = loaded_redb(n);
    let tx = db.begin_read().unwrap();
    let table = tx.open_table(TABLE).unwrap();
    group.bench_function(BenchmarkId::new("redb_in_memory", n), |b| {
        b.iter(|| {
            let (mut bytes, mut sum) = (0, 0u64);
            for entry in table.iter().unwrap() {
                let (k, v) = entry.unwrap();
                bytes += k.value().len() + v.value().len();
                sum = sum.wrapping_add(touch(k.value(), v.value()));
            }
            assert_eq!(bytes, bytes_expected);
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
