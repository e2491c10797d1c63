//! A full disk (a 2 MiB tmpfs, so it needs root: CI runs as root): sync-mode
//! writes that cannot be persisted are answered with a disk error instead of
//! `+OK`, reads keep working, other connections keep being served, writes
//! succeed again once space returns, and after a SIGKILL every acknowledged
//! write is there and no refused one is.

mod support;

use support::{port_for_key, Client, Server, SmallDisk};

const BASE_PORT: u16 = 16060;
const VALUE_LEN: usize = 64 * 1024;
/// Freed to let writes succeed again.
const FILLER_BYTES: usize = 768 * 1024;
/// Far more than 2 MiB of values: the disk fills well before.
const WRITES_MAX: usize = 64;

#[test]
fn a_full_disk_fails_writes_not_reads_and_recovers() {
    let disk = SmallDisk::mount("disk-full", "size=2m", FILLER_BYTES);
    let (data_dir, filler) = (disk.data_dir.clone(), disk.filler.clone());

    let server = Server::start_in(BASE_PORT, data_dir.clone(), &["--durability", "sync"]);
    let port = port_for_key(BASE_PORT, 2, b"{full}0");
    let reader_port = if port == BASE_PORT {
        BASE_PORT + 1
    } else {
        BASE_PORT
    };
    let mut client = Client::connect(port);
    let mut reader = Client::connect(reader_port);
    let value = vec![b'd'; VALUE_LEN];
    let mut acknowledged = 0;
    let refusal = loop {
        assert!(acknowledged < WRITES_MAX, "the disk never filled");
        let key = format!("{{full}}{acknowledged}");
        client.command(&[b"SET", key.as_bytes(), &value]);
        let reply = client.read_line();
        if reply == b"+OK\r\n" {
            acknowledged += 1;
            continue;
        }
        break String::from_utf8(reply).unwrap();
    };
    assert!(acknowledged > 0, "nothing fit: {refusal}");
    assert!(
        refusal.starts_with("-ERR disk error: ") && refusal.ends_with("; write not applied\r\n"),
        "{refusal}"
    );
    // The refused write is not served; acknowledged ones are.
    let refused_key = format!("{{full}}{acknowledged}");
    client.command(&[b"GET", refused_key.as_bytes()]);
    assert_eq!(client.read_bulk(), None);
    client.command(&[b"GET", b"{full}0"]);
    assert_eq!(client.read_bulk(), Some(value.clone()));
    // The other core is untouched.
    reader.command(&[b"PING"]);
    assert_eq!(reader.read_line(), b"+PONG\r\n");
    // Still full: still refused, nothing else breaks.
    client.command(&[b"SET", refused_key.as_bytes(), &value]);
    assert!(client.read_line().starts_with(b"-ERR disk error: "));

    std::fs::remove_file(&filler).unwrap();
    client.command(&[b"SET", refused_key.as_bytes(), &value]);
    assert_eq!(
        client.read_line(),
        b"+OK\r\n",
        "writes succeed once space returns"
    );
    acknowledged += 1;

    let (_, data_dir) = server.stop_keeping_data(libc::SIGKILL);
    let _restarted = Server::start_in(BASE_PORT, data_dir, &["--durability", "sync"]);
    let mut client = Client::connect(port);
    for i in 0..acknowledged {
        let key = format!("{{full}}{i}");
        client.command(&[b"GET", key.as_bytes()]);
        assert_eq!(client.read_bulk(), Some(value.clone()), "{key}");
    }
    let never = format!("{{full}}{acknowledged}");
    client.command(&[b"GET", never.as_bytes()]);
    assert_eq!(client.read_bulk(), None);
    drop(client);
    drop(_restarted);
    drop(disk);
}
