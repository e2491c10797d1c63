//! Drives one `Shard` in-process the way a core's network loop does: feed a
//! connection's bytes, keep what was not consumed, commit the round, collect
//! the replies.
#![allow(dead_code)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use tessera::net::cluster::{key_slot, slot_range_of_core};
use tessera::net::commands::{Conn, Shard};
use tessera::net::handler::{Durability, Handler, NodeTopology, ShardConfig};

pub const BASE_PORT: u16 = 7100;
pub const MEMORY_LIMIT_BYTES: usize = 64 << 20;

/// Polls a future that never waits (`Shard::commit` has no awaits before
/// durability lands) to completion.
pub fn block_on<F: Future>(future: F) -> F::Output {
    fn noop_raw() -> RawWaker {
        fn clone(_: *const ()) -> RawWaker {
            noop_raw()
        }
        fn noop(_: *const ()) {}
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    // SAFETY: the vtable's functions ignore the (null) data pointer.
    let waker = unsafe { Waker::from_raw(noop_raw()) };
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    for _ in 0..1000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
    panic!("future did not complete");
}

pub fn config(
    cores: u16,
    core: u16,
    requirepass: Option<&str>,
    memory_limit_bytes: usize,
) -> ShardConfig {
    ShardConfig {
        core,
        topology: Rc::new(NodeTopology {
            announce_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: BASE_PORT,
            cores,
        }),
        requirepass: requirepass.map(str::to_owned),
        memory_limit_bytes,
        durability: Durability::Sync,
        flush_interval_ms: 10,
        tolerant_recovery: false,
        data_dir: PathBuf::from("/nonexistent"),
    }
}

/// Encodes a request as a RESP multibulk.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    tessera::net::client::resp::encode_command(&mut out, args);
    out
}

/// Splits a command line on spaces (no quoting) and encodes it.
pub fn line(command: &str) -> Vec<u8> {
    let args: Vec<&[u8]> = command.split(' ').map(str::as_bytes).collect();
    encode(&args)
}

/// A key whose slot `core` owns out of `cores`, from `prefix`.
pub fn key_on_core(prefix: &str, core: u16, cores: u16) -> String {
    let (first, last) = slot_range_of_core(core, cores);
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|key| (first..=last).contains(&key_slot(key.as_bytes())))
        .expect("some key lands on every core")
}

pub struct Client {
    pub shard: Shard,
    pub conn: Conn,
    pending: Vec<u8>,
    pub closed: bool,
}

impl Client {
    pub fn new() -> Client {
        Client::with_config(config(1, 0, None, MEMORY_LIMIT_BYTES))
    }

    pub fn with_config(config: ShardConfig) -> Client {
        let mut shard = Shard::new(config).expect("shard starts");
        let conn = shard.open(1);
        Client {
            shard,
            conn,
            pending: Vec::new(),
            closed: false,
        }
    }

    /// One network round: append `bytes` to the connection's buffer, handle
    /// it, commit, and return the replies.
    pub fn round(&mut self, bytes: &[u8]) -> Vec<u8> {
        assert!(!self.closed, "connection was closed");
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        let handled = self.shard.handle(&mut self.conn, &self.pending, &mut out);
        assert!(handled.consumed <= self.pending.len());
        self.pending.drain(..handled.consumed);
        self.closed = handled.close;
        self.shard.commit_round();
        out
    }

    /// One command (space separated, no quoting) in its own round.
    pub fn cmd(&mut self, command: &str) -> Vec<u8> {
        self.round(&line(command))
    }

    /// Like [`Client::cmd`], as a string for readable assertions.
    pub fn s(&mut self, command: &str) -> String {
        String::from_utf8(self.cmd(command)).expect("utf-8 reply")
    }

    pub fn args(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.round(&encode(args))
    }
}

/// A parsed reply, for assertions on structure.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Bool(bool),
    Double(String),
}

impl Value {
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Array(items) | Value::Set(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Value::Simple(s) => s.clone(),
            Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("not text: {other:?}"),
        }
    }
}

/// Parses one reply from the front of `input`; returns it and its length.
pub fn parse_reply(input: &[u8]) -> (Value, usize) {
    try_parse_reply(input).expect("a complete reply")
}

/// Like [`parse_reply`], `None` when `input` does not hold a whole reply yet.
pub fn try_parse_reply(input: &[u8]) -> Option<(Value, usize)> {
    let end = input.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&input[1..end]).unwrap().to_owned();
    let mut pos = end + 2;
    let count = |head: &str| head.parse::<i64>().unwrap();
    let value = match input[0] {
        b'+' => Value::Simple(head),
        b'-' => Value::Error(head),
        b':' => Value::Int(count(&head)),
        b'_' => Value::Null,
        b'#' => Value::Bool(head == "t"),
        b',' => Value::Double(head),
        b'$' if count(&head) < 0 => Value::Null,
        b'$' => {
            let len = count(&head) as usize;
            if input.len() < pos + len + 2 {
                return None;
            }
            let bytes = input[pos..pos + len].to_vec();
            assert_eq!(&input[pos + len..pos + len + 2], b"\r\n");
            pos += len + 2;
            Value::Bulk(bytes)
        }
        b'*' if count(&head) < 0 => Value::Null,
        b'*' | b'~' | b'%' => {
            let n = count(&head) as usize;
            let per = if input[0] == b'%' { 2 } else { 1 };
            let mut items = Vec::new();
            for _ in 0..n * per {
                let (item, used) = try_parse_reply(&input[pos..])?;
                pos += used;
                items.push(item);
            }
            match input[0] {
                b'*' => Value::Array(items),
                b'~' => Value::Set(items),
                _ => Value::Map(
                    items
                        .chunks(2)
                        .map(|pair| (pair[0].clone(), pair[1].clone()))
                        .collect(),
                ),
            }
        }
        other => panic!("unknown reply type {:?}", other as char),
    };
    Some((value, pos))
}

/// Parses a whole reply buffer that holds exactly one reply.
pub fn reply(input: &[u8]) -> Value {
    let (value, used) = parse_reply(input);
    assert_eq!(used, input.len(), "trailing bytes after the reply");
    value
}
