//! The command layer alone, in-process: one core's `Shard` handling a
//! pipelined round of GET/SET requests and committing it, no network.
//! Run: `cargo bench --bench commands -- --warm-up-time 1 --measurement-time 3`

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tessera::net::commands::Shard;
use tessera::net::handler::{Durability, Handler, NodeTopology, ShardConfig};

const PIPELINE_DEPTH: usize = 64;
const KEYS: usize = 10_000;
const VALUE_LEN: usize = 32;

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn shard() -> Shard {
    Shard::new(ShardConfig {
        core: 0,
        topology: Rc::new(NodeTopology {
            announce_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 7000,
            cores: 1,
        }),
        requirepass: None,
        memory_limit_bytes: 1 << 30,
        durability: Durability::Async,
        flush_interval_ms: 10,
        tolerant_recovery: false,
        data_dir: PathBuf::from("/nonexistent"),
    })
    .expect("shard starts")
}

/// `rounds` pipelines of `PIPELINE_DEPTH` requests over `KEYS` keys.
fn pipelines(command: &[u8], rounds: usize) -> Vec<Vec<u8>> {
    let value = vec![b'v'; VALUE_LEN];
    (0..rounds)
        .map(|round| {
            let mut input = Vec::new();
            for i in 0..PIPELINE_DEPTH {
                let key = format!("key:{:05}", (round * PIPELINE_DEPTH + i) * 7919 % KEYS);
                if command == b"SET" {
                    encode(&mut input, &[b"SET", key.as_bytes(), &value]);
                } else {
                    encode(&mut input, &[command, key.as_bytes()]);
                }
            }
            input
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard_round");
    group.throughput(Throughput::Elements(PIPELINE_DEPTH as u64));
    for command in [&b"SET"[..], b"GET"] {
        let mut shard = shard();
        let mut conn = shard.open(1);
        let mut out = Vec::with_capacity(1 << 20);
        for input in pipelines(b"SET", KEYS / PIPELINE_DEPTH + 1) {
            shard.handle(&mut conn, &input, &mut out);
            shard.commit_round();
            out.clear();
        }
        let inputs = pipelines(command, 256);
        let mut next = 0;
        let name = String::from_utf8_lossy(command).into_owned();
        group.bench_function(name, |b| {
            b.iter(|| {
                let input = &inputs[next % inputs.len()];
                next += 1;
                out.clear();
                let handled = shard.handle(&mut conn, input, &mut out);
                assert_eq!(handled.consumed, input.len());
                shard.commit_round();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
