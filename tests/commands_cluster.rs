//! Cluster view of a 3-core node from core 1: topology replies, MOVED for
//! keys of other cores, CROSSSLOT for keys spanning slots.

mod common;
use common::{config, key_on_core, Client, MEMORY_LIMIT_BYTES};
use tessera::net::cluster::key_slot;

fn core1() -> Client {
    Client::with_config(config(3, 1, None, MEMORY_LIMIT_BYTES))
}

#[test]
fn keyslot_myid_info() {
    let mut c = core1();
    assert_eq!(c.s("CLUSTER KEYSLOT somekey"), ":11058\r\n");
    assert_eq!(c.s("CLUSTER KEYSLOT foo{hash_tag}"), ":2515\r\n");
    let id = c.s("CLUSTER MYID");
    assert!(id.starts_with("$40\r\n") && id.len() == 5 + 40 + 2, "{id}");
    let info = c.s("CLUSTER INFO");
    for field in [
        "cluster_state:ok\r\n",
        "cluster_slots_assigned:16384\r\n",
        "cluster_slots_ok:16384\r\n",
        "cluster_known_nodes:3\r\n",
        "cluster_size:3\r\n",
        "cluster_my_epoch:2\r\n",
    ] {
        assert!(info.contains(field), "{field} in {info}");
    }
    assert!(c.s("INFO cluster").contains("cluster_enabled:1\r\n"));
}

#[test]
fn slots_cover_all_cores() {
    let mut c = core1();
    let slots = c.s("CLUSTER SLOTS");
    assert!(
        slots.starts_with("*3\r\n*3\r\n:0\r\n:5461\r\n*4\r\n$9\r\n127.0.0.1\r\n:7100\r\n$40\r\n"),
        "{slots}"
    );
    assert!(slots.contains("*3\r\n:5462\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:7101\r\n"));
    assert!(slots.contains("*3\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:7102\r\n"));
    c.s("HELLO 3");
    let slots = c.s("CLUSTER SLOTS");
    assert!(slots.contains("%0\r\n"), "{slots}");
}

#[test]
fn nodes_marks_myself() {
    let mut c = core1();
    let nodes = c.s("CLUSTER NODES");
    let body = nodes.split_once("\r\n").unwrap().1;
    let lines: Vec<&str> = body.trim_end_matches("\r\n").lines().collect();
    assert_eq!(lines.len(), 3);
    let mine: Vec<&str> = lines[1].split(' ').collect();
    assert_eq!(mine[1], "127.0.0.1:7101@17101");
    assert_eq!(mine[2], "myself,master");
    assert_eq!(mine[3], "-");
    assert_eq!(mine[7], "connected");
    assert_eq!(mine[8], "5462-10922");
    assert_eq!(lines[0].split(' ').nth(2), Some("master"));
    let myid = c.s("CLUSTER MYID");
    assert!(myid.contains(mine[0]));
}

#[test]
fn shards_resp2_and_resp3() {
    let mut c = core1();
    let shards = c.s("CLUSTER SHARDS");
    assert!(shards.starts_with("*3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5461\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n"), "{shards}");
    c.s("HELLO 3");
    let shards = c.s("CLUSTER SHARDS");
    assert!(
        shards.starts_with("*3\r\n%2\r\n$5\r\nslots\r\n"),
        "{shards}"
    );
    assert!(shards.contains("$6\r\nhealth\r\n$6\r\nonline\r\n"));
}

#[test]
fn moved_and_crossslot() {
    let mut c = core1();
    let here = key_on_core("k", 1, 3);
    let there = key_on_core("k", 2, 3);
    assert_eq!(c.s(&format!("SET {here} v")), "+OK\r\n");
    let slot = key_slot(there.as_bytes());
    assert_eq!(
        c.s(&format!("GET {there}")),
        format!("-MOVED {slot} 127.0.0.1:7102\r\n")
    );
    assert_eq!(
        c.s(&format!("MGET {here} {there}")),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    // Both keys of another core, different slots: CROSSSLOT wins.
    let there2 = key_on_core(&format!("{there}x"), 2, 3);
    if key_slot(there2.as_bytes()) != slot {
        assert!(c
            .s(&format!("DEL {there} {there2}"))
            .starts_with("-CROSSSLOT"));
    }
    // Same hash tag: same slot, allowed when the slot is ours.
    let tag = key_on_core("t", 1, 3);
    assert_eq!(c.s(&format!("MSET {{{tag}}}a 1 {{{tag}}}b 2")), "+OK\r\n");
    assert_eq!(
        c.s(&format!("MGET {{{tag}}}a {{{tag}}}b")),
        "*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
    // Keyless commands run anywhere.
    assert_eq!(c.s("PING"), "+PONG\r\n");
    assert_eq!(c.s("READONLY"), "+OK\r\n");
    assert_eq!(c.s("READWRITE"), "+OK\r\n");
    assert_eq!(c.s("ASKING"), "+OK\r\n");
}

#[test]
fn countkeysinslot_is_exact() {
    let mut c = core1();
    let key = key_on_core("ck", 1, 3);
    let slot = key_slot(key.as_bytes());
    c.s(&format!("SET {key} v"));
    c.s(&format!("SET {{{key}}}other v"));
    assert_eq!(c.s(&format!("CLUSTER COUNTKEYSINSLOT {slot}")), ":2\r\n");
    assert_eq!(c.s("CLUSTER COUNTKEYSINSLOT 0"), ":0\r\n");
    assert_eq!(
        c.s("CLUSTER COUNTKEYSINSLOT 16384"),
        "-ERR Invalid slot\r\n"
    );
    let keys = c.s(&format!("CLUSTER GETKEYSINSLOT {slot} 10"));
    assert!(keys.starts_with("*2\r\n"), "{keys}");
}
