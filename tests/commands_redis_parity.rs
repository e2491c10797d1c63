//! Byte-for-byte parity with a real `redis-server` (standalone) on replies
//! and error wording, for commands both implement the same way. Multi-key
//! requests share a hash tag (Tessera is a cluster, Redis here is not).
//! `COMMAND GETKEYS` with no key arguments is left out: its arity changed
//! between Redis 7.0 and 7.2 (we follow 7.2). Needs `redis-server` on PATH
//! (`.ci/run` installs it).

mod common;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{encode, try_parse_reply, Client};

/// Each test runs its own server (tests run in parallel).
const REDIS_PORT_RESP2: u16 = 17_451;
const REDIS_PORT_RESP3: u16 = 17_452;

struct RedisServer {
    child: Child,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis(port: u16) -> (RedisServer, TcpStream) {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed (see .ci/run)");
    let server = RedisServer { child };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            return (server, stream);
        }
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn redis_round(stream: &mut TcpStream, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((_, used)) = try_parse_reply(&buf) {
            assert_eq!(used, buf.len(), "one reply per request");
            return buf;
        }
        let n = stream.read(&mut chunk).expect("redis replies");
        assert!(n > 0, "redis closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Requests whose replies must match exactly (space-separated arguments).
const SAME_REPLIES: &[&str] = &[
    "SET k v",
    "GET k",
    "SET k v2 NX",
    "SET k v3 XX GET",
    "SET k v NX XX",
    "SET k v EX 0",
    "SET k v EX x",
    "SET k v PX",
    "SET k v EX 10 KEEPTTL",
    "SET k v BOGUS",
    "SET k v EX 9223372036854775807",
    "SETEX k 0 v",
    "PSETEX k -5 v",
    "SETNX k v",
    "INCR k",
    "INCRBY n 5",
    "DECRBY n 10",
    "DECR n",
    "INCRBY n x",
    "SET big 9223372036854775807",
    "INCR big",
    "INCRBYFLOAT f 10.5",
    "INCRBYFLOAT f 0.1",
    "INCRBYFLOAT f -3",
    "INCRBYFLOAT f abc",
    "INCRBYFLOAT k 1",
    "APPEND a hello",
    "APPEND a _world",
    "GETRANGE a 1 3",
    "GETRANGE a -3 -1",
    "GETRANGE a 5 1",
    "GETRANGE a x 1",
    "SETRANGE a 13 xy",
    "GET a",
    "SETRANGE a -1 x",
    "SETRANGE a 536870912 x",
    "STRLEN a",
    "STRLEN nope",
    "MSET {t}a 1 {t}b 2",
    "MSET {t}a 1 {t}b",
    "MGET {t}a {t}b {t}nope",
    "MSETNX {t}a 1 {t}c 3",
    "MSETNX {t}c 3 {t}d 4",
    "EXISTS {t}a {t}b {t}c {t}d {t}nope {t}a",
    "DEL {t}a {t}b {t}nope",
    "UNLINK {t}c {t}d",
    "TYPE k",
    "TYPE nope",
    "EXPIRE nope 100",
    "EXPIRE k 100 XX",
    "EXPIRE k 100 NX",
    "EXPIRE k 200 NX",
    "EXPIRE k 50 GT",
    "EXPIRE k 100 NX XX",
    "EXPIRE k 100 GT LT",
    "EXPIRE k 100 FOO",
    "EXPIRE k x",
    "EXPIRE k 9223372036854775807",
    "TTL k",
    "PERSIST k",
    "PERSIST k",
    "TTL k",
    "PTTL k",
    "TTL nope",
    "GETEX k EX 0",
    "GETEX k EX 1 PERSIST",
    "GETEX nope EX 5",
    "GETDEL k",
    "GETDEL k",
    "PING",
    "PING hello",
    "PING a b",
    "ECHO x",
    "ECHO",
    "FOO a b",
    "GET",
    "CLIENT GETNAME",
    "CLIENT SETNAME worker",
    "CLIENT GETNAME",
    "CLIENT NOSUCH",
    "HELLO 4",
    "HELLO x",
    "AUTH x",
    "COMMAND GETKEYS MSET a 1 b 2",
    "COMMAND GETKEYS NOSUCH k",
    "SCAN x",
    "SCAN 0 COUNT 0",
    "SELECT 0",
    "SELECT x",
    "CONFIG GET save",
    "FLUSHDB NOW",
];

#[test]
fn replies_match_redis() {
    let (_server, mut redis) = start_redis(REDIS_PORT_RESP2);
    let mut tessera = Client::new();
    let mut mismatches = Vec::new();
    for request in SAME_REPLIES {
        let args: Vec<&[u8]> = request.split(' ').map(str::as_bytes).collect();
        let bytes = encode(&args);
        let expected = redis_round(&mut redis, &bytes);
        let got = tessera.round(&bytes);
        if expected != got {
            mismatches.push(format!(
                "{request}: redis {:?} tessera {:?}",
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The same under RESP3 (after `HELLO 3`, whose own reply differs by
/// design: server name and connection id).
const SAME_REPLIES_RESP3: &[&str] = &[
    "GET nope",
    "SET k v",
    "GET k",
    "SET k v2 NX",
    "SET fresh v GET",
    "MGET {t}a {t}b",
    "INCRBYFLOAT f 2.5",
    "CONFIG GET save",
    "CONFIG GET nosuch",
    "CLIENT GETNAME",
    "TTL k",
    "EXISTS {t}k {t}nope",
    "GETDEL nope",
    "COMMAND GETKEYS MSET a 1 b 2",
];

#[test]
fn resp3_replies_match_redis() {
    let (_server, mut redis) = start_redis(REDIS_PORT_RESP3);
    let mut tessera = Client::new();
    let hello = encode(&[b"HELLO", b"3"]);
    redis_round(&mut redis, &hello);
    tessera.round(&hello);
    let mut mismatches = Vec::new();
    for request in SAME_REPLIES_RESP3 {
        let args: Vec<&[u8]> = request.split(' ').map(str::as_bytes).collect();
        let bytes = encode(&args);
        let expected = redis_round(&mut redis, &bytes);
        let got = tessera.round(&bytes);
        if expected != got {
            mismatches.push(format!(
                "{request}: redis {:?} tessera {:?}",
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

const REDIS_PORT_FRAMING: u16 = 17_453;

/// Reads everything Redis sends until it closes the connection (after a
/// protocol error) or goes quiet.
fn redis_raw(port: u16, input: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    stream.write_all(input).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    out
}

#[test]
fn framing_and_protocol_errors_match_redis() {
    let (_server, _) = start_redis(REDIS_PORT_FRAMING);
    let big_inline = vec![b'A'; 70 * 1024];
    let inputs: &[&[u8]] = &[
        b"*1\r\n+PING\r\n",
        b"*x\r\n",
        b"*1\r\n$x\r\n",
        b"*1\r\n$-2\r\n",
        b"SET \"a b\r\n",
        b"SET \"a b\"c d\r\n",
        &big_inline,
        b"SET \"a b\" 'c d'\r\nGET \"a b\"\r\nECHO \"\\x41\\t\"\r\n",
        b"PING\r\n\r\n*0\r\nPING\n",
    ];
    for input in inputs {
        let expected = redis_raw(REDIS_PORT_FRAMING, input);
        let got = Client::new().round(input);
        assert_eq!(
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(&got),
            "input {:?}",
            String::from_utf8_lossy(&input[..input.len().min(40)])
        );
    }
}
