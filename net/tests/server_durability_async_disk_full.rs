//! A full disk (a tmpfs, so it needs root: CI runs as root) in async
//! mode: writes are acknowledged from memory while the disk refuses them,
//! until a bounded number wait for it; then new writes are refused with
//! `-TRYAGAIN` (never a false `+OK`, never an unbounded buffer), reads and
//! the other core keep working, the backlog drains once space returns, and a
//! clean shutdown leaves every acknowledged write on disk.

mod support;

use std::time::{Duration, Instant};
use support::{port_for_key, Client, Server, SmallDisk};

const BASE_PORT: u16 = 16070;
const VALUE_LEN: usize = 64 * 1024;
const TMPFS_SIZE: &str = "size=8m";
/// Leaves about 1 MiB free; freed to let the backlog drain (which then has
/// room for every write acknowledged meanwhile, twice over).
const FILLER_BYTES: usize = 7 << 20;
const FREE_BYTES_AT_START: usize = (8 << 20) - FILLER_BYTES;
/// The disk holds far fewer; the writes waiting for it are bounded well
/// below this.
const WRITES_MAX: usize = 200;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn a_full_disk_bounds_async_writes_and_loses_none_it_acknowledged() {
    let disk = SmallDisk::mount("async-disk-full", TMPFS_SIZE, FILLER_BYTES);
    let (data_dir, filler) = (disk.data_dir.clone(), disk.filler.clone());
    let flags = ["--durability", "async", "--flush-interval-ms", "5"];

    let server = Server::start_in(BASE_PORT, data_dir.clone(), &flags);
    let port = port_for_key(BASE_PORT, 2, b"{afull}0");
    let other_port = if port == BASE_PORT {
        BASE_PORT + 1
    } else {
        BASE_PORT
    };
    let mut client = Client::connect(port);
    let mut other = Client::connect(other_port);
    let value = vec![b'a'; VALUE_LEN];
    let mut acknowledged = 0;
    let refusal = loop {
        assert!(acknowledged < WRITES_MAX, "writes were never refused");
        let key = format!("{{afull}}{acknowledged}");
        client.command(&[b"SET", key.as_bytes(), &value]);
        let reply = client.read_line();
        if reply == b"+OK\r\n" {
            acknowledged += 1;
            // Give the flushes time to hit the full disk.
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        break String::from_utf8(reply).unwrap();
    };
    assert!(
        refusal.starts_with("-TRYAGAIN too many writes are waiting for the disk"),
        "{refusal}"
    );
    // More were acknowledged than the disk had room for: they wait in memory.
    assert!(
        acknowledged * VALUE_LEN > FREE_BYTES_AT_START,
        "only {acknowledged}"
    );
    // Acknowledged writes are served, the refused one is not.
    client.command(&[b"GET", b"{afull}0"]);
    assert_eq!(client.read_bulk(), Some(value.clone()));
    let last = format!("{{afull}}{}", acknowledged - 1);
    client.command(&[b"GET", last.as_bytes()]);
    assert_eq!(client.read_bulk(), Some(value.clone()));
    let refused_key = format!("{{afull}}{acknowledged}");
    client.command(&[b"GET", refused_key.as_bytes()]);
    assert_eq!(client.read_bulk(), None);
    other.command(&[b"PING"]);
    assert_eq!(other.read_line(), b"+PONG\r\n");

    // Space returns (what the backlog needs, and more): it drains and
    // writes are taken again.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        client.command(&[b"SET", refused_key.as_bytes(), b"small"]);
        let reply = client.read_line();
        if reply == b"+OK\r\n" {
            break;
        }
        assert!(reply.starts_with(b"-TRYAGAIN"), "{reply:?}");
        assert!(Instant::now() < deadline, "the backlog never drained");
        std::thread::sleep(Duration::from_millis(50));
    }

    let (status, data_dir) = server.stop_keeping_data(libc::SIGTERM);
    assert!(status.success(), "clean shutdown: {status}");
    let _restarted = Server::start_in(BASE_PORT, data_dir, &flags);
    let mut client = Client::connect(port);
    for i in 0..acknowledged {
        let key = format!("{{afull}}{i}");
        client.command(&[b"GET", key.as_bytes()]);
        assert_eq!(client.read_bulk(), Some(value.clone()), "{key}");
    }
    client.command(&[b"GET", refused_key.as_bytes()]);
    assert_eq!(client.read_bulk(), Some(b"small".to_vec()));
    drop(client);
    drop(_restarted);
    drop(disk);
}
