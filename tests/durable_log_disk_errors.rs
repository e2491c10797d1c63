//! ENOSPC and EIO on write and on sync, and a write torn by a failure: the
//! failing commit is reported, nothing acknowledged is lost, and the next
//! commit succeeds once the fault is gone.

use std::path::PathBuf;

use glommio::LocalExecutorBuilder;
use tessera_engine::{Fault, FaultPlan, FaultyLayer, PersistError, SegmentLog};

fn test_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("durable-log-disk-errors-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn segment(i: u64) -> (Vec<u64>, Vec<u8>) {
    let meta = vec![i, i * 3];
    let data = vec![i as u8; 100 + i as usize * 977];
    (meta, data)
}

#[test]
fn disk_errors_fail_the_batch_and_lose_nothing_acknowledged() {
    let dir = test_dir("all");
    LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .make()
        .unwrap()
        .run(async move {
            let plan = FaultPlan::new();
            let layer = FaultyLayer { plan: plan.clone() };
            let (mut log, mapped, _) = SegmentLog::open(layer, &dir, 0, false).await.unwrap();
            assert!(mapped.is_empty());
            let mut acknowledged = Vec::new();
            let faults = [
                Fault::Write(libc::ENOSPC),
                Fault::Sync(libc::ENOSPC),
                Fault::Write(libc::EIO),
                Fault::Sync(libc::EIO),
                Fault::TornWrite { bytes: 4096 },
            ];
            let mut i = 0;
            for fault in faults {
                i += 1;
                let (meta, data) = segment(i);
                log.append(&meta, &data).await.unwrap();
                acknowledged.push(i);

                plan.inject(fault);
                i += 1;
                let (meta, data) = segment(i);
                let error = log.append(&meta, &data).await.unwrap_err();
                assert_eq!(plan.fired(), acknowledged.len() as u64);
                if let Fault::Write(libc::ENOSPC) | Fault::Sync(libc::ENOSPC) = fault {
                    assert!(matches!(error, PersistError::DiskFull { .. }), "{error}");
                } else {
                    assert!(matches!(error, PersistError::Io { .. }), "{error}");
                }
                assert!(error.is_retryable());
            }
            // A disk that stays full keeps failing, then recovers.
            plan.inject_always(Fault::Write(libc::ENOSPC));
            for _ in 0..3 {
                let (meta, data) = segment(99);
                assert!(log.append(&meta, &data).await.is_err());
            }
            plan.clear();
            i += 1;
            let (meta, data) = segment(i);
            log.append(&meta, &data).await.unwrap();
            acknowledged.push(i);
            drop(log);

            let (_, mapped, report) = SegmentLog::open(FaultyLayer::default(), &dir, 0, false)
                .await
                .unwrap();
            assert!(report.dropped.is_none());
            let found: Vec<u64> = (0..mapped.len()).map(|s| mapped.segment(s).0[0]).collect();
            assert_eq!(found, acknowledged);
            for s in 0..mapped.len() {
                let (meta, data) = mapped.segment(s);
                let (want_meta, want_data) = segment(meta[0]);
                assert_eq!((meta, data), (&want_meta[..], &want_data[..]));
            }
        });
}
