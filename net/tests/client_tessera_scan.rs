//! The ordered scan against real Tessera servers, which it walks with the
//! native `TRANGE` (one page per core at a time, merged across cores).
//!
//! With Tessera a core is a thread of one process, so one core can't be
//! killed alone. The dying-node case is provoked with two independent
//! two-core Tessera servers scanned as one node list
//! ([`ScanOptions::nodes`]): A's cores and B's cores, with the keys spread
//! over both. Killing B mid-scan must report each of B's cores by its own
//! address, once, while every one of A's records still arrives, in order.
//! A third scan adds a plain `redis-server` to the list: that node falls
//! back to SCAN + sort and its records merge into the same ordered stream.

mod peers;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use peers::{addr, run_glommio, SingleRedis};
use support::Server;
use tessera_net::client::{Client, ClientConfig, ScanItem, ScanMethod, ScanOptions};
use tessera_net::cluster::key_slot;

const A_PORT: u16 = 18220;
const B_PORT: u16 = 18230;
const REDIS_PORT: u16 = 18240;
const KEYS: usize = 800;
/// Small pages so each core's records arrive over many round trips.
const PAGE_KEYS: usize = 16;

type Record = (String, Vec<u8>, SocketAddr);

fn records(items: Vec<ScanItem>) -> (Vec<Record>, Vec<SocketAddr>) {
    let mut records = Vec::new();
    let mut failures = Vec::new();
    for item in items {
        match item {
            ScanItem::Record { key, value, node } => {
                records.push((String::from_utf8(key).unwrap(), value, node))
            }
            ScanItem::NodeFailed { node, .. } => failures.push(node),
        }
    }
    (records, failures)
}

#[test]
fn trange_scan_merges_cores_and_survives_a_dying_server() {
    let server_a = Server::start(A_PORT, "client-tessera-scan-a", &[]);
    let mut server_b = Some(Server::start(B_PORT, "client-tessera-scan-b", &[]));
    let redis = SingleRedis::start(REDIS_PORT);
    let a_cores = [addr(A_PORT), addr(A_PORT + 1)];
    let b_cores = [addr(B_PORT), addr(B_PORT + 1)];
    // Even keys live on A, odd keys on B, so the merge interleaves all four
    // cores; each key's owner is the core its slot maps to in its server.
    let keys: Vec<String> = (0..KEYS).map(|i| format!("scan:{i:05}")).collect();
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let keys_for_client = keys.clone();
    let client_thread = std::thread::spawn(move || {
        run_glommio(move || async move {
            let client_a = Client::connect(&[a_cores[0]], ClientConfig::default())
                .await
                .expect("bootstrap A");
            let client_b = Client::connect(&[b_cores[0]], ClientConfig::default())
                .await
                .expect("bootstrap B");
            let mut owners = BTreeMap::new();
            for (i, key) in keys_for_client.iter().enumerate() {
                let client = if i % 2 == 0 { &client_a } else { &client_b };
                let value = format!("value-of-{key}");
                client
                    .set(key.as_bytes(), value.as_bytes())
                    .await
                    .expect("SET");
                let owner = client.slot_map().owner(key_slot(key.as_bytes())).unwrap();
                owners.insert(key.clone(), owner);
            }
            let all_cores: Vec<SocketAddr> = a_cores.iter().chain(&b_cores).copied().collect();
            let options = ScanOptions {
                page_keys: PAGE_KEYS,
                nodes: Some(all_cores.clone()),
                ..ScanOptions::default()
            };
            let collect = |options: ScanOptions| {
                let client = client_a.clone();
                async move {
                    let mut scan = client.scan(options).await;
                    let mut items = Vec::new();
                    while let Some(item) = scan.next().await {
                        items.push(item);
                    }
                    items
                }
            };
            // Every core is walked with TRANGE.
            let scan = client_a.scan(options.clone()).await;
            for core in &all_cores {
                assert_eq!(scan.method(*core), Some(ScanMethod::Trange), "{core}");
            }
            drop(scan);
            let full = collect(options.clone()).await;
            let ranged = collect(ScanOptions {
                start: Some(b"scan:00101".to_vec()),
                end: Some(b"scan:00300".to_vec()),
                ..options.clone()
            })
            .await;

            // Mixed with a plain Redis node: it falls back to SCAN + sort.
            client_a
                .command_on(addr(REDIS_PORT), &[b"SET", b"scan:00000x", b"from-redis"])
                .await
                .expect("SET on redis");
            let mixed_options = ScanOptions {
                nodes: Some(vec![a_cores[0], a_cores[1], addr(REDIS_PORT)]),
                ..options.clone()
            };
            let scan = client_a.scan(mixed_options.clone()).await;
            assert_eq!(scan.method(addr(REDIS_PORT)), Some(ScanMethod::ScanSort));
            assert_eq!(scan.method(a_cores[0]), Some(ScanMethod::Trange));
            drop(scan);
            let mixed = collect(mixed_options).await;

            // B dies after 100 records.
            let mut scan = client_a.scan(options).await;
            let mut dying = Vec::new();
            let mut killed_rx = Some(killed_rx);
            while let Some(item) = scan.next().await {
                dying.push(item);
                if dying.len() == 100 {
                    kill_tx.send(()).expect("kill now");
                    let killed = killed_rx.take().expect("killed once");
                    glommio::executor()
                        .spawn_blocking(move || killed.recv().expect("killed"))
                        .await;
                }
            }
            (owners, full, ranged, mixed, dying)
        })
    });
    kill_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("scan started");
    drop(server_b.take());
    killed_tx.send(()).expect("killed");
    let (owners, full, ranged, mixed, dying) = client_thread.join().expect("client thread");
    drop(server_a);
    drop(redis);

    // Full scan: every key once, in order, with its value, from its core.
    let (full, failures) = records(full);
    assert!(failures.is_empty(), "{failures:?}");
    let scanned: Vec<&String> = full.iter().map(|(k, _, _)| k).collect();
    assert_eq!(
        scanned,
        keys.iter().collect::<Vec<_>>(),
        "every key, in order"
    );
    for (key, value, node) in &full {
        assert_eq!(value, format!("value-of-{key}").as_bytes());
        assert_eq!(*node, owners[key], "{key}");
    }
    // Range [scan:00101, scan:00300).
    let (ranged, failures) = records(ranged);
    assert!(failures.is_empty(), "{failures:?}");
    let ranged: Vec<String> = ranged.into_iter().map(|(k, _, _)| k).collect();
    assert_eq!(ranged, keys[101..300].to_vec());
    // Mixed: A's keys (the even ones) plus Redis' one key, merged in order.
    let (mixed, failures) = records(mixed);
    assert!(failures.is_empty(), "{failures:?}");
    let mixed: Vec<(String, SocketAddr)> = mixed.into_iter().map(|(k, _, n)| (k, n)).collect();
    assert_eq!(mixed[0].0, "scan:00000");
    assert_eq!(mixed[1], ("scan:00000x".to_string(), addr(REDIS_PORT)));
    assert_eq!(mixed.len(), KEYS / 2 + 1);
    assert!(mixed.windows(2).all(|w| w[0].0 < w[1].0), "in order");

    // Dying server: each of B's cores reported once, by its own address;
    // A lost nothing and the stream stayed ordered.
    let (survived, mut failures) = records(dying);
    failures.sort();
    assert_eq!(failures, b_cores.to_vec());
    assert!(
        survived.windows(2).all(|w| w[0].0 < w[1].0),
        "still in order"
    );
    for (key, owner) in &owners {
        if a_cores.contains(owner) {
            assert!(
                survived.iter().any(|(k, _, _)| k == key),
                "{key} from a live core was lost"
            );
        }
    }
    let from_b = survived
        .iter()
        .filter(|(_, _, n)| b_cores.contains(n))
        .count();
    assert!(
        from_b < KEYS / 2,
        "B died mid-scan ({from_b} of its records)"
    );
}
