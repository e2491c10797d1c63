//! SIGTERM stops accepting, finishes the requests already received (even
//! those waiting behind a slow reader's replies), commits, and exits 0.

mod support;

use std::time::Duration;
use support::{encode, Client, Server};

const REQUESTS: usize = 3000;
const VALUE_LEN: usize = 4096;

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let mut server = Server::start(17210, "sigterm", &[]);
    let mut client = Client::connect(17210);
    // A key owned by core 0 (slot 0..8191): "a" hashes to slot 15495, so use
    // a hash tag that lands on core 0.
    let key: &[u8] = b"{user1000}k";
    let value = vec![b'v'; VALUE_LEN];
    client.command(&[b"SET", key, &value]);
    let set_reply = client.read_line();
    assert_eq!(
        set_reply,
        b"+OK\r\n",
        "{}",
        String::from_utf8_lossy(&set_reply)
    );

    // 3000 GETs whose replies (12 MB) far exceed the socket buffers and the
    // server's output pause threshold: most are still unanswered when the
    // signal arrives, and none is read before it.
    let mut pipeline = Vec::new();
    for _ in 0..REQUESTS {
        pipeline.extend_from_slice(&encode(&[b"GET", key]));
    }
    client.send(&pipeline);
    std::thread::sleep(Duration::from_millis(500));
    server.signal(libc::SIGTERM);

    let mut expected = format!("${VALUE_LEN}\r\n").into_bytes();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\n");
    let replies = client.read_to_end();
    assert_eq!(
        replies.len(),
        REQUESTS * expected.len(),
        "every in-flight request is answered"
    );
    assert!(replies
        .chunks(expected.len())
        .all(|reply| reply == expected));

    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    // Nobody listens any more.
    assert!(std::net::TcpStream::connect(("127.0.0.1", 17210)).is_err());
}

#[test]
fn second_signal_exits_at_once() {
    let mut server = Server::start(17212, "sigterm-twice", &[]);
    let mut client = Client::connect(17212);
    let key: &[u8] = b"{user1000}k";
    client.command(&[b"SET", key, &vec![b'v'; VALUE_LEN]]);
    assert_eq!(client.read_line(), b"+OK\r\n");
    let mut pipeline = Vec::new();
    for _ in 0..REQUESTS {
        pipeline.extend_from_slice(&encode(&[b"GET", key]));
    }
    // The client never reads, so the drain cannot finish by itself.
    client.send(&pipeline);
    std::thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(2));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "status {status} (signal {:?})",
        status.signal()
    );
}
