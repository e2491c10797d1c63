//! The client bootstraps from one seed of a real three-node Redis Cluster,
//! sends every key straight to the node that owns its slot, and pipelines
//! commands across nodes with results in order.

mod peers;

use peers::{addr, redis_cli, run_glommio, RedisCluster};
use tessera_net::client::{Client, ClientConfig, ClientError, Reply};
use tessera_net::cluster::key_slot;

const PORTS: [u16; 3] = [18011, 18012, 18013];
const KEYS: usize = 200;

#[test]
fn routes_each_key_to_its_owner_and_pipelines() {
    let cluster = RedisCluster::start(PORTS);
    let slot_owners = cluster.slot_owners();
    let owners: Vec<u16> = (0..KEYS)
        .map(|i| slot_owners[usize::from(key_slot(format!("route:{i}").as_bytes()))])
        .collect();
    let moved_seen = run_glommio(|| async {
        // Seed with the last node only: the map must come from CLUSTER SLOTS.
        let client = Client::connect(&[addr(PORTS[2])], ClientConfig::default())
            .await
            .expect("bootstrap");
        let map = client.slot_map();
        assert_eq!(map.nodes().len(), 3);
        assert_eq!(map.unowned_slots(), 0);
        for i in 0..KEYS {
            let key = format!("route:{i}");
            client
                .set(key.as_bytes(), format!("v{i}").as_bytes())
                .await
                .expect("SET");
        }
        for i in 0..KEYS {
            let value = client
                .get(format!("route:{i}").as_bytes())
                .await
                .expect("GET");
            assert_eq!(value, Some(format!("v{i}").into_bytes()));
        }
        assert_eq!(client.get(b"route:missing").await.expect("GET"), None);
        // A refused command is a typed server error, not a redirect.
        let error = client.command(&[b"INCR", b"route:0"]).await.unwrap_err();
        assert!(
            matches!(error, ClientError::Server(ref m) if m.starts_with("ERR")),
            "{error}"
        );
        // Pipeline across nodes: results come back in request order.
        let commands: Vec<Vec<Vec<u8>>> = (0..KEYS)
            .map(|i| vec![b"GET".to_vec(), format!("route:{i}").into_bytes()])
            .collect();
        let results = client.pipeline(&commands).await;
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(
                result.expect("pipelined GET"),
                Reply::Bulk(Some(format!("v{i}").into_bytes()))
            );
        }
        client.refreshes()
    });
    assert_eq!(moved_seen, 0, "a fresh map needs no refresh");
    // Each key landed on its owner (a sample of them, one redis-cli each):
    // asking the owner directly answers
    // without a redirect (redis-cli without -c prints MOVED otherwise).
    for (i, owner) in owners.iter().enumerate().step_by(10) {
        assert_eq!(
            redis_cli(*owner, &["GET", &format!("route:{i}")]),
            format!("v{i}")
        );
    }
}
