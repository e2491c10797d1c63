//! A connection whose unparsed input exceeds the server's cap (one maximal
//! 512 MiB value plus slack) gets an error and is closed; other connections
//! are unaffected.

mod support;

use std::io::{Read, Write};
use std::time::Duration;
use support::{Client, Server};
use tessera_net::server::INPUT_BYTES_MAX;

#[test]
fn oversized_request_is_refused_and_closed() {
    let _server = Server::start(17280, "oversized", &["--memory-limit", "2gb"]);
    let mut other = Client::connect(17280);
    assert_eq!(other.ping(), b"+PONG\r\n");

    // Two 512 MiB arguments: within the command layer's own per-request
    // bound, so only the network loop's input cap can stop it.
    let mut big = Client::connect(17280);
    let header = b"*3\r\n$3\r\nSET\r\n$536870912\r\n";
    big.send(header);
    let mut reader = big.stream.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let replies = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = reader.read_to_end(&mut all);
        all
    });
    // Well-formed throughout (a 512 MiB key, CRLF, the second header, then
    // value bytes), so the command layer only ever sees an incomplete request.
    let chunk = vec![b'x'; 1 << 20];
    let key_len = 536_870_912;
    let mut stream_bytes = |bytes: &[u8]| -> bool { big.stream.write_all(bytes).is_ok() };
    let mut open = true;
    for _ in 0..key_len / chunk.len() {
        open = open && stream_bytes(&chunk);
    }
    open = open && stream_bytes(b"\r\n$536870912\r\n");
    for _ in 0..4 {
        open = open && stream_bytes(&chunk);
    }
    assert!(
        key_len + 4 * chunk.len() > INPUT_BYTES_MAX,
        "the test sends past the cap"
    );
    let _ = open; // A write fails once the server has closed, as expected.
    let _ = big.stream.shutdown(std::net::Shutdown::Write);
    let reply = replies.join().unwrap();
    let text = String::from_utf8_lossy(&reply);
    assert_eq!(text, "-ERR Protocol error: request too large\r\n");

    assert_eq!(other.ping(), b"+PONG\r\n");
}
