//! Batches applied ahead of their commit (`apply_pending`, the command
//! layer's mid-round flushes) share the commit's fate in sync mode: a disk
//! error takes them back with it, a success makes them durable with it.
//! `clear_in_memory` (FLUSHDB) reaches the file at the next commit.

mod durable_support;

use durable_support::{fresh_dir, is_disk_error, open_faulty, run, sets, store_config};
use tessera_engine::{DurableConfig, DurableStore, Fault, FaultyLayer, UNPERSISTED_SEGMENTS_MAX};

#[test]
fn pending_batches_commit_or_fail_together_and_clears_persist() {
    let dir = fresh_dir("durable-pending-batches");
    run(async move {
        let config = DurableConfig::default();
        let (plan, mut durable) = open_faulty(&dir, config.clone()).await;
        let batch = sets(&mut durable, &[(b"k", b"acknowledged")]);
        durable.commit(batch).await.unwrap();

        // Two batches applied early, then the commit fails: all are gone.
        for value in [&b"early-1"[..], b"early-2"] {
            let batch = sets(&mut durable, &[(b"k", value), (b"other", value)]);
            durable.apply_pending(batch).unwrap();
        }
        assert_eq!(durable.store().get(b"k"), Some(&b"early-2"[..]));
        plan.inject(Fault::Sync(libc::ENOSPC));
        let error = durable.commit_pending().await.unwrap_err();
        assert!(is_disk_error(&error), "{error}");
        assert_eq!(durable.store().get(b"k"), Some(&b"acknowledged"[..]));
        assert_eq!(durable.store().get(b"other"), None);
        assert_eq!(durable.unpersisted_segments(), 0);

        // The pending limit is enforced, and a commit makes them durable.
        for i in 0..UNPERSISTED_SEGMENTS_MAX {
            let key = format!("pending-{i}");
            let batch = sets(&mut durable, &[(key.as_bytes(), b"v")]);
            durable.apply_pending(batch).unwrap();
        }
        assert!(!durable.pending_room());
        let batch = sets(&mut durable, &[(b"refused", b"v")]);
        assert!(durable.apply_pending(batch).is_err());
        let batch = sets(&mut durable, &[(b"last", b"v")]);
        durable.commit(batch).await.unwrap();
        assert_eq!(durable.unpersisted_segments(), 0);

        // A clear in memory, then a write: the file follows at the commit.
        durable.clear_in_memory();
        assert!(durable.rewrite_pending());
        let batch = sets(&mut durable, &[(b"after-clear", b"v")]);
        durable.commit(batch).await.unwrap();
        assert!(!durable.rewrite_pending());
        drop(durable);

        let (durable, _) =
            DurableStore::open_with(FaultyLayer::default(), &dir, 0, config, store_config())
                .await
                .unwrap();
        assert_eq!(durable.store().get(b"after-clear"), Some(&b"v"[..]));
        assert_eq!(durable.store().get(b"k"), None, "the clear was persisted");
        assert_eq!(durable.store().get(b"pending-0"), None);
        assert_eq!(durable.store().len(), 1);
    });
}
