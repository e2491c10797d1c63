//! A bit flipped anywhere in a segment file is detected and never served:
//! before the tail the store refuses to open, naming file and offset; in
//! the last commit it reads as a torn tail and that commit is cut. Tolerant
//! mode keeps everything before the damage, reports what it dropped and
//! saves the dropped bytes aside.

mod durable_support;

use durable_support::{fresh_dir, run, sets, store_config};
use std::path::PathBuf;
use tessera_engine::{DataDir, DurableConfig, DurableStore, PersistError};

const COMMITS: usize = 4;

fn value(commit: usize) -> Vec<u8> {
    format!("value-of-commit-{commit}-").repeat(40).into_bytes()
}

#[test]
fn flipped_bits_are_detected_and_never_served() {
    let root = fresh_dir("durable-bit-flips");
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let strict = DurableConfig::default();
        let tolerant = DurableConfig {
            tolerant: true,
            ..DurableConfig::default()
        };
        let (mut durable, _) = DurableStore::open(&data_dir, 0, strict.clone(), store_config())
            .await
            .unwrap();
        let mut ends = Vec::new();
        for commit in 0..COMMITS {
            let key = format!("key-{commit}").into_bytes();
            let value = value(commit);
            let batch = sets(&mut durable, &[(&key, &value)]);
            durable.commit(batch).await.unwrap();
            ends.push(durable.file_bytes());
        }
        drop(durable);
        let path: PathBuf = std::fs::read_dir(data_dir.core_dir(0))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let image = std::fs::read(&path).unwrap();
        let last_commit_start = ends[COMMITS - 2];

        let mut refused = 0;
        for at in (0..image.len()).step_by(61) {
            let mut flipped = image.clone();
            flipped[at] ^= 1 << (at % 8);
            std::fs::write(&path, &flipped).unwrap();
            match DurableStore::open(&data_dir, 0, strict.clone(), store_config()).await {
                Err(error) => {
                    assert!(
                        (at as u64) < last_commit_start,
                        "flip at {at} in the tail refused: {error}"
                    );
                    match &error {
                        PersistError::ChecksumMismatch { file, offset, .. }
                        | PersistError::Corrupted { file, offset, .. } => {
                            assert_eq!(file, &path);
                            assert!(
                                *offset <= at as u64 + 4096,
                                "flip at {at} reported at {offset}"
                            );
                        }
                        other => panic!("flip at {at}: unexpected {other}"),
                    }
                    // Refusing touched nothing.
                    assert_eq!(std::fs::read(&path).unwrap(), flipped);
                    refused += 1;
                }
                Ok((durable, report)) => {
                    assert!((at as u64) >= last_commit_start, "flip at {at} accepted");
                    assert_eq!(report.segments as usize, COMMITS - 1);
                    for commit in 0..COMMITS - 1 {
                        let key = format!("key-{commit}").into_bytes();
                        assert_eq!(durable.store().get(&key), Some(&value(commit)[..]));
                    }
                    assert_eq!(
                        durable
                            .store()
                            .get(format!("key-{}", COMMITS - 1).as_bytes()),
                        None
                    );
                }
            }
        }
        assert!(refused > 0);

        // Tolerant mode: damage in the second commit keeps the first.
        let mut flipped = image.clone();
        let at = ends[0] as usize + 100;
        flipped[at] ^= 0x04;
        std::fs::write(&path, &flipped).unwrap();
        let (durable, report) = DurableStore::open(&data_dir, 0, tolerant, store_config())
            .await
            .unwrap();
        let dropped = report.dropped.clone().expect("damage reported");
        assert_eq!(dropped.offset, ends[0]);
        assert_eq!(dropped.bytes, ends[COMMITS - 1] - ends[0]);
        assert_eq!(dropped.seq_last, Some(COMMITS as u64));
        assert_eq!(durable.store().get(b"key-0"), Some(&value(0)[..]));
        assert_eq!(durable.store().get(b"key-1"), None);
        let saved = report.dropped_saved_to.expect("dropped bytes saved");
        assert_eq!(std::fs::read(saved).unwrap(), &flipped[ends[0] as usize..]);
    });
}
