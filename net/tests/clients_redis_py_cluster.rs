//! redis-py's `RedisCluster` (RESP2, then RESP3) bootstraps from one core's
//! `CLUSTER SLOTS` and `COMMAND`, then reads and writes keys over both cores:
//! plain keys, expiry, counters, hash-tagged and cross-slot multi-key
//! commands, pipelines, SCAN over every node, bad input as `ResponseError`.
//! The checks live in `clients/redis_py_cluster.py`.

mod clients;
mod support;

use std::process::Command;
use support::{require_tool, Server};

const BASE_PORT: u16 = 17610;

/// Fails loudly, with the install hint, when the module is missing or old.
fn require_redis_py(python: &std::path::Path) {
    let output = clients::run(
        {
            let mut command = Command::new(python);
            command.args([
                "-c",
                "import sys, redis; \
                 sys.exit(0 if int(redis.__version__.split('.')[0]) >= 5 else 1)",
            ]);
            command
        },
        clients::CLIENT_RUN_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "python3 module `redis` >= 5 is required by this test and is missing or too old: \
         `python3 -m pip install 'redis>=5'` (.ci/run installs it)\n{}",
        clients::text(&output)
    );
}

#[test]
fn redis_py_cluster_client_speaks_resp2_and_resp3_over_both_cores() {
    let python = require_tool("python3");
    require_redis_py(&python);
    let _server = Server::start(BASE_PORT, "clients-redis-py", &[]);
    // Each protocol enters through a different core; keys are named by
    // protocol, so the two runs do not see each other's keys.
    for (protocol, entry_port) in [("2", BASE_PORT), ("3", BASE_PORT + 1)] {
        let mut command = Command::new(&python);
        command.arg(clients::script("redis_py_cluster.py")).args([
            "127.0.0.1",
            &entry_port.to_string(),
            protocol,
        ]);
        let output = clients::run(command, clients::CLIENT_RUN_TIMEOUT);
        let text = clients::text(&output);
        assert!(
            output.status.success(),
            "redis-py RESP{protocol}: {}\n{text}",
            output.status
        );
        assert!(
            text.contains(&format!("RedisCluster RESP{protocol}: ok")),
            "redis-py RESP{protocol} did not finish: {text}"
        );
    }
}
