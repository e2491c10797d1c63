//! Async mode's flights: a group handed to a task of its own lands without
//! the core waiting for it; a failed flight's segments are written again;
//! a store dropped mid-flight (a crash staged in this process) reopens
//! cleanly; a light load still waits for the interval.

mod durable_support;

use std::time::{Duration, Instant};

use durable_support::{
    commit_numbered, dump, fresh_dir, numbered_key, open_faulty, run, store_config,
};
use tessera_engine::{
    DmaLayer, Durability, DurableConfig, DurableStore, Fault, FileLayer, FLIGHT_SEGMENTS_MIN,
};

/// How long a test waits for a flight before it calls the flight lost.
const LANDING_TIMEOUT: Duration = Duration::from_secs(10);

fn config(flush_interval_ms: u64, flight_segments_min: usize) -> DurableConfig {
    DurableConfig {
        durability: Durability::Async { flush_interval_ms },
        flight_segments_min,
        ..DurableConfig::default()
    }
}

/// Maintenance steps (as a server runs them) until nothing waits for the
/// disk; the steps themselves never wait for it.
async fn step_until_persisted<L: FileLayer>(durable: &mut DurableStore<L>) {
    let deadline = Instant::now() + LANDING_TIMEOUT;
    while durable.unpersisted_segments() > 0 {
        assert!(Instant::now() < deadline, "the flight never landed");
        // Errors are retried by the next step, as the server does.
        let _ = durable.maintenance_step(Duration::from_micros(200)).await;
        glommio::timer::sleep(Duration::from_micros(100)).await;
    }
}

async fn reopen(dir: &std::path::Path) -> DurableStore<DmaLayer> {
    let (durable, report) =
        DurableStore::open_with(DmaLayer, dir, 0, config(60_000, 1), store_config())
            .await
            .unwrap_or_else(|e| panic!("reopen: {e}"));
    assert!(report.dropped.is_none());
    durable
}

#[test]
fn enough_waiting_segments_fly_without_a_flush_and_land_durable() {
    let dir = fresh_dir("durable-async-flight-lands");
    run(async move {
        // An interval no test outlives: only the segment count starts it.
        let (plan, mut durable) = open_faulty(&dir, config(60_000, FLIGHT_SEGMENTS_MIN)).await;
        commit_numbered(&mut durable, 0..FLIGHT_SEGMENTS_MIN - 1).await;
        assert_eq!(durable.file_commits(), 0, "below the minimum, no flight");
        commit_numbered(&mut durable, FLIGHT_SEGMENTS_MIN - 1..FLIGHT_SEGMENTS_MIN).await;
        step_until_persisted(&mut durable).await;
        assert_eq!(durable.file_commits(), FLIGHT_SEGMENTS_MIN as u64);
        assert!(plan.writes_in_flight_max() > 1, "one write at a time");
        // A crash now loses nothing the flight carried.
        drop(durable);
        let durable = reopen(&dir).await;
        assert_eq!(dump(&durable).len(), FLIGHT_SEGMENTS_MIN);
    });
}

#[test]
fn a_failed_flight_is_written_again_and_nothing_is_lost() {
    let root = fresh_dir("durable-async-flight-fails");
    run(async move {
        for (case, fault) in [
            Fault::Write(libc::ENOSPC),
            Fault::TornWrite { bytes: 100 },
            Fault::Sync(libc::EIO),
        ]
        .into_iter()
        .enumerate()
        {
            let dir = root.join(format!("case{case}"));
            std::fs::create_dir_all(&dir).unwrap();
            let (plan, mut durable) = open_faulty(&dir, config(60_000, 2)).await;
            plan.inject_after(1, fault);
            // Writes go on being acknowledged while the flight fails.
            commit_numbered(&mut durable, 0..6).await;
            step_until_persisted(&mut durable).await;
            assert_eq!(plan.fired(), 1, "{fault:?}");
            drop(durable);
            let durable = reopen(&dir).await;
            let keys: Vec<Vec<u8>> = dump(&durable).into_iter().map(|(k, _)| k).collect();
            assert_eq!(
                keys,
                (0..6).map(numbered_key).collect::<Vec<_>>(),
                "{fault:?}"
            );
        }
    });
}

#[test]
fn a_store_dropped_mid_flight_reopens_with_a_prefix_of_its_commits() {
    let dir = fresh_dir("durable-async-flight-dropped");
    run(async move {
        let mut durable = reopen(&dir).await;
        commit_numbered(&mut durable, 0..3).await;
        durable.flush().await.unwrap();
        // flight_segments_min = 1: every commit finds a flight on its way
        // or starts one; drop while the last may still be writing.
        commit_numbered(&mut durable, 3..40).await;
        drop(durable);
        let durable = reopen(&dir).await;
        let keys: Vec<Vec<u8>> = dump(&durable).into_iter().map(|(k, _)| k).collect();
        assert!(keys.len() >= 3, "the flushed commits survive");
        assert_eq!(keys, (0..keys.len()).map(numbered_key).collect::<Vec<_>>());
    });
}

#[test]
fn a_light_load_waits_half_an_interval_before_its_flight() {
    let dir = fresh_dir("durable-async-flight-interval");
    run(async move {
        let flush_interval_ms = 40;
        let (_plan, mut durable) = open_faulty(
            &dir,
            config(flush_interval_ms, tessera_engine::UNPERSISTED_SEGMENTS_MAX),
        )
        .await;
        let started = Instant::now();
        commit_numbered(&mut durable, 0..1).await;
        durable
            .maintenance_step(Duration::from_micros(200))
            .await
            .unwrap();
        if started.elapsed() < Duration::from_millis(flush_interval_ms / 2) {
            assert_eq!(durable.file_commits(), 0, "a lone write coalesces");
        }
        step_until_persisted(&mut durable).await;
        assert!(started.elapsed() >= Duration::from_millis(flush_interval_ms / 2));
        assert_eq!(durable.file_commits(), 1);
    });
}

#[test]
fn a_flight_minimum_out_of_range_is_refused_and_the_store_keeps_its_data() {
    let dir = fresh_dir("durable-async-flight-config");
    run(async move {
        let mut durable = reopen(&dir).await;
        commit_numbered(&mut durable, 0..3).await;
        durable.close().await.unwrap();
        let before = listing(&dir);
        for bad in [0, tessera_engine::UNPERSISTED_SEGMENTS_MAX + 1] {
            let error =
                DurableStore::open_with(DmaLayer, &dir, 0, config(60_000, bad), store_config())
                    .await
                    .err()
                    .unwrap_or_else(|| panic!("flight_segments_min {bad} accepted"));
            assert!(
                matches!(
                    error,
                    tessera_engine::PersistError::InvalidConfig {
                        field: "flight_segments_min",
                        ..
                    }
                ),
                "{error}"
            );
            assert!(error.to_string().contains("flight_segments_min"), "{error}");
        }
        let after = listing(&dir);
        assert_eq!(before, after, "a refused open touches no file");
        let durable = reopen(&dir).await;
        assert_eq!(dump(&durable).len(), 3);
    });
}

/// The directory's files with their sizes, by name.
fn listing(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, entry.metadata().unwrap().len())
        })
        .collect();
    files.sort();
    files
}
