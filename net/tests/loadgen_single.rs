//! `tessera-bench --mode single` against a plain redis-server: the JSON has
//! sane numbers, the writes really landed, and `--plot` writes an SVG.

mod peers;

#[path = "peers/bench.rs"]
mod bench;

use bench::{assert_sane, run_bench};
use peers::{redis_cli, SingleRedis};

const PORT: u16 = 18051;

#[test]
fn single_mode_against_redis_server() {
    let redis = SingleRedis::start(PORT);
    let port = redis.server.port.to_string();
    let plot = std::env::temp_dir().join(format!("tessera-bench-plot-{}.svg", std::process::id()));
    let json = run_bench(&[
        "--mode",
        "single",
        "--port",
        &port,
        "--threads",
        "2",
        "--connections",
        "4",
        "--pipeline",
        "8",
        "--ratio",
        "1:1",
        "--keyspace",
        "1000",
        "--data-size",
        "8-64",
        "--requests",
        "20000",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let n = assert_sane(&json, 20000.0, 0.0);
    assert_eq!(
        n["commands.SET.requests"] + n["commands.GET.requests"],
        20000.0
    );
    assert!(n["commands.SET.requests"] > 5000.0, "1:1 mix: {json}");
    let keys: u64 = redis_cli(PORT, &["DBSIZE"]).parse().expect("DBSIZE");
    assert!(
        keys > 500 && keys <= 1000,
        "SETs landed within the keyspace: {keys}"
    );
    let length: u64 = redis_cli(PORT, &["STRLEN", &redis_cli(PORT, &["RANDOMKEY"])])
        .parse()
        .unwrap();
    assert!(
        (8..=64).contains(&length),
        "value size within --data-size: {length}"
    );
    let svg = std::fs::read_to_string(&plot).expect("--plot wrote the file");
    std::fs::remove_file(&plot).ok();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<polyline").count(),
        4,
        "ops, p50, p99 and the percentile curve"
    );

    // Read-only run with a fixed rate over a duration: the offered load
    // caps the throughput (a generous floor allows for a busy machine).
    let json = run_bench(&[
        "--mode",
        "single",
        "--port",
        &port,
        "--ratio",
        "0:1",
        "--keyspace",
        "1000",
        "--connections",
        "4",
        "--duration",
        "2",
        "--rate",
        "2000",
    ]);
    let n = numbers_of(&json);
    assert_eq!(n["errors"], 0.0);
    assert!(
        n["ops_per_sec"] <= 2200.0 && n["ops_per_sec"] >= 1000.0,
        "{json}"
    );
    assert!(!json.contains("\"SET\""), "no SET in a 0:1 mix");

    // A fixed rate with a request budget: every budgeted request is sent
    // (waiting for the schedule must not use the budget up), at the rate.
    let json = run_bench(&[
        "--mode",
        "single",
        "--port",
        &port,
        "--connections",
        "4",
        "--rate",
        "4000",
        "--requests",
        "2000",
    ]);
    let n = assert_sane(&json, 2000.0, 0.0);
    assert!(
        n["duration_s"] >= 0.4,
        "2000 requests at 4000/s take 0.5 s: {json}"
    );

    // `--congestion`: reno is built into every kernel and always allowed;
    // an algorithm the kernel lacks is a clear error before any load.
    let json = run_bench(&[
        "--mode",
        "single",
        "--port",
        &port,
        "--connections",
        "4",
        "--pipeline",
        "16",
        "--requests",
        "4000",
        "--congestion",
        "reno",
    ]);
    assert_sane(&json, 4000.0, 0.0);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tessera-bench"))
        .args(["--mode", "single", "--port", &port, "--requests", "100"])
        .args(["--congestion", "no_such_cc", "--quiet"])
        .output()
        .expect("running tessera-bench");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("congestion control no_such_cc"),
        "names the algorithm: {stderr}"
    );
}

fn numbers_of(json: &str) -> std::collections::HashMap<String, f64> {
    bench::numbers(json)
}
