//! Framing: pipelines, requests split across reads, inline commands,
//! read-your-writes inside a round, and malformed input closing the link.

mod common;
use common::{encode, line, Client};

#[test]
fn pipeline_reads_its_own_writes() {
    let mut c = Client::new();
    let mut input = Vec::new();
    for command in [
        "SET k 1", "INCR k", "GET k", "DEL k", "GET k", "SET k 2", "GET k",
    ] {
        input.extend_from_slice(&line(command));
    }
    let before = c.shard.keyspace_counters();
    assert_eq!(
        c.round(&input),
        b"+OK\r\n:2\r\n$1\r\n2\r\n:1\r\n$-1\r\n+OK\r\n$1\r\n2\r\n"
    );
    // Group commit: the round's four writes went into one batch.
    let after = c.shard.keyspace_counters();
    assert_eq!(after.batches_applied, before.batches_applied + 1);
    assert_eq!(after.writes_applied, before.writes_applied + 4);
    assert_eq!(c.s("GET k"), "$1\r\n2\r\n");
}

#[test]
fn split_reads_wait_for_the_rest() {
    let mut c = Client::new();
    let request = encode(&[b"SET", b"key", b"value"]);
    let (head, tail) = request.split_at(11);
    assert_eq!(c.round(head), b"");
    assert!(!c.closed);
    assert_eq!(c.round(tail), b"+OK\r\n");
    // Byte by byte.
    let request = encode(&[b"GET", b"key"]);
    let mut replies = Vec::new();
    for byte in &request {
        replies.extend(c.round(std::slice::from_ref(byte)));
    }
    assert_eq!(replies, b"$5\r\nvalue\r\n");
}

#[test]
fn inline_commands() {
    let mut c = Client::new();
    assert_eq!(c.round(b"PING\r\n"), b"+PONG\r\n");
    assert_eq!(
        c.round(b"SET \"a key\" 'x y'\r\nGET \"a key\"\n"),
        b"+OK\r\n$3\r\nx y\r\n"
    );
    assert_eq!(c.round(b"\r\n"), b"");
    assert_eq!(c.round(b"ECHO \"\\x41\\n\"\r\n"), b"$2\r\nA\n\r\n");
    assert_eq!(c.round(b"PI"), b"");
    assert_eq!(c.round(b"NG\r\n"), b"+PONG\r\n");
}

#[test]
fn empty_multibulk_is_ignored() {
    let mut c = Client::new();
    assert_eq!(c.round(b"*0\r\n*1\r\n$4\r\nPING\r\n"), b"+PONG\r\n");
}

fn assert_protocol_error(input: &[u8], message: &str) {
    let mut c = Client::new();
    let reply = c.round(input);
    assert_eq!(
        String::from_utf8_lossy(&reply),
        format!("-ERR Protocol error: {message}\r\n"),
        "input {input:?}"
    );
    assert!(c.closed);
}

#[test]
fn malformed_input_closes_with_redis_errors() {
    assert_protocol_error(b"*1\r\n+PING\r\n", "expected '$', got '+'");
    assert_protocol_error(b"*x\r\n", "invalid multibulk length");
    assert_protocol_error(b"*1\r\n$x\r\n", "invalid bulk length");
    assert_protocol_error(b"*1\r\n$-2\r\n", "invalid bulk length");
    assert_protocol_error(b"*1\r\n$536870913\r\n", "invalid bulk length");
    assert_protocol_error(b"*2000000\r\n", "invalid multibulk length");
    assert_protocol_error(b"SET \"a b\r\n", "unbalanced quotes in request");
    assert_protocol_error(&vec![b'A'; 70 * 1024], "too big inline request");
    let mut header = b"*".to_vec();
    header.extend(vec![b'1'; 70 * 1024]);
    assert_protocol_error(&header, "too big mbulk count string");
}

#[test]
fn replies_before_a_protocol_error_are_kept() {
    let mut c = Client::new();
    let mut input = line("PING");
    input.extend_from_slice(b"*1\r\n:1\r\n");
    assert_eq!(
        c.round(&input),
        b"+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n"
    );
    assert!(c.closed);
}
