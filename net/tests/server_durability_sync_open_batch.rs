//! Sync mode keeps one batch open over many rounds; a round the full disk
//! (a tmpfs, so it needs root: CI runs as root) refuses is taken back from
//! it whole: a key the round overwrote shows its acknowledged value again,
//! a key it deleted is back, a key it created is absent, and so after a
//! SIGKILL and restart, where every acknowledged write is found.

mod support;

use support::{encode, port_for_key, Client, Server, SmallDisk};

const BASE_PORT: u16 = 16200;
/// Freed to let writes succeed again.
const FILLER_BYTES: usize = 768 * 1024;
/// Value sizes the disk is filled with, largest first, down to the
/// smallest commit there is: afterwards no round's write fits.
const FILL_VALUE_LENS: [usize; 5] = [64 * 1024, 8 * 1024, 1024, 64, 1];
/// Far more than the 2 MiB disk holds of each size.
const FILL_WRITES_MAX: usize = 4096;

#[test]
fn a_refused_round_is_taken_back_from_the_open_batch() {
    let disk = SmallDisk::mount("sync-open-batch", "size=2m", FILLER_BYTES);
    let (data_dir, filler) = (disk.data_dir.clone(), disk.filler.clone());

    let server = Server::start_in(BASE_PORT, data_dir.clone(), &["--durability", "sync"]);
    let port = port_for_key(BASE_PORT, 2, b"{open}");
    let mut client = Client::connect(port);
    for (key, value) in [
        (&b"{open}over"[..], &b"acknowledged"[..]),
        (b"{open}gone", b"kept"),
    ] {
        client.command(&[b"SET", key, value]);
        assert_eq!(client.read_line(), b"+OK\r\n");
    }

    let mut filled = Vec::new();
    for value_len in FILL_VALUE_LENS {
        let value = vec![b'f'; value_len];
        loop {
            assert!(filled.len() < FILL_WRITES_MAX, "the disk never filled");
            let key = format!("{{open}}fill{}", filled.len());
            client.command(&[b"SET", key.as_bytes(), &value]);
            let reply = client.read_line();
            if reply != b"+OK\r\n" {
                assert!(reply.starts_with(b"-ERR disk error: "), "{reply:?}");
                break;
            }
            filled.push((key, value.clone()));
        }
    }

    // One round (one small send): overwrite, delete, create.
    let mut round = encode(&[b"SET", b"{open}over", b"refused"]);
    round.extend(encode(&[b"DEL", b"{open}gone"]));
    round.extend(encode(&[b"SET", b"{open}fresh", b"refused"]));
    client.send(&round);
    for _ in 0..3 {
        let reply = client.read_line();
        assert!(reply.starts_with(b"-ERR disk error: "), "{reply:?}");
    }
    let expect_acknowledged = |client: &mut Client| {
        client.command(&[b"GET", b"{open}over"]);
        assert_eq!(client.read_bulk().as_deref(), Some(&b"acknowledged"[..]));
        client.command(&[b"GET", b"{open}gone"]);
        assert_eq!(client.read_bulk().as_deref(), Some(&b"kept"[..]));
        client.command(&[b"GET", b"{open}fresh"]);
        assert_eq!(client.read_bulk(), None);
    };
    expect_acknowledged(&mut client);

    std::fs::remove_file(&filler).unwrap();
    client.command(&[b"SET", b"{open}after", b"space"]);
    assert_eq!(
        client.read_line(),
        b"+OK\r\n",
        "writes succeed once space returns"
    );

    let (_, data_dir) = server.stop_keeping_data(libc::SIGKILL);
    let _restarted = Server::start_in(BASE_PORT, data_dir, &["--durability", "sync"]);
    let mut client = Client::connect(port);
    expect_acknowledged(&mut client);
    client.command(&[b"GET", b"{open}after"]);
    assert_eq!(client.read_bulk().as_deref(), Some(&b"space"[..]));
    for (key, value) in &filled {
        client.command(&[b"GET", key.as_bytes()]);
        assert_eq!(client.read_bulk().as_ref(), Some(value), "{key}");
    }
    drop(client);
    drop(_restarted);
    drop(disk);
}
