//! The map changes under the client: a slot migrated to another node draws
//! `-MOVED`, which the client follows and uses to refresh its map; a slot in
//! the middle of a migration draws `-ASK`, followed for that request only.

mod peers;

use std::time::Duration;

use peers::{addr, redis_cli, run_glommio, RedisCluster};
use tessera_net::client::{Client, ClientConfig};
use tessera_net::cluster::key_slot;

const PORTS: [u16; 3] = [18021, 18022, 18023];

fn config() -> ClientConfig {
    // No timer refresh during the test: only redirects may change the map.
    ClientConfig {
        tend_interval: Duration::from_secs(3600),
        ..ClientConfig::default()
    }
}

#[test]
fn follows_moved_and_refreshes_then_follows_ask() {
    let cluster = RedisCluster::start(PORTS);
    let moved_key = b"moved:key".to_vec();
    let moved_slot = key_slot(&moved_key);
    let from = cluster.owner_port(moved_slot);
    let to = *PORTS.iter().find(|&&p| p != from).unwrap();
    let ask_key = b"ask:key".to_vec();
    let ask_slot = key_slot(&ask_key);
    let ask_from = cluster.owner_port(ask_slot);
    let ask_to = *PORTS.iter().find(|&&p| p != ask_from).unwrap();

    // Step 1: client with a fresh map writes the key on its owner.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let client_thread = std::thread::spawn(move || {
        run_glommio(move || async move {
            let client = Client::connect(&[addr(PORTS[0])], config())
                .await
                .expect("bootstrap");
            client.set(&moved_key, b"before").await.expect("SET");
            assert_eq!(client.slot_map().owner(moved_slot), Some(addr(from)));
            done_tx.send(()).expect("done");
            // Wait (off the executor) while the test moves the slot.
            let rx = glommio::executor()
                .spawn_blocking(move || {
                    rx.recv().expect("go");
                    rx
                })
                .await;
            // Step 3: the stale map sends to `from`, which answers MOVED.
            let refreshes_before = client.refreshes();
            assert_eq!(
                client.get(&moved_key).await.expect("GET after move"),
                Some(b"before".to_vec())
            );
            assert_eq!(
                client.slot_map().owner(moved_slot),
                Some(addr(to)),
                "MOVED updated the map"
            );
            assert!(
                client.refreshes() > refreshes_before,
                "MOVED triggered a full refresh"
            );
            client
                .set(&moved_key, b"after")
                .await
                .expect("SET after move");
            done_tx.send(()).expect("done");
            // Step 5: ASK while the ask slot is migrating.
            glommio::executor()
                .spawn_blocking(move || rx.recv().expect("go"))
                .await;
            client.set(&ask_key, b"asked").await.expect("SET via ASK");
            assert_eq!(
                client.get(&ask_key).await.expect("GET via ASK"),
                Some(b"asked".to_vec())
            );
            assert_eq!(
                client.slot_map().owner(ask_slot),
                Some(addr(ask_from)),
                "ASK leaves the map alone"
            );
            done_tx.send(()).expect("done");
        })
    });
    // Step 2, once the client has written with its fresh map (migrating
    // sooner races its bootstrap: it would learn the new owner at once):
    // migrate the slot for good.
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("client wrote before the move");
    cluster.migrate_slot(moved_slot, from, to);
    tx.send(()).expect("go");
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("client handled MOVED");
    // Step 4: the write went to the new owner.
    assert_eq!(redis_cli(to, &["GET", "moved:key"]), "after");
    // Step 5: start migrating the ask slot, which holds no keys, so the old
    // owner answers ASK for any key in it.
    let slot_text = ask_slot.to_string();
    assert_eq!(
        redis_cli(
            ask_to,
            &[
                "CLUSTER",
                "SETSLOT",
                &slot_text,
                "IMPORTING",
                &cluster.node_id(ask_from)
            ]
        ),
        "OK"
    );
    assert_eq!(
        redis_cli(
            ask_from,
            &[
                "CLUSTER",
                "SETSLOT",
                &slot_text,
                "MIGRATING",
                &cluster.node_id(ask_to)
            ]
        ),
        "OK"
    );
    tx.send(()).expect("go");
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("client handled ASK");
    client_thread.join().expect("client thread");
    // The ASKed write landed on the importing node, not the old owner.
    assert_eq!(
        redis_cli(ask_to, &["CLUSTER", "COUNTKEYSINSLOT", &slot_text]),
        "1"
    );
    assert_eq!(
        redis_cli(ask_from, &["CLUSTER", "COUNTKEYSINSLOT", &slot_text]),
        "0"
    );
}
