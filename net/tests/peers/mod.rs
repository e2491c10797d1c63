//! Shared by the client and load generator tests: real Redis peers (a plain
//! `redis-server`, a three-node Redis Cluster) started and killed per test.
//!
//! Until the Tessera server is on main, the client and `tessera-bench` are
//! proven against a real Redis Cluster (three `redis-server
//! --cluster-enabled yes` nodes joined with `redis-cli --cluster create`)
//! and a plain `redis-server`. Each fixture kills its servers and removes
//! its files on drop. A missing redis binary panics: these tests never skip.
#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server or cluster may take to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Panic with a clear message when `binary` is not installed.
pub fn require(binary: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{binary} is required by this test (apt-get install redis-server redis-tools)"
    );
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Run `redis-cli -p port args...` and return its stdout, trimmed.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("running redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `redis-server` process, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start(port: u16, extra: &[&str], dir: &std::path::Path) -> RedisServer {
        require("redis-server");
        require("redis-cli");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--dir",
                dir.to_str().expect("utf-8 temp dir"),
                "--logfile",
                "",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning redis-server");
        let server = RedisServer {
            port,
            child: Some(child),
        };
        wait_for(&format!("redis-server on {port}"), || {
            redis_cli(port, &["PING"]) == "PONG"
        });
        server
    }

    /// Kill the server now (a node dying mid-operation).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain (non-cluster) redis-server with its own scratch dir.
pub struct SingleRedis {
    pub server: RedisServer,
    dir: PathBuf,
}

impl SingleRedis {
    pub fn start(port: u16) -> SingleRedis {
        let dir = scratch_dir(&format!("single-{port}"));
        SingleRedis {
            server: RedisServer::start(port, &[], &dir),
            dir,
        }
    }
}

impl Drop for SingleRedis {
    fn drop(&mut self) {
        self.server.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A three-master Redis Cluster on `ports`, slots split evenly by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    pub fn start(ports: [u16; 3]) -> RedisCluster {
        let dir = scratch_dir(&format!("cluster-{}", ports[0]));
        let nodes: Vec<RedisServer> = ports
            .iter()
            .map(|&port| {
                let config_file = dir.join(format!("nodes-{port}.conf"));
                RedisServer::start(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        config_file.to_str().expect("utf-8 temp dir"),
                        "--cluster-node-timeout",
                        "5000",
                    ],
                    &dir,
                )
            })
            .collect();
        let cluster = RedisCluster { nodes, dir };
        let endpoints: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&endpoints)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        for &port in &ports {
            wait_for(&format!("cluster_state:ok on {port}"), || {
                redis_cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    && redis_cli(port, &["CLUSTER", "SLOTS"]).lines().count() > 3 * 3
            });
        }
        // `cluster_state:ok` on each node is not agreement: right after the
        // create a node can still see an older owner for some slots (a test
        // that bootstrapped from it then failed). Wait until every node
        // reports the same owner for every slot.
        wait_for("every node agrees on the slot owners", || {
            let first = cluster.slot_owners_from(ports[0]);
            first.iter().all(|&owner| owner != 0)
                && ports[1..]
                    .iter()
                    .all(|&port| cluster.slot_owners_from(port) == first)
        });
        cluster
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The 40-hex node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        redis_cli(port, &["CLUSTER", "MYID"])
    }

    /// The port whose node owns `slot`, asked of the cluster itself.
    pub fn owner_port(&self, slot: u16) -> u16 {
        self.slot_owners()[usize::from(slot)]
    }

    /// The owning port of every slot, from one `CLUSTER NODES`.
    pub fn slot_owners(&self) -> Vec<u16> {
        let owners = self.slot_owners_from(self.nodes[0].port);
        assert!(owners.iter().all(|&p| p != 0), "every slot is owned");
        owners
    }

    /// The owning port of every slot as the node on `port` sees it (0 for a
    /// slot it knows no owner of).
    fn slot_owners_from(&self, port: u16) -> Vec<u16> {
        let mut owners = vec![0u16; 16384];
        let nodes = redis_cli(port, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let port: u16 = fields[1]
                .split(['@', ':'])
                .nth(1)
                .expect("ip:port@cport")
                .parse()
                .expect("port");
            for range in &fields[8..] {
                if range.starts_with('[') {
                    continue; // a migrating/importing marker, not ownership
                }
                let (start, end) = match range.split_once('-') {
                    Some((s, e)) => (s.parse::<usize>().unwrap(), e.parse::<usize>().unwrap()),
                    None => (
                        range.parse::<usize>().unwrap(),
                        range.parse::<usize>().unwrap(),
                    ),
                };
                owners[start..=end]
                    .iter_mut()
                    .for_each(|owner| *owner = port);
            }
        }
        owners
    }

    /// Move `slot` (and its keys) from `from` to `to` the way
    /// `redis-cli --cluster reshard` does, and tell every node.
    pub fn migrate_slot(&self, slot: u16, from: u16, to: u16) {
        let slot_text = slot.to_string();
        let from_id = self.node_id(from);
        let to_id = self.node_id(to);
        assert_eq!(
            redis_cli(
                to,
                &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &from_id]
            ),
            "OK"
        );
        assert_eq!(
            redis_cli(
                from,
                &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &to_id]
            ),
            "OK"
        );
        loop {
            let keys = redis_cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot_text, "100"]);
            if keys.is_empty() {
                break;
            }
            for key in keys.lines() {
                let reply = redis_cli(
                    from,
                    &["MIGRATE", "127.0.0.1", &to.to_string(), key, "0", "5000"],
                );
                assert_eq!(reply, "OK", "MIGRATE {key}");
            }
        }
        for port in self.ports() {
            assert_eq!(
                redis_cli(port, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]),
                "OK"
            );
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run `future` on a fresh glommio executor with a small `io_memory`
/// (RLIMIT_MEMLOCK is 8 MiB on the test machines).
pub fn run_glommio<G, F, T>(make: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .io_memory(512 * 1024)
        .spawn(make)
        .expect("starting a glommio executor")
        .join()
        .expect("the executor thread finished")
}
