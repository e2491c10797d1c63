//! Compaction in bounded steps: while it copies the stack one write per
//! maintenance step, commits keep landing (and are carried over into the
//! new file); a merge under the copy makes it start over; afterwards the
//! directory holds one smaller file and a reopen serves everything.

mod durable_support;

use std::time::Duration;

use durable_support::{fresh_dir, run, sets};
use tessera_engine::StoreConfig;
use tessera_engine::{DataDir, DurableConfig, DurableStore, FileLayer};

const KEYS: usize = 24;
const VALUE_BYTES: usize = 100_000;

fn value(round: usize, key: usize) -> Vec<u8> {
    vec![(round * 31 + key) as u8; VALUE_BYTES]
}

async fn write_round<L: FileLayer>(durable: &mut DurableStore<L>, round: usize) {
    let keys: Vec<Vec<u8>> = (0..KEYS)
        .map(|k| format!("key-{k:02}").into_bytes())
        .collect();
    let values: Vec<Vec<u8>> = (0..KEYS).map(|k| value(round, k)).collect();
    let pairs: Vec<(&[u8], &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (&k[..], &v[..]))
        .collect();
    let batch = sets(durable, &pairs);
    durable.commit(batch).await.unwrap();
}

/// Merges wait while a compaction copies, so the stack holds more.
fn store_config() -> StoreConfig {
    StoreConfig {
        memory_quota_bytes: 1 << 30,
        ..StoreConfig::default()
    }
}

fn tsr_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn compaction_advances_in_steps_alongside_commits() {
    let root = fresh_dir("durable-incremental-compaction");
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let core_dir = data_dir.core_dir(0);
        let config = DurableConfig {
            compaction_min_bytes: 1 << 20,
            ..DurableConfig::default()
        };
        let (mut durable, _) = DurableStore::open(&data_dir, 0, config.clone(), store_config())
            .await
            .unwrap();
        let step = Duration::from_micros(100);
        let mut round = 0;
        while !durable.compacting() {
            write_round(&mut durable, round).await;
            round += 1;
            durable.maintenance_step(step).await.unwrap();
            assert!(round < 100, "compaction never started");
        }
        // A merge under the copy discards it (the .tmp goes too).
        durable.store_mut().compact();
        durable.maintenance_step(step).await.unwrap();
        assert!(!durable.compacting());
        assert_eq!(tsr_files(&core_dir).len(), 1, "{:?}", tsr_files(&core_dir));

        // Start again and write between steps until it is installed.
        let mut steps = 0;
        while !durable.compacting() {
            durable.maintenance_step(step).await.unwrap();
        }
        let file_before = durable.file_bytes();
        while durable.compacting() {
            if steps % 2 == 0 {
                write_round(&mut durable, round).await;
                round += 1;
            }
            durable.maintenance_step(step).await.unwrap();
            steps += 1;
            assert!(steps < 10_000);
        }
        // A 2.4 MB stack takes three 1 MiB writes: the first in the step
        // that started the compaction, then one per step.
        assert!(steps >= 2, "one write per step: {steps} steps");
        assert!(durable.file_bytes() < file_before);
        let last_round = round - 1;
        for k in 0..KEYS {
            assert_eq!(
                durable.store().get(format!("key-{k:02}").as_bytes()),
                Some(&value(last_round, k)[..])
            );
        }
        assert_eq!(tsr_files(&core_dir).len(), 1);
        drop(durable);

        let (durable, report) = DurableStore::open(&data_dir, 0, config, store_config())
            .await
            .unwrap();
        assert!(report.removed_files.is_empty());
        for k in 0..KEYS {
            assert_eq!(
                durable.store().get(format!("key-{k:02}").as_bytes()),
                Some(&value(last_round, k)[..])
            );
        }
    });
}
