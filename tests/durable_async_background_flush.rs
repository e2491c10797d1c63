//! Async mode flushes in the background: once the interval has passed, a
//! flush task writes the pending segments while batches keep being applied;
//! segments applied meanwhile stay pending until the next flush; a flush
//! that fails leaves its segments pending, and the next one persists them.

mod durable_support;

use std::time::Duration;

use durable_support::{fresh_dir, run, sets, store_config};
use glommio::timer::sleep;
use tessera_engine::{Durability, DurableConfig, DurableStore, Fault, FaultPlan, FaultyLayer};

async fn write<L: tessera_engine::FileLayer>(durable: &mut DurableStore<L>, i: usize) {
    let key = format!("key-{i:04}").into_bytes();
    let batch = sets(durable, &[(&key, b"value")]);
    durable.commit(batch).await.unwrap();
}

#[test]
fn flushes_run_alongside_commits_and_retry_after_errors() {
    let dir = fresh_dir("durable-async-background-flush");
    run(async move {
        let plan = FaultPlan::new();
        let config = DurableConfig {
            durability: Durability::Async {
                flush_interval_ms: 2,
            },
            ..DurableConfig::default()
        };
        let layer = FaultyLayer { plan: plan.clone() };
        let (mut durable, _) =
            DurableStore::open_with(layer, &dir, 0, config.clone(), store_config())
                .await
                .unwrap();
        write(&mut durable, 0).await;
        write(&mut durable, 1).await;
        assert_eq!(durable.unpersisted_segments(), 2);
        sleep(Duration::from_millis(5)).await;
        // Due: this commit hands the three pending segments to a flush task
        // and returns at once.
        write(&mut durable, 2).await;
        write(&mut durable, 3).await;
        let mut steps = 0;
        while durable.unpersisted_segments() > 1 {
            sleep(Duration::from_millis(1)).await;
            durable
                .maintenance_step(Duration::from_micros(100))
                .await
                .unwrap();
            steps += 1;
            assert!(steps < 5_000, "the flush never landed");
        }
        // The batch applied while the flush ran is still pending.
        assert_eq!(durable.unpersisted_segments(), 1);

        // A flush that fails keeps its segments pending.
        plan.inject_always(Fault::Sync(libc::EIO));
        sleep(Duration::from_millis(5)).await;
        write(&mut durable, 4).await;
        let mut failed = false;
        for _ in 0..5_000 {
            sleep(Duration::from_millis(1)).await;
            if durable
                .maintenance_step(Duration::from_micros(100))
                .await
                .is_err()
            {
                failed = true;
                break;
            }
        }
        assert!(failed, "the failing flush was reported");
        assert_eq!(durable.unpersisted_segments(), 2);
        plan.clear();
        durable.flush().await.unwrap();
        assert_eq!(durable.unpersisted_segments(), 0);
        drop(durable);

        let (durable, _) =
            DurableStore::open_with(FaultyLayer::default(), &dir, 0, config, store_config())
                .await
                .unwrap();
        assert_eq!(durable.store().len(), 5);
    });
}
