//! Disk errors in sync mode: the failing batch is reported and never
//! served, the store stays readable, and writes succeed again once space
//! returns; nothing acknowledged is lost.

mod durable_support;

use durable_support::{fresh_dir, is_disk_error, open_faulty, run, sets, store_config};
use tessera_engine::{DurableConfig, DurableStore, Fault, FaultyLayer};

#[test]
fn sync_mode_failed_batches_are_not_served_and_writes_resume() {
    let dir = fresh_dir("durable-store-disk-errors-sync");
    run(async move {
        let config = DurableConfig::default();
        let (plan, mut durable) = open_faulty(&dir, config.clone()).await;
        let batch = sets(&mut durable, &[(b"k", b"acknowledged")]);
        durable.commit(batch).await.unwrap();

        for fault in [
            Fault::Write(libc::ENOSPC),
            Fault::Sync(libc::ENOSPC),
            Fault::Write(libc::EIO),
            Fault::Sync(libc::EIO),
            Fault::TornWrite { bytes: 4096 },
        ] {
            plan.inject(fault);
            let batch = sets(&mut durable, &[(b"k", b"failed"), (b"new", b"failed")]);
            let error = durable.commit(batch).await.unwrap_err();
            assert!(is_disk_error(&error), "{fault:?}: {error}");
            assert_eq!(
                durable.store().get(b"k"),
                Some(&b"acknowledged"[..]),
                "{fault:?}"
            );
            assert_eq!(durable.store().get(b"new"), None);
            assert_eq!(durable.store().len(), 1);
        }
        plan.inject_always(Fault::Write(libc::ENOSPC));
        let batch = sets(&mut durable, &[(b"k", b"failed")]);
        assert!(durable.commit(batch).await.is_err());
        plan.clear();
        let batch = sets(&mut durable, &[(b"k", b"after"), (b"new", b"after")]);
        durable.commit(batch).await.unwrap();
        drop(durable);

        let (durable, report) =
            DurableStore::open_with(FaultyLayer::default(), &dir, 0, config, store_config())
                .await
                .unwrap();
        assert_eq!(report.segments, 2);
        assert_eq!(durable.store().get(b"k"), Some(&b"after"[..]));
        assert_eq!(durable.store().get(b"new"), Some(&b"after"[..]));
    });
}
