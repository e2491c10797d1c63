//! Async mode: an idle core flushes within the interval by itself (its
//! timer wakes it), so writes acknowledged well over an interval before a
//! SIGKILL survive it. FLUSHDB is persisted the same way.

mod support;

use std::time::Duration;
use support::{port_for_key, Client, Server};

const BASE_PORT: u16 = 16030;
const FLUSH_INTERVAL_MS: u64 = 20;

#[test]
fn an_idle_core_flushes_within_the_interval() {
    let interval = FLUSH_INTERVAL_MS.to_string();
    let flags = ["--durability", "async", "--flush-interval-ms", &interval];
    let server = Server::start(BASE_PORT, "durability-async-idle", &flags);
    let port = port_for_key(BASE_PORT, 2, b"gone");
    assert_eq!(port, port_for_key(BASE_PORT, 2, b"{gone}kept"));
    let mut client = Client::connect(port);
    client.command(&[b"SET", b"gone", b"before-flushdb"]);
    assert_eq!(client.read_line(), b"+OK\r\n");
    client.command(&[b"FLUSHDB"]);
    assert_eq!(client.read_line(), b"+OK\r\n");
    client.command(&[b"SET", b"{gone}kept", b"after-flushdb"]);
    assert_eq!(client.read_line(), b"+OK\r\n");
    // Many intervals, no further request: only the timer can flush.
    std::thread::sleep(Duration::from_millis(FLUSH_INTERVAL_MS * 25));
    let (_, data_dir) = server.stop_keeping_data(libc::SIGKILL);

    let _restarted = Server::start_in(BASE_PORT, data_dir, &flags);
    let mut client = Client::connect(port);
    client.command(&[b"GET", b"{gone}kept"]);
    assert_eq!(client.read_bulk(), Some(b"after-flushdb".to_vec()));
    client.command(&[b"GET", b"gone"]);
    assert_eq!(client.read_bulk(), None, "FLUSHDB was persisted");
}
