//! A store reopened from its files serves exactly what it served before:
//! sets, deletes, expiries and ranges, before and after compaction.

mod durable_support;

use durable_support::{dump, fresh_dir, run, sets, store_config};
use std::time::Duration;
use tessera_engine::{DataDir, DurableConfig, DurableStore};

#[test]
fn reopened_store_serves_the_same_records() {
    let root = fresh_dir("durable-reopen-same");
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 2).unwrap();
        let config = DurableConfig::default();
        let (mut durable, report) =
            DurableStore::open(&data_dir, 1, config.clone(), store_config())
                .await
                .unwrap();
        assert_eq!(report.segments, 0);
        for round in 0..40u32 {
            let keys: Vec<Vec<u8>> = (0..50)
                .map(|i| format!("k{:04}", (round * 7 + i) % 300).into_bytes())
                .collect();
            let value = format!("round-{round}").into_bytes();
            let pairs: Vec<(&[u8], &[u8])> = keys.iter().map(|k| (&k[..], &value[..])).collect();
            let batch = sets(&mut durable, &pairs);
            durable.commit(batch).await.unwrap();
            if round % 5 == 0 {
                let mut batch = durable.store_mut().new_batch(2, 64).unwrap();
                batch.delete(format!("k{:04}", round).as_bytes()).unwrap();
                let expire_at_ms = durable.store().now_ms() + 3_600_000;
                batch
                    .set_with_expiry(b"session", b"alive", expire_at_ms)
                    .unwrap();
                durable.commit(batch).await.unwrap();
            }
            durable
                .maintenance_step(Duration::from_millis(5))
                .await
                .unwrap();
        }
        let before = dump(&durable);
        let expiry_before = durable.store().get_entry(b"session").unwrap().expire_at_ms;
        let len_before = durable.store().len();
        drop(durable);

        let (durable, report) = DurableStore::open(&data_dir, 1, config.clone(), store_config())
            .await
            .unwrap();
        assert_eq!(report.torn_tail_bytes, 0);
        assert!(report.segments > 0);
        assert_eq!(dump(&durable), before);
        assert_eq!(durable.store().len(), len_before);
        assert_eq!(
            durable.store().get_entry(b"session").unwrap().expire_at_ms,
            expiry_before
        );
        drop(durable);

        // Compaction keeps everything and shrinks the file.
        let (mut durable, _) = DurableStore::open(&data_dir, 1, config.clone(), store_config())
            .await
            .unwrap();
        let file_before = durable.file_bytes();
        durable.store_mut().compact();
        durable.compact().await.unwrap();
        assert!(durable.file_bytes() < file_before);
        drop(durable);
        let (durable, report) = DurableStore::open(&data_dir, 1, config, store_config())
            .await
            .unwrap();
        assert_eq!(report.segments, 1);
        assert_eq!(dump(&durable), before);
        let files = std::fs::read_dir(data_dir.core_dir(1)).unwrap().count();
        assert_eq!(files, 1, "the compacted-away file is gone");
    });
}
