//! Async mode without any maintenance: the stack reaches the engine's
//! limit, whose write-stall merge must never take in unpersisted segments;
//! they are flushed first, and every batch is there after reopening.

mod durable_support;

use durable_support::{fresh_dir, run, sets, store_config};
use tessera_engine::{DataDir, Durability, DurableConfig, DurableStore, STACK_HEIGHT_LIMIT};

#[test]
fn writes_past_the_stack_limit_without_maintenance() {
    let root = fresh_dir("durable-async-stall");
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let config = DurableConfig {
            durability: Durability::Async {
                flush_interval_ms: 60_000,
            },
            ..DurableConfig::default()
        };
        let (mut durable, _) = DurableStore::open(&data_dir, 0, config.clone(), store_config())
            .await
            .unwrap();
        let batches = STACK_HEIGHT_LIMIT * 3;
        for i in 0..batches {
            let key = format!("key-{i:04}").into_bytes();
            let batch = sets(&mut durable, &[(&key, b"v")]);
            durable.commit(batch).await.unwrap();
        }
        durable.flush().await.unwrap();
        assert_eq!(durable.store().len(), batches);
        drop(durable);
        let (durable, _) = DurableStore::open(&data_dir, 0, config, store_config())
            .await
            .unwrap();
        assert_eq!(durable.store().len(), batches);
    });
}
