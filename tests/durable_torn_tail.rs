//! A write torn at any byte of the last segment: the store reopens with
//! every earlier commit, the tail is cut back to the last valid footer and
//! reported, and the torn commit is never served.
//!
//! Each reopen fdatasyncs the cut file, so by default this walks every 13th
//! byte plus every byte of the footer and of each block edge;
//! `TESSERA_TORN_STRIDE=1` walks every byte (the recovery scanner's unit
//! tests cover every byte of the in-memory image on every run).

mod durable_support;

use durable_support::{fresh_dir, run, sets, store_config};
use std::path::PathBuf;
use tessera_engine::{DataDir, DurableConfig, DurableStore, FOOTER_BYTES};

fn segment_file(dir: &std::path::Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tsr"))
        .collect();
    assert_eq!(files.len(), 1);
    files.pop().unwrap()
}

#[test]
fn torn_tail_at_every_byte_of_the_last_segment() {
    let root = fresh_dir("durable-torn-tail");
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let core_dir = data_dir.core_dir(0);
        let config = DurableConfig::default();
        let (mut durable, _) = DurableStore::open(&data_dir, 0, config.clone(), store_config())
            .await
            .unwrap();
        let batch = sets(&mut durable, &[(b"a", b"first"), (b"b", b"first")]);
        durable.commit(batch).await.unwrap();
        let batch = sets(&mut durable, &[(b"b", b"second")]);
        durable.commit(batch).await.unwrap();
        let acknowledged_end = durable.file_bytes();
        let batch = sets(&mut durable, &[(b"a", b"torn"), (b"c", b"torn")]);
        durable.commit(batch).await.unwrap();
        let full_end = durable.file_bytes();
        drop(durable);
        let path = segment_file(&core_dir);
        let image = std::fs::read(&path).unwrap();
        assert_eq!(image.len() as u64, full_end);

        let stride: u64 = std::env::var("TESSERA_TORN_STRIDE")
            .ok()
            .map_or(13, |v| v.parse().expect("stride"));
        let footer_start = full_end - FOOTER_BYTES as u64;
        let interesting = |cut: u64| {
            (cut - acknowledged_end) % stride == 0
                || cut >= footer_start
                || matches!(cut % 4096, 0 | 1 | 4095)
        };
        for cut in (acknowledged_end..full_end).filter(|&cut| interesting(cut)) {
            std::fs::write(&path, &image[..cut as usize]).unwrap();
            let (durable, report) =
                DurableStore::open(&data_dir, 0, config.clone(), store_config())
                    .await
                    .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(
                report.torn_tail_bytes,
                cut - acknowledged_end,
                "cut at {cut}"
            );
            assert_eq!(report.segments, 2);
            let store = durable.store();
            assert_eq!(store.get(b"a"), Some(&b"first"[..]));
            assert_eq!(store.get(b"b"), Some(&b"second"[..]));
            assert_eq!(store.get(b"c"), None);
            assert_eq!(durable.file_bytes(), acknowledged_end);
            drop(durable);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), acknowledged_end);
        }
        // The whole file opens whole.
        std::fs::write(&path, &image).unwrap();
        let (durable, report) = DurableStore::open(&data_dir, 0, config, store_config())
            .await
            .unwrap();
        assert_eq!(report.torn_tail_bytes, 0);
        assert_eq!(durable.store().get(b"c"), Some(&b"torn"[..]));
    });
}
