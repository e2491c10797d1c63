//! Async mode's open batch: ops logged before the batch is applied survive a
//! crash, a batch fully logged needs no write when applied, and a
//! compaction never installs a file that would lose logged-but-unapplied
//! ops (it waits for the apply; `compact` refuses).

mod durable_support;

use std::time::Duration;

use durable_support::{dump, fresh_dir, run, sets, sets_with_room, store_config};
use tessera_engine::{Batch, DataDir, Durability, DurableConfig, DurableStore, PersistError};

fn async_config() -> DurableConfig {
    DurableConfig {
        durability: Durability::Async {
            flush_interval_ms: 10_000,
        },
        // Every few commits: the test's compaction starts early.
        file_commits_max: 4,
        ..DurableConfig::default()
    }
}

/// A batch with room to grow, as the command layer's open batch has.
fn open_batch(durable: &mut DurableStore, pairs: &[(&[u8], &[u8])]) -> Batch {
    sets_with_room(durable, pairs, 16, 1024)
}

fn pairs(list: &[(&'static str, &'static str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    list.iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn logged_ops_of_an_unapplied_batch_survive_a_crash() {
    let root = fresh_dir("durable-staged-crash");
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let (mut durable, _) = DurableStore::open(&data_dir, 0, async_config(), store_config())
            .await
            .unwrap();
        // An applied batch not yet flushed is logged ahead of the staged ops.
        let applied = sets(&mut durable, &[(b"old", b"1"), (b"a", b"0")]);
        durable.commit(applied).await.unwrap();
        assert_eq!(durable.unpersisted_segments(), 1);

        let mut batch = open_batch(&mut durable, &[(b"a", b"1"), (b"b", b"1")]);
        durable.log_staged(&batch, 0).await.unwrap();
        assert_eq!(durable.unpersisted_segments(), 0);
        batch.set(b"a", b"2").unwrap();
        batch.delete(b"old").unwrap();
        batch.set(b"c", b"2").unwrap();
        let logged = batch.len();
        durable.log_staged(&batch, 2).await.unwrap();
        // Staged after the last log: a crash may lose it.
        batch.set(b"d", b"3").unwrap();
        assert_eq!(batch.len(), logged + 1);
        drop(batch);
        drop(durable);

        let (durable, _) = DurableStore::open(&data_dir, 0, async_config(), store_config())
            .await
            .unwrap();
        assert_eq!(dump(&durable), pairs(&[("a", "2"), ("b", "1"), ("c", "2")]));
    });
}

#[test]
fn a_fully_logged_batch_is_applied_without_a_write() {
    let root = fresh_dir("durable-staged-apply");
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let (mut durable, _) = DurableStore::open(&data_dir, 0, async_config(), store_config())
            .await
            .unwrap();
        let batch = sets(&mut durable, &[(b"a", b"1")]);
        durable.log_staged(&batch, 0).await.unwrap();
        let commits = durable.file_commits();
        durable.apply_logged(batch, 1).unwrap();
        assert_eq!(durable.unpersisted_segments(), 0);
        durable.flush().await.unwrap();
        assert_eq!(durable.file_commits(), commits, "nothing left to write");

        // Partly logged: the segment is persisted whole, like any apply.
        let mut batch = open_batch(&mut durable, &[(b"b", b"1")]);
        durable.log_staged(&batch, 0).await.unwrap();
        batch.set(b"c", b"1").unwrap();
        durable.apply_logged(batch, 1).unwrap();
        assert_eq!(durable.unpersisted_segments(), 1);
        durable.close().await.unwrap();

        let (durable, _) = DurableStore::open(&data_dir, 0, async_config(), store_config())
            .await
            .unwrap();
        assert_eq!(dump(&durable), pairs(&[("a", "1"), ("b", "1"), ("c", "1")]));
    });
}

#[test]
fn a_compaction_waits_for_the_logged_batch_to_be_applied() {
    let root = fresh_dir("durable-staged-compaction");
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let (mut durable, _) = DurableStore::open(&data_dir, 0, async_config(), store_config())
            .await
            .unwrap();
        for i in 0..6u8 {
            let batch = sets(&mut durable, &[(&[b'k', i], b"v")]);
            durable.commit(batch).await.unwrap();
            durable.flush().await.unwrap();
        }
        let mut batch = open_batch(&mut durable, &[(b"staged", b"1")]);
        durable.log_staged(&batch, 0).await.unwrap();
        assert!(matches!(
            durable.compact().await,
            Err(PersistError::StagedUnapplied { commits: 1 })
        ));
        // More than `file_commits_max` commits: a compaction starts, copies
        // the stack, and then waits.
        let mut steps = 0;
        while !durable.compaction_waits_for_apply() {
            durable
                .maintenance_step(Duration::from_millis(10))
                .await
                .unwrap();
            steps += 1;
            assert!(steps < 1000, "the compaction never got to its install");
        }
        for _ in 0..10 {
            durable
                .maintenance_step(Duration::from_millis(10))
                .await
                .unwrap();
        }
        assert!(durable.compacting(), "installed over logged, unapplied ops");
        batch.set(b"staged-late", b"2").unwrap();
        let logged = 1;
        durable.apply_logged(batch, logged).unwrap();
        while durable.compacting() {
            durable
                .maintenance_step(Duration::from_millis(10))
                .await
                .unwrap();
        }
        drop(durable);

        let (durable, _) = DurableStore::open(&data_dir, 0, async_config(), store_config())
            .await
            .unwrap();
        let keys: Vec<Vec<u8>> = dump(&durable).into_iter().map(|(k, _)| k).collect();
        assert!(keys.contains(&b"staged".to_vec()), "{keys:?}");
        // Applied but not flushed before the crash: its own write was due
        // later, but the compaction's install persists what it appends.
        assert_eq!(keys.len(), 8, "{keys:?}");
    });
}
