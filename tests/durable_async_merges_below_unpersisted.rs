//! Async mode merges while batches wait for the disk: the merger takes the
//! segments already written and leaves the unwritten ones (which a disk
//! error could still take back) on top, untouched; nothing is lost on
//! reopen. Before, a durable store merged only right after a flush, and a
//! bulk ingest climbed to the stack limit and stalled every apply.

mod durable_support;

use std::time::Duration;

use durable_support::{async_config, dump, fresh_dir, open_core0, run, sets};
use tessera_engine::DurableStore;

#[test]
fn written_segments_merge_under_unwritten_ones() {
    let root = fresh_dir("durable-async-merges-below");
    run(async move {
        // Never due during the test: only explicit flushes write.
        let config = async_config(60_000);
        let mut durable = open_core0(&root, config.clone()).await;
        let mut next = 0u32;
        let mut commit_batches = |durable: &mut DurableStore, count: usize| {
            let batches: Vec<_> = (0..count)
                .map(|_| {
                    let key = format!("key-{next:05}").into_bytes();
                    next += 1;
                    sets(durable, &[(&key, b"value")])
                })
                .collect();
            batches
        };
        // Twelve written segments, no maintenance yet: a tall stack.
        for batch in commit_batches(&mut durable, 12) {
            durable.commit(batch).await.unwrap();
        }
        durable.flush().await.unwrap();
        // Five more, not written.
        for batch in commit_batches(&mut durable, 5) {
            durable.commit(batch).await.unwrap();
        }
        assert_eq!(durable.unpersisted_segments(), 5);
        let height_before = durable.store().height();
        assert_eq!(height_before, 17);
        let merges_before = durable.store().merges_completed();
        for _ in 0..1000 {
            durable
                .maintenance_step(Duration::from_millis(5))
                .await
                .unwrap();
            if !durable.store().merge_needed() {
                break;
            }
        }
        assert!(
            durable.store().merges_completed() > merges_before,
            "nothing merged while segments waited for the disk"
        );
        assert_eq!(
            durable.unpersisted_segments(),
            5,
            "maintenance flushed instead of merging below"
        );
        assert!(durable.store().height() < height_before);
        let expected = dump(&durable);
        assert_eq!(expected.len(), 17);
        durable.flush().await.unwrap();
        drop(durable);
        let durable = open_core0(&root, config).await;
        assert_eq!(dump(&durable), expected);
    });
}
