//! Against a real two-core Tessera: the client routes every key straight to
//! the core that owns its slot. Checked from the server's side: each core's
//! `CLUSTER KEYSLOT` agrees with the client's hash, each key is readable on
//! its owner without a redirect, the other core answers `-MOVED` to the
//! owner, and each core's `DBSIZE` is exactly the number of keys routed to it.

mod peers;
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;

use peers::{addr, run_glommio};
use support::Server;
use tessera_net::client::{Client, ClientConfig, ClientError, Reply};
use tessera_net::cluster::key_slot;

const BASE_PORT: u16 = 18200;
const KEYS: usize = 1000;

#[test]
fn every_key_lands_on_its_owning_core() {
    let _server = Server::start(BASE_PORT, "client-tessera-routing", &[]);
    let cores = [addr(BASE_PORT), addr(BASE_PORT + 1)];
    run_glommio(move || async move {
        let client = Client::connect(&[cores[0]], ClientConfig::default())
            .await
            .expect("bootstrap");
        let map = client.slot_map();
        let mut nodes = map.nodes().to_vec();
        nodes.sort();
        assert_eq!(nodes, cores, "one node per core");
        let mut routed: HashMap<SocketAddr, i64> = HashMap::new();
        for i in 0..KEYS {
            let key = format!("route:{i}");
            let value = format!("value-{i}");
            client
                .set(key.as_bytes(), value.as_bytes())
                .await
                .expect("SET");
            let slot = key_slot(key.as_bytes());
            let owner = map.owner(slot).expect("every slot is owned");
            *routed.entry(owner).or_default() += 1;
            if i % 50 == 0 {
                for core in cores {
                    let reply = client
                        .command_on(core, &[b"CLUSTER", b"KEYSLOT", key.as_bytes()])
                        .await
                        .expect("CLUSTER KEYSLOT");
                    assert!(matches!(reply, Reply::Integer(s) if s == i64::from(slot)));
                }
            }
            let direct = client
                .command_on(owner, &[b"GET", key.as_bytes()])
                .await
                .expect("the owner answers without a redirect");
            assert!(matches!(direct, Reply::Bulk(Some(ref v)) if v == value.as_bytes()));
            let other = cores.into_iter().find(|&c| c != owner).expect("two cores");
            match client.command_on(other, &[b"GET", key.as_bytes()]).await {
                Err(ClientError::Server(message)) => assert!(
                    message.starts_with(&format!("MOVED {slot} "))
                        && message.ends_with(&owner.port().to_string()),
                    "{message}"
                ),
                other => panic!("the other core must redirect, got {other:?}"),
            }
        }
        for core in cores {
            let reply = client.command_on(core, &[b"DBSIZE"]).await.expect("DBSIZE");
            let expected = routed.get(&core).copied().unwrap_or(0);
            assert!(expected > KEYS as i64 / 4, "both cores get keys");
            assert!(
                matches!(reply, Reply::Integer(n) if n == expected),
                "{core}: {reply:?}, routed {expected}"
            );
        }
    });
}
