//! Async mode: acknowledged on apply, durable once flushed; what was never
//! flushed may be lost by a crash, and clear is durable.

mod durable_support;

use durable_support::{dump, fresh_dir, run, sets, store_config};
use tessera_engine::{DataDir, Durability, DurableConfig, DurableStore};

#[test]
fn async_mode_persists_on_flush_and_clear_is_durable() {
    let root = fresh_dir("durable-reopen-async");
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let config = DurableConfig {
            durability: Durability::Async {
                flush_interval_ms: 10_000,
            },
            ..DurableConfig::default()
        };
        let (mut durable, _) = DurableStore::open(&data_dir, 0, config.clone(), store_config())
            .await
            .unwrap();
        for i in 0..5u8 {
            let batch = sets(&mut durable, &[(&[b'a', i], b"v")]);
            durable.commit(batch).await.unwrap();
        }
        assert_eq!(durable.unpersisted_segments(), 5);
        durable.flush().await.unwrap();
        assert_eq!(durable.unpersisted_segments(), 0);
        // Applied but never flushed: an async-mode crash may lose it.
        let batch = sets(&mut durable, &[(b"lost", b"v")]);
        durable.commit(batch).await.unwrap();
        drop(durable);

        let (mut durable, _) = DurableStore::open(&data_dir, 0, config.clone(), store_config())
            .await
            .unwrap();
        assert_eq!(durable.store().len(), 5);
        assert_eq!(durable.store().get(b"lost"), None);
        durable.clear().await.unwrap();
        let batch = sets(&mut durable, &[(b"after-clear", b"v")]);
        durable.commit(batch).await.unwrap();
        // A clean shutdown persists what was applied.
        let batch = sets(&mut durable, &[(b"at-shutdown", b"v")]);
        durable.commit(batch).await.unwrap();
        assert_eq!(
            durable.flush_interval(),
            Some(std::time::Duration::from_secs(10))
        );
        durable.close().await.unwrap();

        let (durable, _) = DurableStore::open(&data_dir, 0, config, store_config())
            .await
            .unwrap();
        assert_eq!(
            dump(&durable),
            vec![
                (b"after-clear".to_vec(), b"v".to_vec()),
                (b"at-shutdown".to_vec(), b"v".to_vec())
            ]
        );
    });
}
