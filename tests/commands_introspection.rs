//! COMMAND (shaped as cluster clients parse it), COMMAND DOCS/INFO/COUNT/
//! GETKEYS, INFO sections and CONFIG GET/SET.

mod common;
use common::{reply, Client, Value};

#[test]
fn command_entries_have_ten_fields() {
    let mut c = Client::new();
    let all = reply(&c.cmd("COMMAND"));
    let count = match reply(&c.cmd("COMMAND COUNT")) {
        Value::Int(n) => n as usize,
        other => panic!("{other:?}"),
    };
    assert_eq!(all.items().len(), count);
    for entry in all.items() {
        let fields = entry.items();
        assert_eq!(fields.len(), 10, "{entry:?}");
        assert!(matches!(fields[1], Value::Int(_)));
        for field in &fields[3..6] {
            assert!(matches!(field, Value::Int(_)));
        }
        for sub in fields[9].items() {
            assert_eq!(sub.items().len(), 10);
            assert!(sub.items()[0].text().contains('|'));
        }
    }
    let get = reply(&c.cmd("COMMAND INFO get mset cluster|slots nosuch"));
    let get = get.items();
    let mset = get[1].items();
    assert_eq!(get[0].items()[0].text(), "get");
    assert_eq!(get[0].items()[1], Value::Int(2));
    assert_eq!(mset[1], Value::Int(-3));
    assert_eq!(&mset[3..6], &[Value::Int(1), Value::Int(-1), Value::Int(2)]);
    assert!(mset[2].items().iter().any(|f| f.text() == "denyoom"));
    assert_eq!(get[2].items()[0].text(), "cluster|slots");
    assert_eq!(get[3], Value::Null);
}

#[test]
fn command_getkeys_and_docs() {
    let mut c = Client::new();
    assert_eq!(
        c.s("COMMAND GETKEYS MSET a 1 b 2"),
        "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    assert_eq!(c.s("COMMAND GETKEYS GET k"), "*1\r\n$1\r\nk\r\n");
    assert_eq!(
        c.s("COMMAND GETKEYS PING"),
        "-ERR The command has no key arguments\r\n"
    );
    assert_eq!(
        c.s("COMMAND GETKEYS NOSUCH k"),
        "-ERR Invalid command specified\r\n"
    );
    assert_eq!(
        c.s("COMMAND GETKEYS GET"),
        "-ERR Invalid number of arguments specified for command\r\n"
    );
    c.s("HELLO 3");
    let docs = reply(&c.cmd("COMMAND DOCS get"));
    let Value::Map(docs) = docs else {
        panic!("{docs:?}")
    };
    assert_eq!(docs[0].0.text(), "get");
    let Value::Map(fields) = &docs[0].1 else {
        panic!()
    };
    assert_eq!(fields[0].0.text(), "summary");
    assert_eq!(fields[2].1.text(), "string");
    let all = reply(&c.cmd("COMMAND DOCS"));
    assert!(matches!(all, Value::Map(ref m) if m.len() > 40));
}

#[test]
fn info_sections() {
    let mut c = Client::new();
    let info = reply(&c.cmd("INFO")).text();
    for field in [
        "# Server\r\n",
        "redis_version:7.2.0\r\n",
        "redis_mode:cluster\r\n",
        "tcp_port:7100\r\n",
        "# Clients\r\nconnected_clients:1\r\n",
        "# Memory\r\nused_memory:",
        "maxmemory:67108864\r\n",
        "# Persistence\r\n",
        "# Stats\r\n",
        "role:master\r\n",
        "cluster_enabled:1\r\n",
        "# Keyspace\r\n",
    ] {
        assert!(info.contains(field), "{field} in {info}");
    }
    let memory = reply(&c.cmd("INFO MEMORY")).text();
    assert!(memory.starts_with("# Memory\r\n") && !memory.contains("# Server"));
    let two = reply(&c.cmd("INFO server stats")).text();
    assert!(two.contains("# Server") && two.contains("# Stats") && !two.contains("# Memory"));
}

#[test]
fn config_get_and_set() {
    let mut c = Client::new();
    assert_eq!(c.s("CONFIG GET save"), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    // These tests drive a memory-only shard, which says so; the server's
    // durable shards answer `yes` (net/tests/server_durability_*).
    assert_eq!(
        c.s("CONFIG GET appendonly"),
        "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    );
    assert_eq!(
        c.s("CONFIG GET maxmemory"),
        "*2\r\n$9\r\nmaxmemory\r\n$8\r\n67108864\r\n"
    );
    assert_eq!(c.s("CONFIG GET nosuch"), "*0\r\n");
    let many = reply(&c.cmd("CONFIG GET max* port"));
    assert_eq!(many.items().len(), 6);
    c.s("HELLO 3");
    assert!(c.s("CONFIG GET save").starts_with("%1\r\n"));
    assert_eq!(c.s("CONFIG SET save \"\""), "+OK\r\n");
    assert!(c
        .s("CONFIG SET maxmemory 1")
        .starts_with("-ERR CONFIG SET failed"));
    assert!(c
        .s("CONFIG SET nosuch 1")
        .starts_with("-ERR Unknown option"));
    assert_eq!(c.s("CONFIG RESETSTAT"), "+OK\r\n");
    let help = reply(&c.cmd("CONFIG HELP"));
    assert!(help.items().len() > 4);
}
