//! Running the `tessera-bench` binary and reading its `--json` output.

use std::collections::HashMap;
use std::process::Command;

/// Run `tessera-bench args... --json --quiet`; panic with its stderr on failure.
pub fn run_bench(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tessera-bench"))
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("running tessera-bench");
    assert!(
        output.status.success(),
        "tessera-bench {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 JSON")
}

/// Every `"name":number` pair of a flat-enough JSON object, by dotted path
/// (`latency_us.p50`, `commands.SET.requests`). Enough for our own output,
/// whose shape the report's unit test pins down.
pub fn numbers(json: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut path: Vec<String> = Vec::new();
    let mut pending_key: Option<String> = None;
    let bytes = json.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                let end = at + 1 + json[at + 1..].find('"').expect("closing quote");
                let text = json[at + 1..end].to_string();
                at = end + 1;
                if bytes.get(at) == Some(&b':') {
                    pending_key = Some(text);
                    at += 1;
                } else {
                    pending_key = None;
                }
                continue;
            }
            b'{' => {
                if let Some(key) = pending_key.take() {
                    path.push(key);
                }
            }
            b'}' => {
                path.pop();
            }
            b'-' | b'0'..=b'9' => {
                let end = at + json[at..].find([',', '}']).expect("number ends");
                if let Some(key) = pending_key.take() {
                    let mut full = path.clone();
                    full.push(key);
                    out.insert(full.join("."), json[at..end].parse().expect("a number"));
                }
                at = end;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    out
}

/// Assert the run's numbers are sane: positive throughput, ordered
/// percentiles, and the expected request count and error count.
pub fn assert_sane(json: &str, requests: f64, errors: f64) -> HashMap<String, f64> {
    let n = numbers(json);
    assert_eq!(n["requests"], requests, "{json}");
    assert_eq!(n["errors"], errors, "{json}");
    assert!(n["ops_per_sec"] > 0.0, "{json}");
    assert!(n["bytes_per_sec"] > 0.0, "{json}");
    let p = ["p50", "p90", "p99", "p999", "max"].map(|q| n[&format!("latency_us.{q}")]);
    assert!(p[0] > 0.0, "{json}");
    assert!(
        p.windows(2).all(|w| w[0] <= w[1]),
        "percentiles ordered: {json}"
    );
    // A loopback request takes well under a second even on a busy machine.
    assert!(p[0] < 1_000_000.0, "{json}");
    n
}
