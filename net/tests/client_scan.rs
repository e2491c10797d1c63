//! The ordered scan scatters one stream per node and gathers every record
//! in key order; when a node dies mid-scan, its failure is reported with its
//! address and every other node's records still arrive, in order.

mod peers;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use peers::{addr, run_glommio, RedisCluster};
use tessera_net::client::{Client, ClientConfig, ScanItem, ScanOptions};
use tessera_net::cluster::key_slot;

const PORTS: [u16; 3] = [18041, 18042, 18043];
const KEYS: usize = 600;
/// Small pages so a node's records arrive over many round trips.
const PAGE_KEYS: usize = 16;

#[test]
fn gathers_in_order_and_survives_a_dying_node() {
    let mut cluster = RedisCluster::start(PORTS);
    let slot_owners = cluster.slot_owners();
    let keys: Vec<String> = (0..KEYS).map(|i| format!("scan:{i:05}")).collect();
    let owners: BTreeMap<String, u16> = keys
        .iter()
        .map(|k| (k.clone(), slot_owners[usize::from(key_slot(k.as_bytes()))]))
        .collect();
    let victim = PORTS[1];
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let keys_for_client = keys.clone();
    let client_thread = std::thread::spawn(move || {
        run_glommio(move || async move {
            let client = Client::connect(&[addr(PORTS[0])], ClientConfig::default())
                .await
                .expect("bootstrap");
            for key in &keys_for_client {
                client
                    .set(key.as_bytes(), format!("value-of-{key}").as_bytes())
                    .await
                    .expect("SET");
            }
            let options = ScanOptions {
                page_keys: PAGE_KEYS,
                ..ScanOptions::default()
            };
            // A full scan: everything, in order, once, with the right values.
            let mut scan = client.scan(options.clone()).await;
            let mut all = Vec::new();
            while let Some(item) = scan.next().await {
                match item {
                    ScanItem::Record { key, value, node } => all.push((key, value, node)),
                    ScanItem::NodeFailed { node, error } => panic!("{node} failed: {error}"),
                }
            }
            // A range scan: [scan:00100, scan:00200).
            let range = ScanOptions {
                start: Some(b"scan:00100".to_vec()),
                end: Some(b"scan:00200".to_vec()),
                ..options.clone()
            };
            let mut scan = client.scan(range).await;
            let mut ranged = Vec::new();
            while let Some(ScanItem::Record { key, .. }) = scan.next().await {
                ranged.push(String::from_utf8(key).unwrap());
            }
            // A scan during which one node dies.
            let mut scan = client.scan(options).await;
            let mut survived = Vec::new();
            let mut failures: Vec<SocketAddr> = Vec::new();
            let mut victim_records_before_death = 0;
            let mut killed_rx = Some(killed_rx);
            while let Some(item) = scan.next().await {
                match item {
                    ScanItem::Record { key, node, .. } => {
                        if node == addr(victim) {
                            victim_records_before_death += 1;
                        }
                        survived.push((key, node));
                        if survived.len() == 50 {
                            tx.send(()).expect("kill now");
                            let killed = killed_rx.take().expect("killed once");
                            glommio::executor()
                                .spawn_blocking(move || killed.recv().expect("killed"))
                                .await;
                        }
                    }
                    ScanItem::NodeFailed { node, .. } => failures.push(node),
                }
            }
            (all, ranged, survived, failures, victim_records_before_death)
        })
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("scan started");
    cluster.nodes[1].kill();
    killed_tx.send(()).expect("killed");
    let (all, ranged, survived, failures, victim_records) =
        client_thread.join().expect("client thread");

    // Full scan: every key once, strictly increasing, from its owner.
    let scanned: Vec<String> = all
        .iter()
        .map(|(k, _, _)| String::from_utf8(k.clone()).unwrap())
        .collect();
    assert_eq!(scanned, keys, "every key, in order");
    for (key, value, node) in &all {
        let key = String::from_utf8(key.clone()).unwrap();
        assert_eq!(value, format!("value-of-{key}").as_bytes());
        assert_eq!(*node, addr(owners[&key]));
    }
    assert_eq!(ranged, keys[100..200].to_vec());

    // Dying node: reported once, by address; the others lost nothing.
    assert_eq!(failures, vec![addr(victim)]);
    let survived_keys: Vec<String> = survived
        .iter()
        .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
        .collect();
    assert!(
        survived_keys.windows(2).all(|w| w[0] < w[1]),
        "still in order"
    );
    for (key, owner) in &owners {
        if *owner != victim {
            assert!(
                survived_keys.binary_search(key).is_ok(),
                "{key} from a live node was lost"
            );
        }
    }
    let victim_total = owners.values().filter(|&&o| o == victim).count();
    assert!(
        victim_records < victim_total,
        "the victim died mid-scan ({victim_records}/{victim_total})"
    );
}
