//! Async mode without any maintenance: the stack reaches the engine's
//! limit, whose write-stall merge must never take in unpersisted segments;
//! they are flushed first, and every batch is there after reopening.

mod durable_support;

use durable_support::{async_config, fresh_dir, open_core0, run, sets};
use tessera_engine::STACK_HEIGHT_LIMIT;

#[test]
fn writes_past_the_stack_limit_without_maintenance() {
    let root = fresh_dir("durable-async-stall");
    run(async move {
        let config = async_config(60_000);
        let mut durable = open_core0(&root, config.clone()).await;
        let batches = STACK_HEIGHT_LIMIT * 3;
        for i in 0..batches {
            let key = format!("key-{i:04}").into_bytes();
            let batch = sets(&mut durable, &[(&key, b"v")]);
            durable.commit(batch).await.unwrap();
        }
        durable.flush().await.unwrap();
        assert_eq!(durable.store().len(), batches);
        drop(durable);
        let durable = open_core0(&root, config).await;
        assert_eq!(durable.store().len(), batches);
    });
}
