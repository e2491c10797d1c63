//! Disk errors in async mode: acknowledged batches stay pending and are
//! persisted by a later flush, and a disk that stays broken stops new writes
//! instead of buffering without bound.

mod durable_support;

use durable_support::{fresh_dir, is_disk_error, open_faulty, run, sets, store_config};
use tessera_engine::{
    Durability, DurableConfig, DurableStore, Fault, FaultyLayer, UNPERSISTED_SEGMENTS_MAX,
};

#[test]
fn async_mode_retries_pending_batches_and_pushes_back_when_full() {
    let dir = fresh_dir("durable-store-disk-errors-async");
    run(async move {
        let config = DurableConfig {
            durability: Durability::Async {
                flush_interval_ms: 60_000,
            },
            ..DurableConfig::default()
        };
        let (plan, mut durable) = open_faulty(&dir, config.clone()).await;
        plan.inject_always(Fault::Sync(libc::ENOSPC));
        for i in 0..UNPERSISTED_SEGMENTS_MAX {
            let key = format!("k{i}").into_bytes();
            let batch = sets(&mut durable, &[(&key, b"v")]);
            durable.commit(batch).await.unwrap();
        }
        assert!(durable.flush().await.is_err());
        assert_eq!(durable.unpersisted_segments(), UNPERSISTED_SEGMENTS_MAX);
        // Full: the next write is refused, not buffered.
        let batch = sets(&mut durable, &[(b"refused", b"v")]);
        assert!(is_disk_error(&durable.commit(batch).await.unwrap_err()));
        assert_eq!(durable.store().get(b"refused"), None);
        assert_eq!(durable.store().len(), UNPERSISTED_SEGMENTS_MAX);

        plan.clear();
        durable.flush().await.unwrap();
        assert_eq!(durable.unpersisted_segments(), 0);
        drop(durable);
        let (durable, _) =
            DurableStore::open_with(FaultyLayer::default(), &dir, 0, config, store_config())
                .await
                .unwrap();
        assert_eq!(durable.store().len(), UNPERSISTED_SEGMENTS_MAX);
    });
}
