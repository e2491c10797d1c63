//! Sync mode with one batch open over many rounds, as the command layer
//! keeps it: each round's new ops are logged (one write, one fdatasync)
//! before they are acknowledged, and a round the disk refuses is taken back
//! whole, from the open batch (`Batch::truncate`) and from the segments the
//! round applied early, while earlier rounds' writes stay, in memory and
//! after a reopen, and later rounds succeed once the disk recovers.

mod durable_support;

use durable_support::{dump, fresh_dir, is_disk_error, open_faulty, run, sets, store_config};
use tessera_engine::{
    Batch, BatchOp, DurableConfig, DurableStore, Fault, FaultyLayer, PersistError,
};

type Store = DurableStore<FaultyLayer>;

/// The open batch's room: several rounds fit.
const OPEN_BATCH_OPS: usize = 64;
const OPEN_BATCH_BYTES: usize = 4096;

/// The end of a round as the command layer does it in sync mode: log the
/// ops staged since the last round; on a disk error take them back.
async fn end_round(
    durable: &mut Store,
    batch: &mut Option<Batch>,
    logged_ops: &mut usize,
) -> Result<(), PersistError> {
    let result = match batch.as_ref() {
        Some(open) => durable.log_staged(open, *logged_ops).await,
        None => durable.commit_pending().await,
    };
    match (&result, batch.as_mut()) {
        (Ok(()), Some(open)) => *logged_ops = open.len(),
        (Err(_), Some(open)) if *logged_ops > 0 => open.truncate(*logged_ops),
        (Err(_), Some(_)) => *batch = None,
        (_, None) => assert_eq!(*logged_ops, 0),
    }
    result
}

fn set(value: &[u8]) -> Option<BatchOp<'_>> {
    Some(BatchOp::Set {
        value,
        expire_at_ms: None,
    })
}

fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    list.iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn a_refused_round_is_taken_back_from_the_open_batch() {
    let dir = fresh_dir("durable-sync-open-batch");
    run(async move {
        let config = DurableConfig::default();
        let (plan, mut durable) = open_faulty(&dir, config.clone()).await;
        // Older than the open batch: a segment of its own.
        let batch = sets(&mut durable, &[(b"old", b"segment"), (b"gone", b"segment")]);
        durable.commit(batch).await.unwrap();

        let mut open = Some(
            durable
                .store_mut()
                .new_batch(OPEN_BATCH_OPS, OPEN_BATCH_BYTES)
                .unwrap(),
        );
        let mut logged_ops = 0;
        // Two acknowledged rounds in the open batch.
        let batch = open.as_mut().unwrap();
        batch.set(b"a", b"1").unwrap();
        batch.set(b"d", b"1").unwrap();
        end_round(&mut durable, &mut open, &mut logged_ops)
            .await
            .unwrap();
        let batch = open.as_mut().unwrap();
        batch.delete(b"gone").unwrap();
        batch.set(b"b", b"2").unwrap();
        end_round(&mut durable, &mut open, &mut logged_ops)
            .await
            .unwrap();
        assert_eq!(logged_ops, 4);
        let commits_before = durable.file_commits();

        // A read-only round writes nothing.
        end_round(&mut durable, &mut open, &mut logged_ops)
            .await
            .unwrap();
        assert_eq!(durable.file_commits(), commits_before);

        for fault in [
            Fault::Write(libc::ENOSPC),
            Fault::Sync(libc::ENOSPC),
            Fault::Write(libc::EIO),
            Fault::Sync(libc::EIO),
            Fault::TornWrite { bytes: 4096 },
        ] {
            // The failing round overwrites, deletes, re-creates and adds.
            let batch = open.as_mut().unwrap();
            batch.set(b"a", b"failed").unwrap();
            batch.delete(b"d").unwrap();
            batch.set(b"gone", b"failed").unwrap();
            batch.delete(b"old").unwrap();
            batch.set(b"new", b"failed").unwrap();
            batch.set(b"a", b"failed again").unwrap();
            plan.inject(fault);
            let error = end_round(&mut durable, &mut open, &mut logged_ops)
                .await
                .unwrap_err();
            assert!(is_disk_error(&error), "{fault:?}: {error}");
            let batch = open.as_ref().unwrap();
            assert_eq!(batch.len(), 4, "{fault:?}");
            assert_eq!(batch.get(b"a"), set(b"1"), "{fault:?}");
            assert_eq!(batch.get(b"d"), set(b"1"), "{fault:?}");
            assert_eq!(batch.get(b"gone"), Some(BatchOp::Delete), "{fault:?}");
            assert_eq!(batch.get(b"b"), set(b"2"), "{fault:?}");
            assert_eq!(batch.get(b"old"), None, "{fault:?}");
            assert_eq!(batch.get(b"new"), None, "{fault:?}");
            assert_eq!(durable.store().get(b"old"), Some(&b"segment"[..]));
        }

        // A round whose batch is applied before its end (it filled up, or a
        // SCAN needed a snapshot): the logged part becomes a segment of its
        // own, the round's part an unpersisted one the failure takes back,
        // with the round's next batch.
        let batch = open.as_mut().unwrap();
        batch.set(b"a", b"applied early").unwrap();
        batch.delete(b"d").unwrap();
        let batch = open.take().unwrap();
        durable.apply_logged(batch, logged_ops).unwrap();
        logged_ops = 0;
        assert_eq!(durable.unpersisted_segments(), 1);
        assert_eq!(durable.store().get(b"a"), Some(&b"applied early"[..]));
        let mut next = durable.store_mut().new_batch(8, 256).unwrap();
        next.set(b"b", b"failed").unwrap();
        next.set(b"later", b"failed").unwrap();
        open = Some(next);
        plan.inject(Fault::Write(libc::ENOSPC));
        assert!(end_round(&mut durable, &mut open, &mut logged_ops)
            .await
            .is_err());
        assert!(open.is_none(), "nothing of the failed batch is kept");
        assert_eq!(durable.unpersisted_segments(), 0);
        let acknowledged = pairs(&[("a", "1"), ("b", "2"), ("d", "1"), ("old", "segment")]);
        assert_eq!(dump(&durable), acknowledged);

        // Space returns: the next round is acknowledged, with the same
        // kinds of ops the failed ones had.
        let mut next = durable.store_mut().new_batch(8, 256).unwrap();
        next.set(b"a", b"3").unwrap();
        next.delete(b"d").unwrap();
        next.set(b"new", b"3").unwrap();
        open = Some(next);
        end_round(&mut durable, &mut open, &mut logged_ops)
            .await
            .unwrap();
        let after = pairs(&[("a", "3"), ("b", "2"), ("new", "3"), ("old", "segment")]);
        // Logged, not applied yet: a reopen finds the rounds in the file.
        drop(open.take());
        drop(durable);

        let (durable, _) =
            DurableStore::open_with(FaultyLayer::default(), &dir, 0, config, store_config())
                .await
                .unwrap();
        assert_eq!(dump(&durable), after);
    });
}
