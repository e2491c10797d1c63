//! `redis-benchmark --cluster` reads `CLUSTER NODES`, picks a `{tag}` for
//! each core and runs its tests (inline and multibulk PING, SET, GET, INCR,
//! MSET) pipelined to the end with no error; afterwards each core holds the
//! benchmark's keys and the INCR counters add up to every INCR it sent.

mod clients;
mod support;

use redis::Commands;
use std::process::Command;
use support::{require_tool, Server};

const BASE_PORT: u16 = 17600;
/// Divisible by the pipeline depth, so redis-benchmark issues exactly this
/// many requests per test (it hands them out a pipeline at a time).
const REQUESTS: u32 = 20_000;
const PIPELINE: u32 = 8;

/// Words redis-benchmark prints when a reply or the topology was wrong.
const ERROR_MARKERS: &[&str] = &["ERR", "Error", "MOVED", "ASK ", "Invalid", "CROSSSLOT"];

fn benchmark(redis_benchmark: &std::path::Path, tests: &str) -> String {
    let mut command = Command::new(redis_benchmark);
    command.args([
        "--cluster",
        "-h",
        "127.0.0.1",
        "-p",
        &BASE_PORT.to_string(),
        "-n",
        &REQUESTS.to_string(),
        "-c",
        "20",
        "-P",
        &PIPELINE.to_string(),
        "-t",
        tests,
        "-q",
    ]);
    let output = clients::run(command, clients::CLIENT_RUN_TIMEOUT);
    let text = clients::text(&output);
    assert!(
        output.status.success(),
        "redis-benchmark -t {tests}: {}\n{text}",
        output.status
    );
    for marker in ERROR_MARKERS {
        assert!(!text.contains(marker), "`{marker}` in the output:\n{text}");
    }
    assert!(
        text.contains("Cluster has 2 master nodes"),
        "redis-benchmark did not see both cores:\n{text}"
    );
    text
}

/// Requests per second of each finished test: `NAME: 12345.67 requests per
/// second, ...` (progress lines, separated by `\r`, carry `rps=` instead).
fn results(text: &str) -> Vec<(String, f64)> {
    text.split(['\r', '\n'])
        .filter_map(|line| {
            let (name, rest) = line.trim().split_once(": ")?;
            let (rate, _) = rest.split_once(" requests per second")?;
            Some((name.to_string(), rate.parse().ok()?))
        })
        .collect()
}

fn check_tests_ran(text: &str, expected: &[&str]) {
    let results = results(text);
    for name in expected {
        let rate = results
            .iter()
            .find(|(ran, _)| ran == name)
            .map(|(_, rate)| *rate);
        match rate {
            Some(rate) => assert!(rate > 0.0, "{name}: {rate} requests per second"),
            None => panic!("no result for {name}:\n{text}"),
        }
    }
}

#[test]
fn redis_benchmark_cluster_runs_every_test_to_the_end_on_both_cores() {
    let redis_benchmark = require_tool("redis-benchmark");
    let _server = Server::start(BASE_PORT, "clients-redis-benchmark", &[]);

    let text = benchmark(&redis_benchmark, "ping,set,get,incr,mset");
    check_tests_ran(
        &text,
        &[
            "PING_INLINE",
            "PING_MBULK",
            "SET",
            "GET",
            "INCR",
            "MSET (10 keys)",
        ],
    );
    // Inline commands on their own, so a failure names them.
    let text = benchmark(&redis_benchmark, "ping_inline");
    check_tests_ran(&text, &["PING_INLINE"]);

    // redis-benchmark names its keys `key:{tag}:__rand_int__` and
    // `counter:{tag}:__rand_int__`, one tag per core.
    let mut counted = 0;
    for port in [BASE_PORT, BASE_PORT + 1] {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let mut con = client.get_connection().unwrap();
        let keys: Vec<String> = con.keys("key:*").unwrap();
        assert_eq!(keys.len(), 1, "core on {port}: {keys:?}");
        // SET and MSET write 3-byte values (redis-benchmark's default -d).
        let value: Vec<u8> = con.get(&keys[0]).unwrap();
        assert_eq!(value.len(), 3, "{}: {value:?}", keys[0]);
        let counters: Vec<String> = con.keys("counter:*").unwrap();
        assert_eq!(counters.len(), 1, "core on {port}: {counters:?}");
        let count: u64 = con.get(&counters[0]).unwrap();
        assert!(count > 0, "core on {port} took no INCR");
        counted += count;
    }
    assert_eq!(
        counted,
        u64::from(REQUESTS),
        "INCRs applied over both cores"
    );
}
