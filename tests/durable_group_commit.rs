//! Many writer tasks on one core: their writes coalesce into far fewer
//! segments (and fdatasyncs) than writes, each writer returns only once its
//! write is durable, and all of them are there after reopening.

mod durable_support;

use std::rc::Rc;

use durable_support::{fresh_dir, run, store_config};
use glommio::spawn_local;
use tessera_engine::{DataDir, DurableConfig, DurableStore, GroupCommitter};

const WRITERS: u64 = 64;
const WRITES_PER_WRITER: u64 = 20;

#[test]
fn concurrent_writers_share_commits() {
    let root = fresh_dir("durable-group-commit");
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let (durable, _) =
            DurableStore::open(&data_dir, 0, DurableConfig::default(), store_config())
                .await
                .unwrap();
        let committer = Rc::new(GroupCommitter::new(durable));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let committer = committer.clone();
                spawn_local(async move {
                    for write in 0..WRITES_PER_WRITER {
                        let key = format!("w{writer:03}-{write:03}");
                        committer
                            .write(1, key.len() * 2, |batch| {
                                batch.set(key.as_bytes(), key.as_bytes())
                            })
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let committer = Rc::into_inner(committer).unwrap();
        let durable = committer.into_inner();
        let writes = WRITERS * WRITES_PER_WRITER;
        assert_eq!(durable.store().len() as u64, writes);
        let commits = durable.file_commits();
        assert!(
            commits * 4 < writes,
            "{commits} commits for {writes} writes"
        );
        drop(durable);

        let (durable, _) =
            DurableStore::open(&data_dir, 0, DurableConfig::default(), store_config())
                .await
                .unwrap();
        assert_eq!(durable.store().len() as u64, writes);
        assert_eq!(durable.store().get(b"w063-019"), Some(&b"w063-019"[..]));
    });
}
