//! Async mode: acknowledged on apply, durable once flushed; what was never
//! flushed may be lost by a crash, and clear is durable.

mod durable_support;

use durable_support::{async_config, dump, fresh_dir, open_core0, run, sets};

#[test]
fn async_mode_persists_on_flush_and_clear_is_durable() {
    let root = fresh_dir("durable-reopen-async");
    run(async move {
        let config = async_config(10_000);
        let mut durable = open_core0(&root, config.clone()).await;
        for i in 0..5u8 {
            let batch = sets(&mut durable, &[(&[b'a', i], b"v")]);
            durable.commit(batch).await.unwrap();
        }
        assert_eq!(durable.unpersisted_segments(), 5);
        durable.flush().await.unwrap();
        assert_eq!(durable.unpersisted_segments(), 0);
        // Applied but never flushed: an async-mode crash may lose it.
        let batch = sets(&mut durable, &[(b"lost", b"v")]);
        durable.commit(batch).await.unwrap();
        drop(durable);

        let mut durable = open_core0(&root, config.clone()).await;
        assert_eq!(durable.store().len(), 5);
        assert_eq!(durable.store().get(b"lost"), None);
        durable.clear().await.unwrap();
        let batch = sets(&mut durable, &[(b"after-clear", b"v")]);
        durable.commit(batch).await.unwrap();
        // A clean shutdown persists what was applied.
        let batch = sets(&mut durable, &[(b"at-shutdown", b"v")]);
        durable.commit(batch).await.unwrap();
        assert_eq!(
            durable.flush_interval(),
            Some(std::time::Duration::from_secs(10))
        );
        durable.close().await.unwrap();

        let durable = open_core0(&root, config).await;
        assert_eq!(
            dump(&durable),
            vec![
                (b"after-clear".to_vec(), b"v".to_vec()),
                (b"at-shutdown".to_vec(), b"v".to_vec())
            ]
        );
    });
}
