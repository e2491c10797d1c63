//! The command layer alone, in-process: one core's `Shard` handling a
//! pipelined round of GET/SET requests and committing it, no network.
//! Two key spaces: 10k keys, whose records stay in the CPU's caches, and 1M
//! keys, where every lookup misses them as the server's do under a real
//! load (so prefetching shows). `MIXED` alternates SET and GET, 1:1.
//! Run: `cargo bench --bench commands -- --warm-up-time 1 --measurement-time 3`

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::rc::Rc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tessera::net::commands::Shard;
use tessera::net::handler::{Durability, Handler, NodeTopology, ShardConfig};

const PIPELINE_DEPTH: usize = 64;
const KEY_SPACES: [usize; 2] = [10_000, 1_000_000];
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

/// `rounds` pipelines of `PIPELINE_DEPTH` requests over `keys` keys, in a
/// scattered order; `MIXED` makes every other request a SET, the rest GETs.
fn pipelines(command: &[u8], keys: usize, rounds: usize) -> Vec<Vec<u8>> {
    let value = vec![b'v'; VALUE_LEN];
    (0..rounds)
        .map(|round| {
            let mut input = Vec::new();
            for i in 0..PIPELINE_DEPTH {
                let n = round * PIPELINE_DEPTH + i;
                let key = format!("key:{:07}", n * 7919 % keys);
                let set = command == b"SET" || (command == b"MIXED" && n % 2 == 0);
                if set {
                    encode(&mut input, &[b"SET", key.as_bytes(), &value]);
                } else if command == b"MIXED" {
                    encode(&mut input, &[b"GET", key.as_bytes()]);
                } else {
                    encode(&mut input, &[command, key.as_bytes()]);
                }
            }
            input
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for keys in KEY_SPACES {
        let mut group = c.benchmark_group(format!("shard_round_{}k_keys", keys / 1000));
        group.throughput(Throughput::Elements(PIPELINE_DEPTH as u64));
        for command in [&b"SET"[..], b"GET", b"MIXED"] {
            let mut shard = shard();
            let mut conn = shard.open(1);
            let mut out = Vec::with_capacity(1 << 20);
            for input in pipelines(b"SET", keys, keys / PIPELINE_DEPTH + 1) {
                shard.handle(&mut conn, &input, &mut out);
                shard.commit_round();
                out.clear();
            }
            let inputs = pipelines(command, keys, 4096);
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
