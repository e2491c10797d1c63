//! Async mode's flush step: it hands the segments not yet in the log to it
//! as a group and returns with the writes in flight; the next step (or any
//! flush) syncs them. A write or sync that fails leaves every segment of
//! the group unpersisted, and the next flush writes them again; a clear
//! while a group is open replaces the file anyway.

mod durable_support;

use durable_support::{async_config, dump, fresh_dir, run, sets, store_config};
use std::path::Path;
use tessera_engine::{DmaLayer, DurableStore, Fault, FaultPlan, FaultyLayer};

async fn open(dir: &Path) -> (FaultPlan, DurableStore<FaultyLayer>) {
    let plan = FaultPlan::new();
    let layer = FaultyLayer { plan: plan.clone() };
    let (durable, _) = DurableStore::open_with(layer, dir, 0, async_config(60_000), store_config())
        .await
        .unwrap();
    (plan, durable)
}

async fn reopened_keys(dir: &Path) -> Vec<Vec<u8>> {
    let (durable, report) =
        DurableStore::open_with(DmaLayer, dir, 0, async_config(60_000), store_config())
            .await
            .unwrap();
    assert_eq!(report.torn_tail_bytes, 0);
    dump(&durable).into_iter().map(|(key, _)| key).collect()
}

async fn commit_keys(durable: &mut DurableStore<FaultyLayer>, keys: &[&[u8]]) {
    for key in keys {
        let batch = sets(durable, &[(key, b"value")]);
        durable.commit(batch).await.unwrap();
    }
}

#[test]
fn a_step_leaves_its_group_in_flight_and_the_next_one_syncs_it() {
    let root = fresh_dir("durable-flush-step");
    run(async move {
        let (_, mut durable) = open(&root).await;
        let empty = durable.file_bytes();
        commit_keys(&mut durable, &[b"a", b"b", b"c"]).await;
        durable.flush_step().await.unwrap();
        // Written, not yet synced: nothing is acknowledged as durable.
        assert_eq!(durable.file_bytes(), empty);
        assert_eq!(durable.unpersisted_segments(), 3);
        commit_keys(&mut durable, &[b"d"]).await;
        durable.flush_step().await.unwrap();
        assert_eq!(durable.file_bytes(), empty + 3 * 4096);
        assert_eq!(durable.unpersisted_segments(), 1);
        durable.close().await.unwrap();
        assert_eq!(reopened_keys(&root).await, [b"a", b"b", b"c", b"d"]);
    });
}

#[test]
fn a_failed_sync_of_an_open_group_is_written_again_by_the_next_flush() {
    let root = fresh_dir("durable-flush-step-sync-error");
    run(async move {
        let (plan, mut durable) = open(&root).await;
        let empty = durable.file_bytes();
        commit_keys(&mut durable, &[b"a", b"b"]).await;
        durable.flush_step().await.unwrap();
        commit_keys(&mut durable, &[b"c"]).await;
        plan.inject(Fault::Sync(libc::EIO));
        assert!(durable.flush_step().await.is_err());
        assert_eq!(durable.file_bytes(), empty);
        assert_eq!(durable.unpersisted_segments(), 3);
        // The retry truncates the unknown tail and writes all three.
        durable.flush().await.unwrap();
        assert_eq!(durable.unpersisted_segments(), 0);
        drop(durable);
        assert_eq!(reopened_keys(&root).await, [b"a", b"b", b"c"]);
    });
}

#[test]
fn a_failed_write_of_a_step_is_written_again_by_the_next_flush() {
    let root = fresh_dir("durable-flush-step-write-error");
    run(async move {
        let (plan, mut durable) = open(&root).await;
        let empty = durable.file_bytes();
        commit_keys(&mut durable, &[b"a", b"b", b"c", b"d"]).await;
        plan.inject_after(2, Fault::Write(libc::ENOSPC));
        assert!(durable.flush_step().await.is_err());
        assert_eq!(durable.file_bytes(), empty);
        assert_eq!(durable.unpersisted_segments(), 4);
        durable.flush().await.unwrap();
        drop(durable);
        assert_eq!(reopened_keys(&root).await, [b"a", b"b", b"c", b"d"]);
    });
}

#[test]
fn a_clear_with_a_group_open_replaces_the_file() {
    let root = fresh_dir("durable-flush-step-clear");
    run(async move {
        let (_, mut durable) = open(&root).await;
        commit_keys(&mut durable, &[b"a", b"b"]).await;
        durable.flush_step().await.unwrap();
        durable.clear_in_memory();
        commit_keys(&mut durable, &[b"after"]).await;
        durable.flush().await.unwrap();
        drop(durable);
        assert_eq!(reopened_keys(&root).await, [b"after"]);
    });
}
