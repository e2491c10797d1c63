//! A flipped byte inside a core's segment file: the server refuses to start,
//! naming the file and the offset; with `--tolerant-recovery` it starts,
//! keeping what precedes the damage (and saving the dropped bytes aside)
//! and every other core's data.

mod support;

use std::time::Duration;
use support::{port_for_key, run_to_exit, server_command, Client, Server};

const BASE_PORT: u16 = 16050;
const VALUE_LEN: usize = 8192;

#[test]
fn a_corrupt_segment_refuses_to_start_unless_tolerant() {
    let server = Server::start(BASE_PORT, "durability-corrupt", &[]);
    let damaged_port = port_for_key(BASE_PORT, 2, b"damaged");
    let other_port = if damaged_port == BASE_PORT {
        BASE_PORT + 1
    } else {
        BASE_PORT
    };
    let other_key = (0..)
        .map(|i| format!("safe{i}").into_bytes())
        .find(|key| port_for_key(BASE_PORT, 2, key) == other_port)
        .unwrap();
    let other_key = other_key.as_slice();
    let value = vec![b'v'; VALUE_LEN];
    let mut client = Client::connect(damaged_port);
    client.command(&[b"SET", b"damaged", &value]);
    assert_eq!(client.read_line(), b"+OK\r\n");
    // A later commit: damage in the last commit is indistinguishable from a
    // torn write and is cut back silently; damage before it is refused.
    client.command(&[b"SET", b"{damaged}later", b"x"]);
    assert_eq!(client.read_line(), b"+OK\r\n");
    let mut other = Client::connect(other_port);
    other.command(&[b"SET", other_key, b"kept"]);
    assert_eq!(other.read_line(), b"+OK\r\n");
    let (status, data_dir) = server.stop_keeping_data(libc::SIGTERM);
    assert!(status.success());

    let core_dir = data_dir.join(format!("core-{}", damaged_port - BASE_PORT));
    let file = std::fs::read_dir(&core_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "tsr"))
        .expect("a segment file");
    let mut bytes = std::fs::read(&file).unwrap();
    // Inside the value's bytes, past the file header block.
    let offset = bytes
        .windows(64)
        .position(|window| window.iter().all(|&b| b == b'v'))
        .expect("the value is in the file")
        + 100;
    bytes[offset] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let output = run_to_exit(
        server_command(BASE_PORT, &data_dir, &[]),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(
        stderr.contains(&*name) && stderr.contains("offset"),
        "{stderr}"
    );

    let _tolerant = Server::start_in(BASE_PORT, data_dir, &["--tolerant-recovery"]);
    let mut client = Client::connect(damaged_port);
    client.command(&[b"GET", b"damaged"]);
    assert_eq!(client.read_bulk(), None, "the damaged commit was dropped");
    client.command(&[b"GET", b"{damaged}later"]);
    assert_eq!(client.read_bulk(), None, "and everything after it");
    client.command(&[b"SET", b"damaged", b"again"]);
    assert_eq!(client.read_line(), b"+OK\r\n");
    let mut other = Client::connect(other_port);
    other.command(&[b"GET", other_key]);
    assert_eq!(other.read_bulk(), Some(b"kept".to_vec()));
}
