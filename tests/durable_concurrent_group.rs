//! The commits of one flush are written concurrently, so a crash can leave
//! a later commit of the group on disk while an earlier one never landed.
//! For a group of N commits and every position of the missing one, the
//! store reopens with exactly the commits before it (and everything synced
//! before the group), cuts the rest as a torn tail, saves the cut bytes and
//! reports the landed commits it cut; it then keeps writing normally.
//! Damage before the group's start still refuses to open.

mod durable_support;

use durable_support::{async_config, dump, fresh_dir, run, sets, store_config};
use std::path::Path;
use tessera_engine::{
    DmaLayer, DurableStore, Fault, FaultPlan, FaultyLayer, PersistError, RecoveryReport,
    FLUSH_WRITES_IN_FLIGHT_MAX,
};

/// Longest group tried: every batch is one commit of one DMA write, so the
/// writes of a group are all in flight together.
const GROUP_COMMITS_MAX: u64 = 5;

fn key(group: u64, i: u64) -> Vec<u8> {
    format!("g{group}-k{i}").into_bytes()
}

async fn reopen(dir: &Path) -> (DurableStore<DmaLayer>, RecoveryReport) {
    DurableStore::open_with(DmaLayer, dir, 0, async_config(60_000), store_config())
        .await
        .unwrap_or_else(|e| panic!("reopen: {e}"))
}

/// Writes one durable group `0` of two commits, then group `1` of `n`
/// commits whose write `lost` never lands and whose fdatasync fails, and
/// drops the store there: a crash before the group was acknowledged.
async fn crash_with_lost_write(dir: &Path, n: u64, lost: u64) -> u64 {
    let plan = FaultPlan::new();
    let layer = FaultyLayer { plan: plan.clone() };
    let (mut durable, _) =
        DurableStore::open_with(layer, dir, 0, async_config(60_000), store_config())
            .await
            .unwrap();
    for (group, commits) in [(0, 2), (1, n)] {
        for i in 0..commits {
            let key = key(group, i);
            let batch = sets(&mut durable, &[(&key, b"value")]);
            durable.commit(batch).await.unwrap();
        }
        if group == 1 {
            plan.inject_after(lost, Fault::LostWrite);
            plan.inject(Fault::Sync(libc::EIO));
            let error = durable.flush().await.unwrap_err();
            assert!(matches!(error, PersistError::Io { .. }), "{error}");
            assert_eq!(plan.fired(), 2);
        } else {
            durable.flush().await.unwrap();
        }
    }
    let synced_end = durable.file_bytes();
    drop(durable);
    synced_end
}

#[test]
fn a_missing_commit_in_the_last_group_keeps_exactly_the_prefix() {
    let root = fresh_dir("durable-concurrent-group");
    run(async move {
        for n in 1..=GROUP_COMMITS_MAX {
            for lost in 0..n {
                let dir = root.join(format!("n{n}-lost{lost}"));
                std::fs::create_dir_all(&dir).unwrap();
                let synced_end = crash_with_lost_write(&dir, n, lost).await;
                let (mut durable, report) = reopen(&dir).await;
                let case = format!("group of {n}, write {lost} lost");
                let mut expected: Vec<Vec<u8>> = (0..2).map(|i| key(0, i)).collect();
                expected.extend((0..lost).map(|i| key(1, i)));
                expected.sort();
                let found: Vec<Vec<u8>> = dump(&durable).into_iter().map(|(k, _)| k).collect();
                assert_eq!(found, expected, "{case}");
                assert_eq!(report.segments, 2 + lost, "{case}");
                assert!(report.dropped.is_none(), "{case}");
                assert!(durable.file_bytes() > synced_end || lost == 0, "{case}");
                let landed_after = n - lost - 1;
                match (&report.torn_group, &report.torn_group_saved_to) {
                    (Some(torn), Some(saved)) => {
                        assert!(landed_after > 0, "{case}");
                        assert_eq!(torn.commits_identified, landed_after, "{case}");
                        assert_eq!(torn.offset, durable.file_bytes(), "{case}");
                        assert_eq!(std::fs::metadata(saved).unwrap().len(), torn.bytes);
                        assert!(report.torn_tail_bytes >= torn.bytes, "{case}");
                    }
                    (None, None) => assert_eq!(landed_after, 0, "{case}"),
                    other => panic!("{case}: {other:?}"),
                }
                // The log goes on from the cut, and a clean reopen sees it.
                let batch = sets(&mut durable, &[(b"after", b"crash")]);
                durable.commit(batch).await.unwrap();
                durable.close().await.unwrap();
                let (durable, report) = reopen(&dir).await;
                assert_eq!(report.torn_tail_bytes, 0, "{case}");
                assert!(report.torn_group.is_none(), "{case}");
                assert_eq!(dump(&durable).len(), expected.len() + 1, "{case}");
                assert_eq!(durable.store().get(b"after"), Some(&b"crash"[..]));
            }
        }
    });
}

#[test]
fn damage_before_the_last_group_still_refuses_to_open() {
    let root = fresh_dir("durable-concurrent-group-damage");
    run(async move {
        let (mut durable, _) = reopen(&root).await;
        for group in 0..2 {
            for i in 0..3 {
                let key = key(group, i);
                let batch = sets(&mut durable, &[(&key, b"value")]);
                durable.commit(batch).await.unwrap();
            }
            durable.flush().await.unwrap();
        }
        drop(durable);
        let path = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "tsr"))
            .unwrap();
        let mut image = std::fs::read(&path).unwrap();
        // A byte of the first group's second commit (4096 + one block).
        image[4096 + 4096 + 70] ^= 0x08;
        std::fs::write(&path, &image).unwrap();
        let error =
            DurableStore::open_with(DmaLayer, &root, 0, async_config(60_000), store_config())
                .await
                .err()
                .expect("damage before the last group refuses");
        assert!(
            matches!(
                error,
                PersistError::ChecksumMismatch { .. } | PersistError::Corrupted { .. }
            ),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), image, "nothing modified");
    });
}

#[test]
fn a_failed_write_anywhere_in_a_group_fails_it_whole_and_the_next_flush_rewrites_it() {
    let root = fresh_dir("durable-concurrent-group-errors");
    run(async move {
        let n = GROUP_COMMITS_MAX;
        let faults = (0..n)
            .map(|at| (at, Fault::Write(libc::ENOSPC)))
            .chain((0..n).map(|at| (at, Fault::TornWrite { bytes: 100 })));
        for (case, (at, fault)) in faults.enumerate() {
            let dir = root.join(format!("case{case}"));
            std::fs::create_dir_all(&dir).unwrap();
            let plan = FaultPlan::new();
            let layer = FaultyLayer { plan: plan.clone() };
            let (mut durable, _) =
                DurableStore::open_with(layer, &dir, 0, async_config(60_000), store_config())
                    .await
                    .unwrap();
            for i in 0..n {
                let key = key(0, i);
                let batch = sets(&mut durable, &[(&key, b"value")]);
                durable.commit(batch).await.unwrap();
            }
            plan.inject_after(at, fault);
            assert!(durable.flush().await.is_err(), "{fault:?} at {at}");
            assert_eq!(plan.fired(), 1);
            assert_eq!(durable.file_bytes(), 4096, "nothing acknowledged");
            // The retry truncates whatever landed and writes the group again.
            durable.flush().await.unwrap();
            drop(durable);
            let (durable, report) = reopen(&dir).await;
            assert_eq!(report.segments, n, "{fault:?} at {at}");
            assert_eq!(report.torn_tail_bytes, 0, "{fault:?} at {at}");
            assert_eq!(dump(&durable).len() as u64, n);
        }
    });
}

#[test]
fn the_writes_of_a_group_are_in_flight_together_within_the_bound() {
    let root = fresh_dir("durable-concurrent-group-in-flight");
    run(async move {
        let plan = FaultPlan::new();
        let layer = FaultyLayer { plan: plan.clone() };
        let (mut durable, _) =
            DurableStore::open_with(layer, &root, 0, async_config(60_000), store_config())
                .await
                .unwrap();
        let commits = 2 * FLUSH_WRITES_IN_FLIGHT_MAX as u64;
        for i in 0..commits {
            let key = key(0, i);
            let batch = sets(&mut durable, &[(&key, b"value")]);
            durable.commit(batch).await.unwrap();
        }
        durable.flush().await.unwrap();
        let most = plan.writes_in_flight_max();
        assert!(most > 1, "one write at a time");
        assert!(
            most <= FLUSH_WRITES_IN_FLIGHT_MAX as u64,
            "{most} in flight"
        );
        durable.close().await.unwrap();
        let (durable, report) = reopen(&root).await;
        assert_eq!(report.segments, commits);
        assert_eq!(dump(&durable).len() as u64, commits);
    });
}
