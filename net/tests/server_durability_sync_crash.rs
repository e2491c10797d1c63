//! Sync mode: every acknowledged write survives SIGKILL. Writes (sets,
//! overwrites, deletes, pipelined so rounds group-commit many of them) go to
//! both cores; once all are acknowledged the server is killed without
//! warning and restarted on the same data directory, and every key holds its
//! last acknowledged value.

mod support;

use support::{encode, port_for_key, Client, Server};

const BASE_PORT: u16 = 16010;
const KEYS: usize = 600;

fn expected(i: usize) -> Option<Vec<u8>> {
    if i % 7 == 0 {
        None
    } else if i % 3 == 0 {
        Some(format!("second-{i}").into_bytes())
    } else {
        Some(format!("first-{i}-{}", "x".repeat(i % 50)).into_bytes())
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let server = Server::start(
        BASE_PORT,
        "durability-sync-crash",
        &["--durability", "sync"],
    );
    let mut clients = [Client::connect(BASE_PORT), Client::connect(BASE_PORT + 1)];
    clients[0].command(&[b"CONFIG", b"GET", b"appendonly"]);
    assert_eq!(clients[0].read_line(), b"*2\r\n");
    assert_eq!(clients[0].read_bulk().unwrap(), b"appendonly");
    assert_eq!(clients[0].read_bulk().unwrap(), b"yes");
    clients[1].command(&[b"INFO", b"persistence"]);
    let info = String::from_utf8(clients[1].read_bulk().unwrap()).unwrap();
    assert!(
        info.contains("aof_enabled:1") && info.contains("durability:sync"),
        "{info}"
    );
    let mut pipelines = [Vec::new(), Vec::new()];
    let mut replies = [Vec::new(), Vec::new()];
    for i in 0..KEYS {
        let key = format!("key:{i}");
        let core = usize::from(port_for_key(BASE_PORT, 2, key.as_bytes()) - BASE_PORT);
        let first = format!("first-{i}-{}", "x".repeat(i % 50));
        pipelines[core].extend_from_slice(&encode(&[b"SET", key.as_bytes(), first.as_bytes()]));
        replies[core].push(b"+OK\r\n".to_vec());
        if i % 3 == 0 {
            let second = format!("second-{i}");
            pipelines[core].extend_from_slice(&encode(&[
                b"SET",
                key.as_bytes(),
                second.as_bytes(),
            ]));
            replies[core].push(b"+OK\r\n".to_vec());
        }
        if i % 7 == 0 {
            pipelines[core].extend_from_slice(&encode(&[b"DEL", key.as_bytes()]));
            replies[core].push(b":1\r\n".to_vec());
        }
    }
    for core in 0..2 {
        assert!(!replies[core].is_empty(), "core {core} got no keys");
        clients[core].send(&pipelines[core]);
    }
    for core in 0..2 {
        for want in &replies[core] {
            let got = clients[core].read_line();
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(&got));
        }
    }

    let (_, data_dir) = server.stop_keeping_data(libc::SIGKILL);
    let _restarted = Server::start_in(BASE_PORT, data_dir, &["--durability", "sync"]);
    let mut clients = [Client::connect(BASE_PORT), Client::connect(BASE_PORT + 1)];
    for i in 0..KEYS {
        let key = format!("key:{i}");
        let core = usize::from(port_for_key(BASE_PORT, 2, key.as_bytes()) - BASE_PORT);
        clients[core].command(&[b"GET", key.as_bytes()]);
        assert_eq!(clients[core].read_bulk(), expected(i), "{key}");
    }
}
