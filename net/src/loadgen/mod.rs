//! `tessera-bench`, the load generator, as a library.
//!
//! On a two-core machine the load generator gets one core against the
//! server's one, so it must spend far less CPU per request than the server
//! or every figure measures the load generator. Hence its shape:
//!
//! - one pinned thread per io_uring ring (`ring`), many connections per
//!   thread, every queued operation submitted in one `io_uring_enter`;
//! - buffers allocated once per connection at start; the hot loop encodes
//!   commands in place and only frames replies (counts them, notes errors);
//! - cluster-aware: it reads `CLUSTER SLOTS` once, opens connections per
//!   (thread, port) and draws each connection's keys from the pool of keys
//!   that port owns (`workload`), so no request is ever redirected;
//! - HDR histograms per thread and command, merged at the end (`stats`).
//!
//! It does not follow `-MOVED`/`-ASK` (they count as errors): the topology
//! must hold still during a run, which is what a benchmark wants anyway.

mod config;
mod plot;
mod report;
mod ring;
mod stats;
mod wire;
mod workload;

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

pub use config::{Config, ConfigError, KeyPattern, Mode, Stop, USAGE};
pub use plot::write_svg;
pub use report::Report;
pub use stats::{Command, CommandStats, RunStats, Sample};
pub use workload::Rng;

use crate::client::resp::{decode_reply, encode_command};
use crate::client::{ClientError, SlotMap};
use crate::cluster::key_slot;
use ring::{allowed_cpus, run_thread, RunShared, Target, ThreadPlan};
use stats::{new_histogram, percentiles_us, LiveSlot};
use workload::{write_key, KeyPool, Zipf, KEY_LEN};

/// How long discovery may wait for `CLUSTER SLOTS`.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Period of the progress line and of the plot's time series.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Main thread's polling step while the load threads run.
const POLL_STEP: Duration = Duration::from_millis(20);

#[derive(Debug)]
#[non_exhaustive]
pub enum LoadgenError {
    Config(ConfigError),
    Resolve {
        host: String,
        source: std::io::Error,
    },
    Discovery {
        addr: SocketAddr,
        source: ClientError,
    },
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    Ring {
        source: std::io::Error,
    },
    Pin {
        cpu: usize,
        source: std::io::Error,
    },
    /// `--congestion`: the kernel lacks the algorithm (`ENOENT`) or does
    /// not allow it to unprivileged sockets (`EPERM`; see
    /// `net.ipv4.tcp_allowed_congestion_control`).
    Congestion {
        name: String,
        source: std::io::Error,
    },
    /// A cluster port owns no key of the keyspace (keyspace too small).
    EmptyPool {
        addr: SocketAddr,
        keyspace: u64,
    },
    ThreadPanicked {
        thread: usize,
    },
    Output {
        source: std::io::Error,
    },
}

impl fmt::Display for LoadgenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(error) => write!(f, "{error}"),
            Self::Resolve { host, source } => write!(f, "cannot resolve {host}: {source}"),
            Self::Discovery { addr, source } => write!(f, "CLUSTER SLOTS from {addr} failed: {source} (use --mode single for a non-cluster server)"),
            Self::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Self::Ring { source } => write!(f, "io_uring: {source}"),
            Self::Pin { cpu, source } => write!(f, "cannot pin to cpu {cpu}: {source}"),
            Self::Congestion { name, source } => {
                write!(f, "cannot set TCP congestion control {name}: {source}")
            }
            Self::EmptyPool { addr, keyspace } => {
                write!(f, "{addr} owns none of the {keyspace} keys; raise --keyspace")
            }
            Self::ThreadPanicked { thread } => write!(f, "load thread {thread} panicked"),
            Self::Output { source } => write!(f, "writing output: {source}"),
        }
    }
}

impl std::error::Error for LoadgenError {}

impl From<ConfigError> for LoadgenError {
    fn from(error: ConfigError) -> Self {
        LoadgenError::Config(error)
    }
}

/// Run the load described by `config` and return its report. Progress goes
/// to stderr once a second unless `config.quiet`.
pub fn run(config: &Config) -> Result<Report, LoadgenError> {
    let seed = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|source| LoadgenError::Resolve {
            host: config.host.clone(),
            source,
        })?
        .next()
        .ok_or_else(|| LoadgenError::Resolve {
            host: config.host.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })?;
    let targets = build_targets(config, seed)?;
    let plans = plan_threads(config, &targets);
    let live: Vec<LiveSlot> = (0..config.threads).map(|_| LiveSlot::default()).collect();
    let barrier = Barrier::new(config.threads + 1);
    let abort = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let handles: Vec<_> = plans
            .into_iter()
            .zip(&live)
            .map(|(plan, live)| {
                let shared = RunShared {
                    config,
                    live,
                    barrier: &barrier,
                    abort: &abort,
                };
                std::thread::Builder::new()
                    .name(format!("bench-{}", plan.index))
                    .spawn_scoped(scope, move || run_thread(plan, shared))
                    .expect("spawning a load thread")
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let measure_from = started + config.warmup;
        let mut cpu_at_measure: Option<Duration> = None;
        let mut samples = Vec::new();
        let mut interval = new_histogram();
        let mut last_sample = measure_from;
        let mut last_requests = 0u64;
        loop {
            // Threads publish their last figures before they finish, so a
            // final partial sample catches short runs' tails.
            let done = handles.iter().all(|h| h.is_finished());
            if !done {
                std::thread::sleep(POLL_STEP);
            }
            let now = Instant::now();
            if now < measure_from {
                if done {
                    break;
                }
                continue;
            }
            if cpu_at_measure.is_none() {
                cpu_at_measure = Some(process_cpu_time());
                // Latencies recorded before measurement are not part of any sample.
                live.iter()
                    .for_each(|slot| slot.drain_into(&mut new_histogram()));
                last_sample = now;
            }
            let requests: u64 = live
                .iter()
                .map(|slot| slot.requests.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            let due = now.duration_since(last_sample) >= SAMPLE_INTERVAL;
            if due || (done && requests > last_requests) {
                live.iter().for_each(|slot| slot.drain_into(&mut interval));
                let seconds = now.duration_since(last_sample).as_secs_f64();
                let [p50, _, p99, _, _] = percentiles_us(&interval);
                let sample = Sample {
                    elapsed_s: now.duration_since(measure_from).as_secs_f64(),
                    ops_per_sec: (requests - last_requests) as f64 / seconds,
                    p50_us: p50,
                    p99_us: p99,
                };
                if !config.quiet {
                    eprintln!(
                        "[{:>5.1}s] {:>12.0} ops/s  p50 {:>8.1} us  p99 {:>8.1} us",
                        sample.elapsed_s, sample.ops_per_sec, sample.p50_us, sample.p99_us
                    );
                }
                samples.push(sample);
                interval.reset();
                last_requests = requests;
                last_sample = now;
            }
            if done {
                break;
            }
        }
        let finished = Instant::now();
        let cpu_used = process_cpu_time().saturating_sub(cpu_at_measure.unwrap_or_default());
        let mut total = RunStats::default();
        for (thread, handle) in handles.into_iter().enumerate() {
            let stats = handle
                .join()
                .map_err(|_| LoadgenError::ThreadPanicked { thread })??;
            total.merge(&stats);
        }
        Ok(Report::new(
            config,
            total,
            samples,
            finished.saturating_duration_since(measure_from),
            cpu_used,
        ))
    })
}

/// The ports to drive and each port's key pool.
fn build_targets(config: &Config, seed: SocketAddr) -> Result<Vec<Target>, LoadgenError> {
    let zipf_for =
        |len: u64| (config.key_pattern == KeyPattern::Zipf).then(|| Arc::new(Zipf::new(len)));
    if config.mode == Mode::Single {
        let pool = KeyPool::All {
            keyspace: config.keyspace,
        };
        let zipf = zipf_for(config.keyspace);
        return Ok(vec![Target {
            addr: seed,
            pool,
            zipf,
        }]);
    }
    let map = discover(seed).map_err(|source| LoadgenError::Discovery { addr: seed, source })?;
    let mut pools: Vec<Vec<u32>> = vec![Vec::new(); map.nodes().len()];
    let mut key = [0u8; KEY_LEN];
    for index in 0..config.keyspace {
        write_key(&mut key, index);
        let owner = map.owner(key_slot(&key));
        // Keys on unowned slots would only draw errors; leave them out.
        if let Some(node) = owner {
            let position = map
                .nodes()
                .iter()
                .position(|&n| n == node)
                .expect("owner is a known node");
            pools[position].push(index as u32);
        }
    }
    map.nodes()
        .iter()
        .zip(pools)
        .map(|(&addr, pool)| {
            if pool.is_empty() {
                return Err(LoadgenError::EmptyPool {
                    addr,
                    keyspace: config.keyspace,
                });
            }
            let len = pool.len() as u64;
            Ok(Target {
                addr,
                pool: KeyPool::Owned(Arc::from(pool)),
                zipf: zipf_for(len),
            })
        })
        .collect()
}

fn plan_threads(config: &Config, targets: &[Target]) -> Vec<ThreadPlan> {
    let cpus = allowed_cpus();
    let threads = config.threads as u64;
    (0..config.threads)
        .map(|index| ThreadPlan {
            index,
            cpu: (!cpus.is_empty()).then(|| cpus[index % cpus.len()]),
            targets: targets
                .iter()
                .map(|target| Target {
                    addr: target.addr,
                    pool: target.pool.clone(),
                    zipf: target.zipf.clone(),
                })
                .collect(),
            requests_budget: match config.stop {
                Stop::Requests(total) => {
                    Some(total / threads + u64::from((index as u64) < total % threads))
                }
                Stop::After(_) => None,
            },
            rate_ops_per_sec: config.rate.map(|rate| rate as f64 / threads as f64),
        })
        .collect()
}

/// Read the slot map with one blocking `CLUSTER SLOTS` round trip.
pub fn discover(seed: SocketAddr) -> Result<SlotMap, ClientError> {
    let io = |source| ClientError::Io { node: seed, source };
    let mut stream = TcpStream::connect_timeout(&seed, DISCOVERY_TIMEOUT).map_err(io)?;
    stream
        .set_read_timeout(Some(DISCOVERY_TIMEOUT))
        .map_err(io)?;
    let mut request = Vec::new();
    encode_command(&mut request, &[b"CLUSTER", b"SLOTS"]);
    stream.write_all(&request).map_err(io)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some((reply, _)) =
            decode_reply(&buf).map_err(|source| ClientError::Protocol { node: seed, source })?
        {
            return SlotMap::from_cluster_slots(&reply, seed);
        }
        let read = stream.read(&mut chunk).map_err(io)?;
        if read == 0 {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed during CLUSTER SLOTS",
            )));
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

/// User + system CPU time of this process so far.
pub fn process_cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}
