//! Durability benchmarks (a load generator, not criterion: each figure is
//! a long, one-shot run, repeated and reported as a median).
//!
//! ```text
//! cargo bench --bench durable -- disk async flush sync reopen redis
//! ```
//!
//! - `disk`: this disk's O_DIRECT sequential write bandwidth (`dd
//!   oflag=direct`, 1 MiB blocks, fdatasync at the end), the peer of `async`.
//! - `async`: sustained async-mode ingest (1 KiB values, 1,000-record
//!   batches, 10 ms flush interval, merges running), MB/s of keys + values,
//!   by one core and by every core at once (`TESSERA_BENCH_CORES`, default
//!   all: one pinned executor and store per core in one data dir, as a
//!   server's cores share its disk), next to the same ingest into a
//!   memory-only store; each also per second of the process's CPU time (a
//!   figure the machine's noise barely moves), with the merger's copies per
//!   byte and the ingest thread's running / runnable / blocked shares of
//!   its wall time (runnable: another job had the CPU; blocked: the ingest
//!   waited for its disk).
//!   `ingest` runs the two ingests without `disk`; `ingest-cold` one async
//!   ingest as the first thing its process does (see `main`).
//! - `flush`: the segment log alone appending groups of 8 commits of ~1 MB
//!   (one `append_all` each: the writes, then one fdatasync), MB/s next to
//!   `dd` in the same runs: how much of the disk a flush gets. `async` also
//!   runs it on every core at once, next to the all-core ingest: the disk's
//!   ceiling at the ingest's own sync cadence.
//! - `sync`: sync-mode writes per second on one core with 1, 16 and 256
//!   concurrent writer tasks (group commit).
//! - `reopen`: time to reopen a compacted store of N records (default 10M;
//!   16-byte keys, 32-byte values).
//! - `redis`: redis-server loading an RDB and an AOF of the same records,
//!   time to ready as its log reports it.
//!
//! Environment: `TESSERA_BENCH_DIR` (default `target/durable-bench`, must be
//! a real file system), `TESSERA_BENCH_RECORDS` (reopen/redis record count),
//! `TESSERA_BENCH_INGEST_MB` (async ingest volume), `TESSERA_BENCH_RUNS`
//! (repetitions, default 3), `TESSERA_BENCH_REDIS_PORT` (default 7390),
//! `TESSERA_BENCH_IO_MEMORY` (glommio `io_memory` per executor, default 1 MiB),
//! `TESSERA_BENCH_RELEASE_FREED=1` (leave the allocator at its defaults
//! instead of `tessera_engine::retain_freed_memory`, as the server sets it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{spawn_local, LocalExecutorBuilder};
use tessera_engine::{
    DataDir, DmaLayer, Durability, DurableConfig, DurableStore, GroupCommitter, SegmentLog,
    StoreConfig,
};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map_or(default, |v| v.parse().expect(name))
}

fn bench_dir() -> PathBuf {
    std::env::var("TESSERA_BENCH_DIR")
        .map_or_else(|_| PathBuf::from("target/durable-bench"), PathBuf::from)
}

fn fresh(name: &str) -> PathBuf {
    let dir = bench_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::canonicalize(dir).unwrap()
}

/// CPU seconds (user + system) this process has used, its io_uring
/// workers included: a figure the machine's other jobs barely move, unlike
/// wall time.
fn cpu_secs() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is valid.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn run<T: 'static>(future: impl std::future::Future<Output = T> + 'static) -> T {
    run_on(glommio::Placement::Unbound, future)
}

/// Runs `future` on a new executor placed as asked, its `io_memory` from
/// `TESSERA_BENCH_IO_MEMORY`.
fn run_on<T>(placement: glommio::Placement, future: impl std::future::Future<Output = T>) -> T {
    let io_memory = env_u64("TESSERA_BENCH_IO_MEMORY", 1 << 20) as usize;
    LocalExecutorBuilder::new(placement)
        .io_memory(io_memory)
        .make()
        .unwrap()
        .run(future)
}

fn big_store() -> StoreConfig {
    StoreConfig {
        memory_quota_bytes: 6 << 30,
        ..StoreConfig::default()
    }
}

/// Core `core`'s store in `root` (a data dir of `cores` cores), in async
/// mode and never rolling to a new file, as the ingest benchmarks load it.
async fn open_async_ingest(
    root: &Path,
    core: u32,
    cores: u32,
    flush_interval_ms: u64,
) -> DurableStore {
    let data_dir = DataDir::open_or_create(root, cores).unwrap();
    let config = DurableConfig {
        durability: Durability::Async { flush_interval_ms },
        file_commits_max: u64::MAX,
        ..DurableConfig::default()
    };
    let (durable, _) = DurableStore::open(&data_dir, core, config, big_store())
        .await
        .unwrap();
    durable
}

/// `key:` and `i`'s last 12 decimal digits, built without allocating (the
/// ingests make a key per record, and `format!` showed in their profile).
fn record_key(i: u64) -> [u8; 16] {
    let mut key = *b"key:000000000000";
    let mut rest = i % 1_000_000_000_000;
    for digit in key[4..].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    key
}

fn redis_value(i: u64) -> [u8; 32] {
    let mut value = *b"value-of-record-0000000000000000";
    value[16..].copy_from_slice(format!("{i:016}").as_bytes());
    value
}

/// MB/s of `dd` writing `mb` MiB with O_DIRECT, 1 MiB per write.
fn disk_bandwidth(mb: u64) -> f64 {
    let dir = fresh("dd");
    let file = dir.join("dd.bin");
    let started = Instant::now();
    let status = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args([
            "bs=1M",
            &format!("count={mb}"),
            "oflag=direct",
            "conv=fdatasync",
        ])
        .stderr(Stdio::null())
        .status()
        .expect("dd");
    assert!(status.success());
    let elapsed = started.elapsed().as_secs_f64();
    std::fs::remove_file(file).unwrap();
    (mb as f64 * 1.048_576) / elapsed
}

/// This thread's time on a CPU and time runnable but waiting for one, in
/// seconds, from the scheduler (`/proc/thread-self/schedstat`): on a shared
/// machine the second says how much of an ingest's wall time other jobs
/// took, and the rest of the wall time is the ingest waiting for its disk.
fn thread_sched_secs() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().unwrap());
    let on_cpu_ns = fields.next().unwrap();
    let runnable_ns = fields.next().unwrap();
    (on_cpu_ns as f64 / 1e9, runnable_ns as f64 / 1e9)
}

/// Where one core's ingest thread spent its wall time.
#[derive(Clone, Copy, Default)]
struct ThreadTime {
    wall_secs: f64,
    on_cpu_secs: f64,
    runnable_secs: f64,
}

impl ThreadTime {
    fn since(started: (Instant, (f64, f64))) -> ThreadTime {
        let (on_cpu, runnable) = thread_sched_secs();
        ThreadTime {
            wall_secs: started.0.elapsed().as_secs_f64(),
            on_cpu_secs: on_cpu - started.1 .0,
            runnable_secs: runnable - started.1 .1,
        }
    }

    fn start() -> (Instant, (f64, f64)) {
        (Instant::now(), thread_sched_secs())
    }

    /// Shares of the wall time: running, runnable (other jobs had the
    /// CPU), blocked (waiting for IO or a timer).
    fn shares(&self) -> (f64, f64, f64) {
        let running = self.on_cpu_secs / self.wall_secs;
        let runnable = self.runnable_secs / self.wall_secs;
        (running, runnable, (1.0 - running - runnable).max(0.0))
    }
}

/// An ingest's key + value bytes per second of wall time and per second of
/// this process's CPU time, how many times its merges copied each byte, and
/// where its (first) ingest thread's wall time went.
#[derive(Clone, Copy)]
struct Rate {
    wall_mb_per_sec: f64,
    cpu_mb_per_sec: f64,
    merge_copies_per_byte: f64,
    thread: ThreadTime,
}

impl Rate {
    fn of(
        bytes: u64,
        wall_secs: f64,
        cpu_secs: f64,
        merge_copies_per_byte: f64,
        thread: ThreadTime,
    ) -> Rate {
        Rate {
            wall_mb_per_sec: bytes as f64 / 1e6 / wall_secs,
            cpu_mb_per_sec: bytes as f64 / 1e6 / cpu_secs,
            merge_copies_per_byte,
            thread,
        }
    }
}

const INGEST_VALUE_BYTES: u64 = 1000;
const INGEST_BATCH_RECORDS: u64 = 1000;
const INGEST_RECORD_BYTES: u64 = 16 + INGEST_VALUE_BYTES;

/// One core's async ingest: records `first..first + records` into core
/// `core`'s store in `root`, in batches, with the server's maintenance
/// step after each, durable at the end (the timed part, up to
/// `timed_end`). Returns the merger's copies per byte applied and where the
/// thread's time went.
async fn ingest_core(
    root: &Path,
    core: u32,
    cores: u32,
    first: u64,
    records: u64,
    timed_end: TimedEnd,
) -> (f64, ThreadTime) {
    let mut durable = open_async_ingest(root, core, cores, 10).await;
    let started = ThreadTime::start();
    let value = vec![0x5au8; INGEST_VALUE_BYTES as usize];
    let end = first + records;
    let mut next = first;
    while next < end {
        let batch_end = (next + INGEST_BATCH_RECORDS).min(end);
        let mut batch = durable
            .store_mut()
            .new_batch(
                (batch_end - next) as usize,
                ((batch_end - next) * 1024) as usize,
            )
            .unwrap();
        for i in next..batch_end {
            batch.set(&record_key(i), &value).unwrap();
        }
        next = batch_end;
        durable.commit(batch).await.unwrap();
        durable
            .maintenance_step(Duration::from_micros(200))
            .await
            .unwrap();
    }
    durable.flush().await.unwrap();
    let thread = ThreadTime::since(started);
    timed_end.reached();
    // The check counts live keys (a lookup per record): not ingest work,
    // and the in-memory ingest's clock stops before its own check too.
    let stats = durable.store().stats();
    assert_eq!(stats.live_keys as u64, records);
    (
        stats.merged_bytes as f64 / stats.applied_bytes as f64,
        thread,
    )
}

/// Where a job of [`on_cores`] ends its timed part ([`TimedEnd::reached`]),
/// after which it may check its results untimed. Dropped unreached (a job
/// that panicked) it counts as reached, so the clock's wait ends and the
/// panic reaches the join instead of hanging the bench.
struct TimedEnd(std::sync::Arc<std::sync::Barrier>);

impl TimedEnd {
    /// Waits until every job (and the clock) got here: the wait is the
    /// drop's.
    fn reached(self) {}
}

impl Drop for TimedEnd {
    fn drop(&mut self) {
        self.0.wait();
    }
}

/// Runs `job(core, end)` for every core at once, each on an executor of its
/// own (pinned to its core when there are several; one core runs unpinned,
/// as the one-core figures always have), all started together. Returns the
/// wall and process CPU seconds from the start until every job has reached
/// its [`TimedEnd`] (what a job checks after that is not timed), and the
/// jobs' results in core order.
fn on_cores<T, F, Fut>(cores: u32, job: F) -> (f64, f64, Vec<T>)
where
    T: Send,
    F: Fn(u32, TimedEnd) -> Fut + Sync,
    Fut: std::future::Future<Output = T>,
{
    let started = std::sync::Barrier::new(cores as usize + 1);
    let ended = std::sync::Arc::new(std::sync::Barrier::new(cores as usize + 1));
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|core| {
                let (job, started) = (&job, &started);
                let end = TimedEnd(ended.clone());
                scope.spawn(move || {
                    let placement = if cores == 1 {
                        glommio::Placement::Unbound
                    } else {
                        glommio::Placement::Fixed(core as usize)
                    };
                    run_on(placement, async move {
                        started.wait();
                        job(core, end).await
                    })
                })
            })
            .collect();
        started.wait();
        let wall_started = Instant::now();
        let cpu_started = cpu_secs();
        ended.wait();
        let (wall, cpu) = (
            wall_started.elapsed().as_secs_f64(),
            cpu_secs() - cpu_started,
        );
        let results: Vec<T> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        (wall, cpu, results)
    })
}

/// MB/s of key + value bytes ingested in async mode, durable at the end,
/// by `cores` cores at once (each its own pinned executor, store and file
/// in one data dir, `mb / cores` each, as a server's cores share a disk).
fn async_ingest(mb: u64, cores: u32) -> Rate {
    let root = fresh("async");
    let records = mb * 1000 / u64::from(cores);
    DataDir::open_or_create(&root, cores).unwrap();
    let (elapsed, cpu, results) = on_cores(cores, |core, end| {
        let root = &root;
        async move {
            let first = u64::from(core) * records;
            ingest_core(root, core, cores, first, records, end).await
        }
    });
    std::fs::remove_dir_all(&root).unwrap();
    let copies = results.iter().map(|r| r.0).sum::<f64>() / results.len() as f64;
    let bytes = records * u64::from(cores) * INGEST_RECORD_BYTES;
    Rate::of(bytes, elapsed, cpu, copies, results[0].1)
}

/// Commits per group in the `flush` benchmark: what one async flush of the
/// ingest writes (a 10 ms interval holds 7-10 batches of ~1 MB; a bulk
/// load's flights carry ~8.5).
const FLUSH_BENCH_GROUP_COMMITS: usize = 8;

/// MB/s of the log alone writing `mb` MB as groups of
/// [`FLUSH_BENCH_GROUP_COMMITS`] commits of ~1 MB (1,000 records), each
/// group one `append_all`, i.e. its writes and one fdatasync: how much of
/// the disk's bandwidth a flush gets, with no engine work in between. With
/// several cores, each writes `mb / cores` to a log of its own at once: the
/// disk's ceiling for the all-core ingest, which syncs as often.
fn flush_groups(mb: u64, cores: u32) -> Rate {
    let root = fresh("flush");
    let groups = (mb as usize / cores as usize).div_ceil(FLUSH_BENCH_GROUP_COMMITS);
    let (elapsed, cpu, results) = on_cores(cores, |core, end| {
        let dir = root.join(format!("core-{core}"));
        async move {
            std::fs::create_dir_all(&dir).unwrap();
            let (mut log, _, _) = SegmentLog::open(DmaLayer, &dir, core, false).await.unwrap();
            let meta: Vec<u64> = (0..2000).collect();
            let data = vec![0x5au8; 1000 * 1016];
            let thread_started = ThreadTime::start();
            for _ in 0..groups {
                let segments = (0..FLUSH_BENCH_GROUP_COMMITS).map(|_| (&meta[..], &data[..]));
                log.append_all(segments).await.unwrap();
            }
            let bytes = log.file_bytes();
            log.close().await.unwrap();
            let thread = ThreadTime::since(thread_started);
            end.reached();
            (bytes, thread)
        }
    });
    std::fs::remove_dir_all(&root).unwrap();
    let bytes = results.iter().map(|r| r.0).sum();
    Rate::of(bytes, elapsed, cpu, 0.0, results[0].1)
}

/// MB/s of the same ingest into a plain in-memory store: the ceiling the
/// durable store can reach, whatever the disk.
fn memory_ingest(mb: u64) -> Rate {
    let mut store = tessera_engine::Store::new(big_store()).unwrap();
    let value = vec![0x5au8; INGEST_VALUE_BYTES as usize];
    let records = mb * 1000;
    let thread_started = ThreadTime::start();
    let started = Instant::now();
    let cpu_started = cpu_secs();
    let mut next = 0;
    while next < records {
        let end = (next + INGEST_BATCH_RECORDS).min(records);
        let mut batch = store
            .new_batch((end - next) as usize, ((end - next) * 1024) as usize)
            .unwrap();
        for i in next..end {
            batch.set(&record_key(i), &value).unwrap();
        }
        next = end;
        store.apply(batch).unwrap();
        if store.merge_needed() {
            store.merge_step(Duration::from_micros(200));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_started;
    let stats = store.stats();
    assert_eq!(stats.live_keys as u64, records);
    let copies = stats.merged_bytes as f64 / stats.applied_bytes as f64;
    let thread = ThreadTime::since(thread_started);
    Rate::of(records * INGEST_RECORD_BYTES, elapsed, cpu, copies, thread)
}

/// Durable writes per second with `writers` concurrent tasks for `secs`.
fn sync_writes(writers: u64, secs: u64) -> f64 {
    let root = fresh(&format!("sync-{writers}"));
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let (durable, _) = DurableStore::open(&data_dir, 0, DurableConfig::default(), big_store())
            .await
            .unwrap();
        let committer = Rc::new(GroupCommitter::new(durable));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|writer| {
                let committer = committer.clone();
                spawn_local(async move {
                    let value = [7u8; 100];
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        let key = record_key(writer * 1_000_000_000 + done);
                        committer
                            .write(1, 128, |batch| batch.set(&key, &value))
                            .await
                            .unwrap();
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await;
        }
        total as f64 / started.elapsed().as_secs_f64()
    })
}

/// Builds a compacted store of `records` records in `root`.
fn build_store(root: &Path, records: u64) {
    let root = root.to_path_buf();
    run(async move {
        let mut durable = open_async_ingest(&root, 0, 1, 1000).await;
        let batch_records = 50_000;
        let mut next = 0;
        while next < records {
            let end = (next + batch_records).min(records);
            let mut batch = durable
                .store_mut()
                .new_batch((end - next) as usize, ((end - next) * 48) as usize)
                .unwrap();
            for i in next..end {
                batch.set(&record_key(i), &redis_value(i)).unwrap();
            }
            next = end;
            durable.commit(batch).await.unwrap();
        }
        durable.flush().await.unwrap();
        durable.store_mut().compact();
        durable.compact().await.unwrap();
        assert_eq!(durable.store().len() as u64, records);
    });
}

/// Seconds to reopen the store in `root`.
fn reopen(root: &Path, records: u64) -> f64 {
    let root = root.to_path_buf();
    run(async move {
        let data_dir = DataDir::open_or_create(&root, 1).unwrap();
        let started = Instant::now();
        let (durable, _) = DurableStore::open(&data_dir, 0, DurableConfig::default(), big_store())
            .await
            .unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        assert_eq!(durable.store().len() as u64, records);
        elapsed
    })
}

/// A redis-server of this benchmark's, stopped on drop.
struct Redis {
    child: std::process::Child,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_start(dir: &Path, port: u64, aof: bool) -> Redis {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--dir", dir.to_str().unwrap(), "--dbfilename", "dump.rdb"])
        .args(["--appendonly", if aof { "yes" } else { "no" }])
        .args(["--aof-use-rdb-preamble", "no", "--logfile", "redis.log"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    let redis = Redis { child };
    let deadline = Instant::now() + Duration::from_secs(600);
    while !redis_cli(port, &["PING"]).contains("PONG") {
        assert!(Instant::now() < deadline, "redis did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    redis
}

fn redis_cli(port: u64, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Loads `records` records into a fresh redis in `dir` (AOF or RDB) and
/// stops it cleanly, leaving the file behind.
fn redis_prepare(dir: &Path, port: u64, records: u64, aof: bool) {
    let redis = redis_start(dir, port, aof);
    let mut pipe = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    {
        let mut input = std::io::BufWriter::new(pipe.stdin.take().unwrap());
        for i in 0..records {
            input.write_all(b"*3\r\n$3\r\nSET\r\n$16\r\n").unwrap();
            input.write_all(&record_key(i)).unwrap();
            input.write_all(b"\r\n$32\r\n").unwrap();
            input.write_all(&redis_value(i)).unwrap();
            input.write_all(b"\r\n").unwrap();
        }
    }
    assert!(pipe.wait().unwrap().success());
    assert_eq!(redis_cli(port, &["DBSIZE"]).trim(), records.to_string());
    if !aof {
        assert!(redis_cli(port, &["SAVE"]).contains("OK"));
    }
    // Let appendfsync everysec write the last second before stopping.
    std::thread::sleep(Duration::from_secs(2));
    drop(redis);
}

/// Seconds redis reports for loading its data at start-up.
fn redis_load_secs(dir: &Path, port: u64, aof: bool, records: u64) -> f64 {
    let log = dir.join("redis.log");
    let _ = std::fs::remove_file(&log);
    let redis = redis_start(dir, port, aof);
    assert_eq!(redis_cli(port, &["DBSIZE"]).trim(), records.to_string());
    drop(redis);
    let text = std::fs::read_to_string(&log).unwrap();
    // "DB loaded from disk: 5.123 seconds" (RDB) or
    // "DB loaded from append only file: 5.123 seconds" (AOF).
    let line = text
        .lines()
        .find(|l| l.contains("DB loaded from"))
        .unwrap_or_else(|| panic!("no load line in {}", log.display()));
    line.rsplit(": ")
        .next()
        .unwrap()
        .trim_end_matches(" seconds")
        .parse()
        .unwrap()
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`: the
    // figures take minutes, so only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!("durable benchmarks run under `cargo bench --bench durable`");
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = args.is_empty();
    let wants = |name: &str| all || args.iter().any(|a| a == name);
    // As the server does (see `tessera_engine::retain_freed_memory`); set
    // TESSERA_BENCH_RELEASE_FREED=1 to measure the allocator's defaults.
    if std::env::var_os("TESSERA_BENCH_RELEASE_FREED").is_none() {
        assert!(tessera_engine::retain_freed_memory());
    }
    let runs = env_u64("TESSERA_BENCH_RUNS", 3);
    let records = env_u64("TESSERA_BENCH_RECORDS", 10_000_000);
    let ingest_mb = env_u64("TESSERA_BENCH_INGEST_MB", 1024);
    let port = env_u64("TESSERA_BENCH_REDIS_PORT", 7390);
    let cores = env_u64(
        "TESSERA_BENCH_CORES",
        std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
    ) as u32;

    // `async` measures the disk and the ingests; `ingest` only the ingests
    // (for comparing builds: their CPU figures ignore the noise).
    let with_disk = wants("disk") || wants("async");
    if with_disk || wants("ingest") {
        let mut disk = Vec::new();
        let mut durable = Vec::new();
        let mut node = Vec::new();
        let mut node_log = Vec::new();
        let mut memory = Vec::new();
        // Sustained ingest: the first ingest of a process also grows its
        // heap (page faults for every byte of it), which the ones after
        // reuse, so an untimed one comes first and all measured runs see
        // the heap a running server has (`ingest-cold` measures the first).
        memory_ingest(ingest_mb);
        for _ in 0..runs {
            // Interleaved so all of them see the same machine noise.
            if with_disk {
                disk.push(disk_bandwidth(ingest_mb));
            }
            durable.push(async_ingest(ingest_mb, 1));
            if cores > 1 {
                node.push(async_ingest(ingest_mb, cores));
                if with_disk {
                    node_log.push(flush_groups(ingest_mb, cores));
                }
            }
            memory.push(memory_ingest(ingest_mb));
        }
        let wall = |rates: &[Rate]| median(rates.iter().map(|r| r.wall_mb_per_sec).collect());
        let cpu = |rates: &[Rate]| median(rates.iter().map(|r| r.cpu_mb_per_sec).collect());
        let copies =
            |rates: &[Rate]| median(rates.iter().map(|r| r.merge_copies_per_byte).collect());
        let share = |rates: &[Rate], pick: fn((f64, f64, f64)) -> f64| {
            median(
                rates
                    .iter()
                    .map(|r| pick(r.thread.shares()) * 100.0)
                    .collect(),
            )
        };
        let report = |what: &str, rates: &[Rate]| {
            println!(
                "{what}: median {:.0} MB/s, {:.0} MB per CPU-second, merges copied each byte {:.1} times; \
                 ingest thread running {:.0}%, runnable {:.0}%, blocked {:.0}% of its wall time",
                wall(rates),
                cpu(rates),
                copies(rates),
                share(rates, |s| s.0),
                share(rates, |s| s.1),
                share(rates, |s| s.2),
            );
        };
        report(
            "in-memory ingest, same records, no persistence, one core",
            &memory,
        );
        report(
            &format!("async ingest, one core ({ingest_mb} MB of 16 B keys + 1000 B values)"),
            &durable,
        );
        if cores > 1 {
            report(
                &format!("async ingest, {cores} cores at once ({ingest_mb} MB in all)"),
                &node,
            );
        }
        if with_disk {
            let disk = median(disk);
            println!("disk O_DIRECT sequential write (dd, {ingest_mb} MiB): median {disk:.0} MB/s");
            println!(
                "async ingest = {:.0}% of the disk with one core",
                wall(&durable) / disk * 100.0
            );
            if cores > 1 {
                println!(
                    "async ingest = {:.0}% of the disk with {cores} cores",
                    wall(&node) / disk * 100.0
                );
                // The disk at the ingest's own sync cadence, all cores
                // writing at once: what the all-core ingest could reach.
                let log = wall(&node_log);
                println!(
                    "segment log alone, {cores} cores at once (groups of \
                     {FLUSH_BENCH_GROUP_COMMITS} commits of ~1 MB, an fdatasync each): \
                     median {log:.0} MB/s; async ingest = {:.0}% of it",
                    wall(&node) / log * 100.0
                );
            }
        }
    }
    if wants("flush") {
        let mut disk = Vec::new();
        let mut flush = Vec::new();
        for _ in 0..runs {
            disk.push(disk_bandwidth(ingest_mb));
            flush.push(flush_groups(ingest_mb, 1));
            println!(
                "run: dd {:.0} MB/s, flush {:.0} MB/s",
                disk.last().unwrap(),
                flush.last().unwrap().wall_mb_per_sec
            );
        }
        let flush = median(flush.iter().map(|r| r.wall_mb_per_sec).collect());
        let disk = median(disk);
        println!(
            "log flush, groups of {FLUSH_BENCH_GROUP_COMMITS} commits of ~1 MB: median {flush:.0} MB/s = {:.0}% of dd ({disk:.0} MB/s)",
            flush / disk * 100.0
        );
    }
    if args.iter().any(|a| a == "ingest-cold") {
        // One run per process: only the first ingest of a process is cold.
        let rate = async_ingest(ingest_mb, 1);
        println!(
            "async ingest, first in a fresh process ({ingest_mb} MB): {:.0} MB/s, {:.0} MB per CPU-second",
            rate.wall_mb_per_sec, rate.cpu_mb_per_sec
        );
    }
    if wants("sync") {
        for writers in [1, 16, 256] {
            let rates: Vec<f64> = (0..runs).map(|_| sync_writes(writers, 3)).collect();
            println!(
                "sync writes, {writers} concurrent writers, one core: median {:.0} writes/s",
                median(rates)
            );
        }
    }
    if wants("reopen") {
        let root = fresh("reopen");
        build_store(&root, records);
        let bytes: u64 = std::fs::read_dir(root.join("core-0"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        let times: Vec<f64> = (0..runs).map(|_| reopen(&root, records)).collect();
        println!(
            "tessera reopen, {records} records ({:.0} MB file, page cache warm): median {:.2} s",
            bytes as f64 / 1e6,
            median(times)
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
    if wants("redis") {
        for aof in [false, true] {
            let dir = fresh(if aof { "redis-aof" } else { "redis-rdb" });
            redis_prepare(&dir, port, records, aof);
            let times: Vec<f64> = (0..runs)
                .map(|_| redis_load_secs(&dir, port, aof, records))
                .collect();
            println!(
                "redis-server loading {} of {records} records: median {:.2} s",
                if aof { "an AOF" } else { "an RDB" },
                median(times)
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
