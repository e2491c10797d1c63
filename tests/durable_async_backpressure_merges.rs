//! Async mode at its pending limit: the write that finds every pending slot
//! taken waits for the flight, and the core merges the written segments
//! below meanwhile instead of sleeping. Before, a bulk ingest's thread slept
//! through 30 % of its wall time there while its merges waited for later.

mod durable_support;

use durable_support::{async_config, commit_numbered, dump, fresh_dir, open_core0, run};
use tessera_engine::UNPERSISTED_SEGMENTS_MAX;

#[test]
fn a_write_held_back_by_a_flight_merges_meanwhile() {
    let root = fresh_dir("durable-async-backpressure-merges");
    run(async move {
        // A flight only once the pending limit is full; never by the clock.
        let config = async_config(60_000);
        let mut durable = open_core0(&root, config.clone()).await;
        // Twelve written segments and no maintenance: more than the stack
        // height bound (8) waiting for the merger.
        commit_numbered(&mut durable, 0..12).await;
        durable.flush().await.unwrap();
        assert_eq!(durable.store().height(), 12);
        // The pending limit fills, and the last of these starts a flight.
        let pending_end = 12 + UNPERSISTED_SEGMENTS_MAX;
        commit_numbered(&mut durable, 12..pending_end).await;
        assert_eq!(durable.unpersisted_segments(), UNPERSISTED_SEGMENTS_MAX);
        let merges_before = durable.store().merges_completed();
        assert!(!durable.store().stats().merge_in_progress);
        // No room: this write waits for the flight to land.
        commit_numbered(&mut durable, pending_end..pending_end + 1).await;
        assert_eq!(durable.unpersisted_segments(), 1, "the flight landed");
        let stats = durable.store().stats();
        assert!(
            stats.merges_completed > merges_before || stats.merge_in_progress,
            "the core slept through the wait instead of merging"
        );
        // Nothing lost or reordered by merging under the flight.
        let expected = dump(&durable);
        assert_eq!(expected.len(), pending_end + 1);
        durable.flush().await.unwrap();
        drop(durable);
        let durable = open_core0(&root, config).await;
        assert_eq!(dump(&durable), expected);
    });
}
