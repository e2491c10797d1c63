//! Async mode: a clean SIGTERM persists everything acknowledged, even writes
//! made just before the signal, far inside the flush interval.

mod support;

use support::{encode, port_for_key, Client, Server};

const BASE_PORT: u16 = 16020;
const KEYS: usize = 400;
/// Long enough that no timer flush happens before the signal.
const FLUSH_INTERVAL: &str = "60000";

#[test]
fn sigterm_persists_async_writes() {
    let flags = [
        "--durability",
        "async",
        "--flush-interval-ms",
        FLUSH_INTERVAL,
    ];
    let server = Server::start(BASE_PORT, "durability-async-sigterm", &flags);
    let mut clients = [Client::connect(BASE_PORT), Client::connect(BASE_PORT + 1)];
    clients[0].command(&[b"CONFIG", b"GET", b"appendfsync"]);
    assert_eq!(clients[0].read_line(), b"*2\r\n");
    assert_eq!(clients[0].read_bulk().unwrap(), b"appendfsync");
    assert_eq!(clients[0].read_bulk().unwrap(), b"everysec");
    let mut counts = [0usize; 2];
    for i in 0..KEYS {
        let key = format!("async:{i}");
        let core = usize::from(port_for_key(BASE_PORT, 2, key.as_bytes()) - BASE_PORT);
        clients[core].send(&encode(&[
            b"SET",
            key.as_bytes(),
            format!("v{i}").as_bytes(),
        ]));
        counts[core] += 1;
    }
    for core in 0..2 {
        assert!(counts[core] > 0);
        for _ in 0..counts[core] {
            assert_eq!(clients[core].read_line(), b"+OK\r\n");
        }
    }
    let (status, data_dir) = server.stop_keeping_data(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");

    let _restarted = Server::start_in(BASE_PORT, data_dir, &flags);
    let mut clients = [Client::connect(BASE_PORT), Client::connect(BASE_PORT + 1)];
    for i in 0..KEYS {
        let key = format!("async:{i}");
        let core = usize::from(port_for_key(BASE_PORT, 2, key.as_bytes()) - BASE_PORT);
        clients[core].command(&[b"GET", key.as_bytes()]);
        let value = format!("v{i}").into_bytes();
        assert_eq!(clients[core].read_bulk(), Some(value), "{key}");
    }
}
