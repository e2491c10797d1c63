//! The smart client proper: routing, redirects, retries and the tend loop.
//!
//! Like Aerospike's client, it learns the partition (slot) map from the
//! cluster and sends every request one hop to the owning node. The map is
//! kept fresh two ways: a `-MOVED` patches its slot at once and triggers a
//! full refresh, and a tend task refreshes it on a timer so that moves with
//! no traffic on them are noticed too. `-ASK` is followed for that one
//! request only (prefixed by `ASKING`) and never changes the map.
//!
//! Every request is bounded: a timeout per round trip, at most
//! [`REDIRECTS_MAX`] redirects, and at most `retries_max` retries after a
//! transient failure (I/O, timeout, protocol). Retries re-send the command,
//! so a non-idempotent command (`INCR`) may apply twice if a reply was lost;
//! set `retries_max` to 0 for at-most-once.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use glommio::task::JoinHandle;

use super::conn::{Connection, Pool};
use super::resp::{encode_command, Reply};
use super::topology::{Redirect, SlotMap};
use super::ClientError;
use crate::cluster::key_slot;

/// Redirects (`MOVED` + `ASK`) one request may follow before giving up; a
/// healthy cluster needs at most two (one MOVED, then one ASK mid-migration).
pub const REDIRECTS_MAX: usize = 5;
/// Commands one [`Client::pipeline`] call may carry.
pub const PIPELINE_COMMANDS_MAX: usize = 4096;
/// Arguments one command may carry.
pub const COMMAND_ARGS_MAX: usize = 1024;
/// Longest key the client will route (Redis's own limit is far larger; ours
/// keeps a buggy caller from shipping megabytes as a key).
pub const KEY_LEN_MAX: usize = 64 * 1024;
/// Seed addresses tried at bootstrap.
pub const SEEDS_MAX: usize = 64;
/// Pause before retrying after `-TRYAGAIN` (a multi-key op met a migration).
const TRYAGAIN_BACKOFF: Duration = Duration::from_millis(10);

/// Knobs of a [`Client`]. `Default` suits a local cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Limit on one round trip (write the batch, read every reply).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Period of the tend loop's `CLUSTER SLOTS` refresh.
    pub tend_interval: Duration,
    /// Retries after a transient failure, per request.
    pub retries_max: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            tend_interval: Duration::from_secs(1),
            retries_max: 2,
        }
    }
}

/// A cluster-aware client. Cheap to clone; clones share the map and pools.
/// Lives on one glommio executor (it is `!Send`, like glommio's sockets).
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

struct Inner {
    config: ClientConfig,
    seeds: Vec<SocketAddr>,
    map: RefCell<SlotMap>,
    pools: RefCell<HashMap<SocketAddr, Rc<Pool>>>,
    refreshing: Cell<bool>,
    refreshes: Cell<u64>,
    tend: RefCell<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(tend) = self.tend.get_mut().take() {
            tend.cancel();
        }
    }
}

impl Client {
    /// Bootstrap from any of `seeds` with `CLUSTER SLOTS` and start the tend
    /// loop. Fails if no seed answers with a usable map.
    pub async fn connect(
        seeds: &[SocketAddr],
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        if seeds.is_empty() || seeds.len() > SEEDS_MAX {
            return Err(ClientError::InvalidArgument {
                what: "seed list",
                len: seeds.len(),
                max: SEEDS_MAX,
            });
        }
        let map = fetch_map(seeds, &config).await?;
        let client = Client {
            inner: Rc::new(Inner {
                config,
                seeds: seeds.to_vec(),
                map: RefCell::new(map),
                pools: RefCell::new(HashMap::new()),
                refreshing: Cell::new(false),
                refreshes: Cell::new(0),
                tend: RefCell::new(None),
            }),
        };
        let weak = Rc::downgrade(&client.inner);
        let period = client.inner.config.tend_interval;
        let tend = glommio::spawn_local(tend_loop(weak, period)).detach();
        *client.inner.tend.borrow_mut() = Some(tend);
        Ok(client)
    }

    /// A copy of the current slot map.
    pub fn slot_map(&self) -> SlotMap {
        self.inner.map.borrow().clone()
    }

    /// How many map refreshes (`CLUSTER SLOTS` fetches) have succeeded
    /// since bootstrap, whether or not the map changed.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.get()
    }

    /// Re-read the map now. Concurrent callers share one refresh.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        refresh(&self.inner).await
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        match self.command(&[b"GET", key]).await? {
            Reply::Bulk(value) => Ok(value),
            other => Err(unexpected("GET", &other)),
        }
    }

    pub async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        match self.command(&[b"SET", key, value]).await? {
            Reply::Status(status) if status == "OK" => Ok(()),
            other => Err(unexpected("SET", &other)),
        }
    }

    /// Returns whether the key existed.
    pub async fn del(&self, key: &[u8]) -> Result<bool, ClientError> {
        match self.command(&[b"DEL", key]).await? {
            Reply::Integer(count) => Ok(count > 0),
            other => Err(unexpected("DEL", &other)),
        }
    }

    /// Send any single-key (or keyless) command, routed by `args[1]` when
    /// present. An error reply other than a redirect is `ClientError::Server`.
    pub async fn command(&self, args: &[&[u8]]) -> Result<Reply, ClientError> {
        check_command(args)?;
        let slot = args.get(1).map_or(0, |key| key_slot(key));
        let mut encoded = Vec::new();
        encode_command(&mut encoded, args);
        execute(&self.inner, slot, &encoded).await
    }

    /// Send many commands at once: grouped by owning node, each group is
    /// written as one pipeline on one connection, all groups concurrently.
    /// Results come back in the order of `commands`; a command that met a
    /// redirect is re-sent on its own, so one moved slot costs one extra
    /// round trip for that command only.
    pub async fn pipeline(&self, commands: &[Vec<Vec<u8>>]) -> Vec<Result<Reply, ClientError>> {
        assert!(
            commands.len() <= PIPELINE_COMMANDS_MAX,
            "pipeline longer than {PIPELINE_COMMANDS_MAX}"
        );
        let mut results: Vec<Option<Result<Reply, ClientError>>> =
            (0..commands.len()).map(|_| None).collect();
        let mut groups: HashMap<SocketAddr, (Vec<usize>, Vec<u8>)> = HashMap::new();
        for (index, command) in commands.iter().enumerate() {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            if let Err(error) = check_command(&args) {
                results[index] = Some(Err(error));
                continue;
            }
            let slot = args.get(1).map_or(0, |key| key_slot(key));
            let Some(node) = self.inner.map.borrow().owner(slot) else {
                results[index] = Some(Err(ClientError::ClusterDown { slot }));
                continue;
            };
            let (indexes, encoded) = groups.entry(node).or_default();
            indexes.push(index);
            encode_command(encoded, &args);
        }
        let tasks: Vec<_> = groups
            .into_iter()
            .map(|(node, (indexes, encoded))| {
                let inner = self.inner.clone();
                let count = indexes.len();
                let task =
                    glommio::spawn_local(
                        async move { round_trip(&inner, node, &encoded, count).await },
                    );
                (indexes, task)
            })
            .collect();
        for (indexes, task) in tasks {
            match task.await {
                Ok(replies) => {
                    for (index, reply) in indexes.into_iter().zip(replies) {
                        results[index] = Some(match reply {
                            Reply::Error(message) if Redirect::parse(&message).is_some() => {
                                let args: Vec<&[u8]> =
                                    commands[index].iter().map(Vec::as_slice).collect();
                                self.command(&args).await
                            }
                            Reply::Error(message) => Err(ClientError::Server(message)),
                            reply => Ok(reply),
                        });
                    }
                }
                Err(_group_failed) => {
                    // The whole group's connection failed: retry each command
                    // alone, which brings the usual retry and refresh logic.
                    for index in indexes {
                        let args: Vec<&[u8]> = commands[index].iter().map(Vec::as_slice).collect();
                        results[index] = Some(self.command(&args).await);
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|result| result.expect("every command answered"))
            .collect()
    }

    /// Send `args` to one specific node, bypassing routing (for node-level
    /// commands such as `SCAN`, `DBSIZE`, `CLUSTER ...`). Retried like any
    /// request, but never redirected.
    pub async fn command_on(&self, node: SocketAddr, args: &[&[u8]]) -> Result<Reply, ClientError> {
        check_command(args)?;
        let mut encoded = Vec::new();
        encode_command(&mut encoded, args);
        let mut attempts = 0;
        loop {
            match round_trip(&self.inner, node, &encoded, 1).await {
                Ok(mut replies) => {
                    return match replies.pop().expect("one reply") {
                        Reply::Error(message) => Err(ClientError::Server(message)),
                        reply => Ok(reply),
                    }
                }
                Err(error) if error.is_transient() && attempts < self.inner.config.retries_max => {
                    attempts += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Send a prepared pipeline of `count` commands to `node` in one round
    /// trip, without retries: used by the scan, which reports a failed node
    /// rather than hiding it.
    pub(crate) async fn round_trip_on(
        &self,
        node: SocketAddr,
        encoded: &[u8],
        count: usize,
    ) -> Result<Vec<Reply>, ClientError> {
        round_trip(&self.inner, node, encoded, count).await
    }
}

fn check_command(args: &[&[u8]]) -> Result<(), ClientError> {
    if args.is_empty() || args.len() > COMMAND_ARGS_MAX {
        return Err(ClientError::InvalidArgument {
            what: "argument list",
            len: args.len(),
            max: COMMAND_ARGS_MAX,
        });
    }
    if let Some(key) = args.get(1) {
        if key.len() > KEY_LEN_MAX {
            return Err(ClientError::InvalidArgument {
                what: "key",
                len: key.len(),
                max: KEY_LEN_MAX,
            });
        }
    }
    Ok(())
}

fn unexpected(command: &'static str, reply: &Reply) -> ClientError {
    ClientError::UnexpectedReply {
        command,
        detail: format!("{reply:?}"),
    }
}

/// One request with redirects and retries, routed by `slot`.
async fn execute(inner: &Rc<Inner>, slot: u16, encoded: &[u8]) -> Result<Reply, ClientError> {
    let mut redirects = 0;
    let mut attempts = 0;
    let mut ask_target: Option<SocketAddr> = None;
    let mut asking = Vec::new();
    loop {
        let replies = if let Some(target) = ask_target.take() {
            // ASKING applies to the next command on the same connection only,
            // so both travel in one pipeline.
            asking.clear();
            encode_command(&mut asking, &[b"ASKING"]);
            asking.extend_from_slice(encoded);
            round_trip(inner, target, &asking, 2).await
        } else {
            let node = inner
                .map
                .borrow()
                .owner(slot)
                .ok_or(ClientError::ClusterDown { slot })?;
            round_trip(inner, node, encoded, 1).await
        };
        let reply = match replies {
            Ok(mut replies) => replies.pop().expect("at least one reply"),
            Err(error) if error.is_transient() && attempts < inner.config.retries_max => {
                attempts += 1;
                // The node may be gone for good; a fresh map may route
                // elsewhere. A failed refresh leaves the old map in place.
                let _ = refresh(inner).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let Reply::Error(message) = reply else {
            return Ok(reply);
        };
        match Redirect::parse(&message) {
            Some(redirect) => {
                redirects += 1;
                let (Redirect::Moved { to, .. } | Redirect::Ask { to, .. }) = redirect;
                if redirects > REDIRECTS_MAX {
                    return Err(ClientError::Redirect {
                        slot,
                        to,
                        redirects,
                    });
                }
                match redirect {
                    Redirect::Moved { slot: moved, to } => {
                        inner.map.borrow_mut().assign(moved, to)?;
                        // Other slots probably moved with this one.
                        let _ = refresh(inner).await;
                    }
                    Redirect::Ask { to, .. } => ask_target = Some(to),
                }
            }
            None if message.starts_with("TRYAGAIN") && attempts < inner.config.retries_max => {
                attempts += 1;
                glommio::timer::sleep(TRYAGAIN_BACKOFF).await;
            }
            None if message.starts_with("CLUSTERDOWN") => {
                return Err(ClientError::ClusterDown { slot })
            }
            None => return Err(ClientError::Server(message)),
        }
    }
}

/// One pipelined round trip on a pooled connection to `node`. A failed
/// connection is dropped along with the node's idle ones.
async fn round_trip(
    inner: &Rc<Inner>,
    node: SocketAddr,
    encoded: &[u8],
    count: usize,
) -> Result<Vec<Reply>, ClientError> {
    let pool = inner.pools.borrow_mut().entry(node).or_default().clone();
    let mut conn = pool.take(node, inner.config.connect_timeout).await?;
    assert_eq!(conn.node(), node);
    match conn
        .round_trip(encoded, count, inner.config.request_timeout)
        .await
    {
        Ok(replies) => {
            pool.give_back(conn);
            Ok(replies)
        }
        Err(error) => {
            pool.clear();
            Err(error)
        }
    }
}

async fn refresh(inner: &Rc<Inner>) -> Result<(), ClientError> {
    if inner.refreshing.replace(true) {
        return Ok(());
    }
    // Known nodes first (they are the live cluster), then the seeds.
    let mut candidates: Vec<SocketAddr> = inner.map.borrow().nodes().to_vec();
    for seed in &inner.seeds {
        if !candidates.contains(seed) {
            candidates.push(*seed);
        }
    }
    let fetched = fetch_map(&candidates, &inner.config).await;
    inner.refreshing.set(false);
    let map = fetched?;
    let changed = *inner.map.borrow() != map;
    if changed {
        // Pools of nodes that left the map would only ever fail.
        inner
            .pools
            .borrow_mut()
            .retain(|node, _| map.nodes().contains(node));
        *inner.map.borrow_mut() = map;
    }
    inner.refreshes.set(inner.refreshes.get() + 1);
    Ok(())
}

/// Ask each candidate in turn for `CLUSTER SLOTS` until one answers.
async fn fetch_map(
    candidates: &[SocketAddr],
    config: &ClientConfig,
) -> Result<SlotMap, ClientError> {
    let mut encoded = Vec::new();
    encode_command(&mut encoded, &[b"CLUSTER", b"SLOTS"]);
    let mut last = None;
    for &node in candidates {
        let attempt = async {
            let mut conn = Connection::open(node, config.connect_timeout).await?;
            let mut replies = conn.round_trip(&encoded, 1, config.request_timeout).await?;
            SlotMap::from_cluster_slots(&replies.pop().expect("one reply"), node)
        };
        match attempt.await {
            Ok(map) if map.nodes().is_empty() => {
                last = Some(ClientError::UnexpectedReply {
                    command: "CLUSTER SLOTS",
                    detail: "no slots assigned".into(),
                })
            }
            Ok(map) => return Ok(map),
            Err(error) => last = Some(error),
        }
    }
    Err(ClientError::NoSeedReachable {
        tried: candidates.len(),
        last: Box::new(last.expect("at least one candidate")),
    })
}

async fn tend_loop(inner: Weak<Inner>, period: Duration) {
    loop {
        glommio::timer::sleep(period).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        // A failed tend keeps the old map; requests will retry and refresh.
        let _ = refresh(&inner).await;
    }
}
