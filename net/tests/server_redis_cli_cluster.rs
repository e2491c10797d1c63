//! `redis-cli -c` writes and reads keys across both cores, following MOVED
//! between the two ports.

mod support;

use std::process::Command;
use support::{require_tool, Server};

fn cli(redis_cli: &std::path::Path, port: u16, args: &[&str]) -> String {
    let output = Command::new(redis_cli)
        .args(["-c", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn redis_cli_follows_moved_across_cores() {
    let redis_cli = require_tool("redis-cli");
    let _server = Server::start(17240, "redis-cli", &[]);
    let mut slots_by_core = [0usize; 2];
    for i in 0..40 {
        let key = format!("key:{i}");
        let value = format!("value-{i}");
        // Always enter through core 0; redis-cli follows MOVED.
        assert_eq!(cli(&redis_cli, 17240, &["SET", &key, &value]), "OK");
        let slot: u16 = cli(&redis_cli, 17240, &["CLUSTER", "KEYSLOT", &key])
            .parse()
            .unwrap();
        slots_by_core[usize::from(slot >= 8192)] += 1;
    }
    assert!(
        slots_by_core[0] > 0 && slots_by_core[1] > 0,
        "keys on both cores: {slots_by_core:?}"
    );
    for i in 0..40 {
        // Read back entering through core 1.
        let key = format!("key:{i}");
        assert_eq!(cli(&redis_cli, 17241, &["GET", &key]), format!("value-{i}"));
    }
    let sizes: Vec<u64> = [17240, 17241]
        .iter()
        .map(|&port| cli(&redis_cli, port, &["DBSIZE"]).parse().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 40);
    assert!(sizes.iter().all(|&size| size > 0), "{sizes:?}");
}
