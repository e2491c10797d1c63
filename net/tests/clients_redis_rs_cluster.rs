//! The `redis` crate's sync cluster client (`redis::cluster::ClusterClient`)
//! bootstraps from `CLUSTER SLOTS` and works both cores: keys, a hash-tagged
//! MSET/MGET, MGET and DEL split across slots by the client, INCR,
//! EXPIRE/TTL and a short expiry, cluster pipelines, a bad request as a
//! server error. Once over RESP2, once over RESP3 with replica reads on, so
//! every node connection starts with `HELLO 3` and `READONLY` (the client
//! gives up on a node whose handshake fails).

mod clients;
mod support;

use redis::cluster::{cluster_pipe, ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::cluster_read_routing::RandomReplicaStrategy;
use redis::{Commands, ProtocolVersion, Value};
use std::time::Duration;
use support::Server;

const BASE_PORT: u16 = 17620;
const PORTS: [u16; 2] = [BASE_PORT, BASE_PORT + 1];
/// Plain keys per protocol: enough that both cores own some.
const KEY_COUNT: usize = 200;
const PIPELINE_LEN: usize = 50;
/// Bounds every connect and reply, so a hang fails instead of stalling.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

fn node_urls() -> Vec<String> {
    PORTS
        .iter()
        .map(|port| format!("redis://127.0.0.1:{port}/"))
        .collect()
}

fn cluster_client(protocol: ProtocolVersion) -> ClusterClient {
    let builder = ClusterClientBuilder::new(node_urls())
        .connection_timeout(CLIENT_TIMEOUT)
        .response_timeout(CLIENT_TIMEOUT)
        .use_protocol(protocol);
    let builder = match protocol {
        ProtocolVersion::RESP2 => builder,
        // Replica reads make the client send READONLY on every node
        // connection; our nodes are all primaries and must accept it.
        _ => builder.read_routing_strategy(RandomReplicaStrategy),
    };
    builder.build().expect("cluster client config")
}

/// `KEYS pattern` on each core by itself, not through the cluster client.
fn keys_per_core(pattern: &str) -> Vec<usize> {
    PORTS
        .iter()
        .map(|port| {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut con = client.get_connection().unwrap();
            let keys: Vec<String> = con.keys(pattern).unwrap();
            keys.len()
        })
        .collect()
}

fn check_protocol(con: &mut ClusterConnection, protocol: ProtocolVersion) {
    // HELLO with no version reports the connection's protocol: a map in
    // RESP3, a flat array in RESP2.
    let hello: Value = redis::cmd("HELLO").query(con).unwrap();
    let proto = match (&hello, protocol) {
        (Value::Map(pairs), ProtocolVersion::RESP3) => pairs
            .iter()
            .find(|(name, _)| *name == Value::SimpleString("proto".into()))
            .or_else(|| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == Value::BulkString(b"proto".to_vec()))
            })
            .map(|(_, value)| value.clone()),
        (Value::Array(items), ProtocolVersion::RESP2) => items
            .iter()
            .position(|item| *item == Value::BulkString(b"proto".to_vec()))
            .map(|at| items[at + 1].clone()),
        _ => None,
    };
    let expected = if protocol == ProtocolVersion::RESP2 {
        2
    } else {
        3
    };
    assert_eq!(proto, Some(Value::Int(expected)), "HELLO: {hello:?}");
}

fn exercise(con: &mut ClusterConnection, prefix: &str) {
    // Plain keys over both cores.
    let keys: Vec<String> = (0..KEY_COUNT)
        .map(|i| format!("{prefix}:key:{i}"))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let () = con.set(key, format!("value-{i}")).unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        let value: Option<String> = con.get(key).unwrap();
        assert_eq!(
            value.as_deref(),
            Some(format!("value-{i}").as_str()),
            "{key}"
        );
    }
    let missing: Option<String> = con.get(format!("{prefix}:missing")).unwrap();
    assert_eq!(missing, None);
    let per_core = keys_per_core(&format!("{prefix}:key:*"));
    assert_eq!(per_core.iter().sum::<usize>(), KEY_COUNT, "{per_core:?}");
    assert!(
        per_core.iter().all(|&n| n > 0),
        "keys on both cores: {per_core:?}"
    );

    // MSET/MGET inside one hash tag: one slot, one core.
    let tagged = |name: &str| format!("{{{prefix}:user}}:{name}");
    let () = con.mset(&[(tagged("a"), "1"), (tagged("b"), "2")]).unwrap();
    let values: Vec<Option<String>> = con.mget(&[tagged("a"), tagged("b"), tagged("c")]).unwrap();
    assert_eq!(values, [Some("1".into()), Some("2".into()), None]);

    // MGET across slots: the client splits it per slot and reassembles.
    let values: Vec<Option<String>> = con.mget(&keys[..20]).unwrap();
    let expected: Vec<Option<String>> = (0..20).map(|i| Some(format!("value-{i}"))).collect();
    assert_eq!(values, expected);

    // Counters.
    let counter = format!("{prefix}:counter");
    let n: i64 = con.incr(&counter, 1).unwrap();
    assert_eq!(n, 1);
    let n: i64 = con.incr(&counter, 41).unwrap();
    assert_eq!(n, 42);
    let n: i64 = con.decr(&counter, 2).unwrap();
    assert_eq!(n, 40);

    // Expiry: a TTL is reported, and a short one really expires.
    let ttl_key = format!("{prefix}:ttl");
    let () = con.set(&ttl_key, "x").unwrap();
    let ttl: i64 = con.ttl(&ttl_key).unwrap();
    assert_eq!(ttl, -1, "no TTL yet");
    let set: bool = con.expire(&ttl_key, 100).unwrap();
    assert!(set);
    let ttl: i64 = con.ttl(&ttl_key).unwrap();
    assert!(0 < ttl && ttl <= 100, "ttl {ttl}");
    let ttl: i64 = con.ttl(format!("{prefix}:missing")).unwrap();
    assert_eq!(ttl, -2);
    let short_key = format!("{prefix}:short");
    let () = con.pset_ex(&short_key, "x", 150).unwrap();
    let pttl: i64 = con.pttl(&short_key).unwrap();
    assert!(0 < pttl && pttl <= 150, "pttl {pttl}");
    std::thread::sleep(Duration::from_millis(400));
    let value: Option<String> = con.get(&short_key).unwrap();
    assert_eq!(value, None, "read back after its deadline");

    // A cluster pipeline, split per node by the client, replies in order.
    let pipe_key = |i: usize| format!("{prefix}:pipe:{i}");
    let mut pipe = cluster_pipe();
    for i in 0..PIPELINE_LEN {
        pipe.set(pipe_key(i), i).ignore();
    }
    for i in 0..PIPELINE_LEN {
        pipe.incr(pipe_key(i), 1);
    }
    for i in 0..PIPELINE_LEN {
        pipe.get(pipe_key(i));
    }
    let replies: Vec<u64> = pipe.query(con).unwrap();
    let expected: Vec<u64> = (1..=PIPELINE_LEN as u64)
        .chain(1..=PIPELINE_LEN as u64)
        .collect();
    assert_eq!(replies, expected);

    // Bad input is a server error; the value and the connection survive.
    let text_key = format!("{prefix}:text");
    let () = con.set(&text_key, "not a number").unwrap();
    let error = con.incr::<_, _, i64>(&text_key, 1).unwrap_err();
    assert_eq!(error.code(), Some("ERR"), "{error:?}");
    let error = con.pset_ex::<_, _, ()>(&text_key, "x", 0).unwrap_err();
    assert_eq!(error.code(), Some("ERR"), "{error:?}");
    let value: String = con.get(&text_key).unwrap();
    assert_eq!(value, "not a number", "bad input changed the value");
    let ttl: i64 = con.ttl(&text_key).unwrap();
    assert_eq!(ttl, -1, "bad input set a TTL");

    // DEL across slots: split per slot, counts summed.
    let deleted: usize = con.del(&keys).unwrap();
    assert_eq!(deleted, KEY_COUNT);
    assert_eq!(keys_per_core(&format!("{prefix}:key:*")), [0, 0]);
}

#[test]
fn redis_rs_cluster_client_works_both_cores_over_resp2_and_resp3() {
    let _server = Server::start(BASE_PORT, "clients-redis-rs", &[]);
    for (protocol, prefix) in [
        (ProtocolVersion::RESP2, "rs2"),
        (ProtocolVersion::RESP3, "rs3"),
    ] {
        let client = cluster_client(protocol);
        let mut con = client.get_connection().expect("cluster connection");
        check_protocol(&mut con, protocol);
        exercise(&mut con, prefix);
    }
}
