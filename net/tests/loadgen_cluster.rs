//! `tessera-bench` in its default cluster mode against a real three-node
//! Redis Cluster: it reads the slot map, sends every key to its owner (not
//! a single MOVED, so zero errors), and every node receives its share.

mod peers;

#[path = "peers/bench.rs"]
mod bench;

use bench::{assert_sane, run_bench};
use peers::{redis_cli, RedisCluster};

const PORTS: [u16; 3] = [18061, 18062, 18063];

#[test]
fn cluster_mode_routes_every_key_to_its_owner() {
    let cluster = RedisCluster::start(PORTS);
    let json = run_bench(&[
        "--port",
        &PORTS[1].to_string(),
        "--connections",
        "2",
        "--pipeline",
        "4",
        "--ratio",
        "1:0",
        "--keyspace",
        "3000",
        "--key-pattern",
        "sequential",
        "--requests",
        "9000",
    ]);
    assert_sane(&json, 9000.0, 0.0);
    let total: u64 = cluster
        .ports()
        .iter()
        .map(|&port| {
            let keys: u64 = redis_cli(port, &["DBSIZE"]).parse().expect("DBSIZE");
            assert!(keys > 500, "node {port} got its share: {keys}");
            keys
        })
        .sum();
    assert_eq!(
        total, 3000,
        "a sequential walk of 9000 SETs covers the 3000 keys"
    );

    // Zipf reads over the same cluster: still no redirect.
    let json = run_bench(&[
        "--port",
        &PORTS[0].to_string(),
        "--ratio",
        "1:9",
        "--keyspace",
        "3000",
        "--key-pattern",
        "zipf",
        "--requests",
        "6000",
        "--connections",
        "2",
    ]);
    assert_sane(&json, 6000.0, 0.0);
}
