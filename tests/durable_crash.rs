//! Crash test: a child process (this test binary re-executed with
//! `TESSERA_CRASH_CHILD` set) writes and prints every acknowledged batch to
//! a pipe; the parent SIGKILLs it at a random moment (on some cycles right
//! as a compaction starts), reopens the store and checks that every
//! acknowledged write is there with its last acknowledged value (or the
//! value of a later write that reached disk unacknowledged), and that every
//! record served is intact.
//!
//! In `sync` mode a batch is acknowledged when its commit returns. In
//! `async` mode commits only apply, flights write them in the background
//! (so most kills land while one is on its way), and the child calls
//! `flush` every few batches and acknowledges the batches it covered.
//!
//! `TESSERA_CRASH_CYCLES` sets the number of kill cycles (default 25;
//! `make crash-test` runs 1,000). `TESSERA_CRASH_SEED` replays a run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use glommio::LocalExecutorBuilder;
use tessera_engine::{DataDir, Durability, DurableConfig, DurableStore, StoreConfig};
use tessera_net::loadgen::Rng;

const CHILD_ENV: &str = "TESSERA_CRASH_CHILD";
/// `sync` or `async`: the child's durability mode.
const MODE_ENV: &str = "TESSERA_CRASH_MODE";
/// Async mode: the child flushes after one batch in this many, on average.
const ASYNC_FLUSH_EVERY: u64 = 8;
const CYCLES_ENV: &str = "TESSERA_CRASH_CYCLES";
const SEED_ENV: &str = "TESSERA_CRASH_SEED";
const CYCLES_DEFAULT: u64 = 25;
const KEYS: u64 = 400;
const BATCH_OPS_MAX: u64 = 16;
const VALUE_BYTES_MAX: u64 = 3000;
/// Longest a child may run before it is killed anyway.
const CHILD_RUN_MS_MAX: u64 = 250;
/// Counters of cycle `n` start at `n * COUNTER_STRIDE` so values of later
/// cycles always compare newer.
const COUNTER_STRIDE: u64 = 1 << 32;

fn key(k: u64) -> Vec<u8> {
    format!("key:{k:05}").into_bytes()
}

/// A value that proves its own integrity: its key, its counter, and filler
/// derived from both.
fn value(k: u64, counter: u64, len: u64) -> Vec<u8> {
    let mut value = format!("{k}:{counter}:{len}:").into_bytes();
    value.extend((0..len).map(|i| (k.wrapping_mul(31) ^ counter ^ i) as u8));
    value
}

/// Parses and checks a value; returns its counter.
fn check_value(k: u64, bytes: &[u8]) -> u64 {
    let text_end = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b':')
        .nth(2)
        .map(|(i, _)| i)
        .expect("value header");
    let header = std::str::from_utf8(&bytes[..text_end]).expect("value header is text");
    let mut fields = header.split(':').map(|f| f.parse::<u64>().expect("number"));
    let (vk, counter, len) = (
        fields.next().unwrap(),
        fields.next().unwrap(),
        fields.next().unwrap(),
    );
    assert_eq!(vk, k, "value of another key");
    assert_eq!(
        bytes,
        &value(k, counter, len)[..],
        "corrupt value of key {k}"
    );
    counter
}

fn child_config(durability: Durability) -> DurableConfig {
    DurableConfig {
        durability,
        tolerant: false,
        // Compact often so kills land in every phase of it.
        compaction_min_bytes: 256 << 10,
        compaction_dead_percent: 50,
        file_commits_max: 24,
        ..DurableConfig::default()
    }
}

fn store_config() -> StoreConfig {
    StoreConfig {
        memory_quota_bytes: 256 << 20,
        ..StoreConfig::default()
    }
}

/// The writer: batches until killed, printing `B <counter>`, one line per
/// op (`S <key> <len>` / `D <key>`), then `A <counter>` once acknowledged.
fn run_child(dir: PathBuf, durability: Durability, counter_base: u64, seed: u64) {
    LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .make()
        .unwrap()
        .run(async move {
            let data_dir = DataDir::open_or_create(&dir, 1).unwrap();
            let (mut durable, _) =
                DurableStore::open(&data_dir, 0, child_config(durability), store_config())
                    .await
                    .unwrap();
            let mut rng = Rng::new(seed);
            let mut out = std::io::stdout().lock();
            // libtest has printed "test crash_writer_child ... " without a
            // newline: start a fresh line.
            writeln!(out, "\nREADY").unwrap();
            out.flush().unwrap();
            let mut counter = counter_base;
            // Async mode: committed, not yet covered by a flush.
            let mut unflushed = Vec::new();
            loop {
                counter += 1;
                let ops = 1 + rng.below(BATCH_OPS_MAX);
                let mut lines = format!("B {counter}\n");
                let mut batch = durable
                    .store_mut()
                    .new_batch(ops as usize, (ops * (VALUE_BYTES_MAX + 64)) as usize)
                    .unwrap();
                for _ in 0..ops {
                    let k = rng.below(KEYS);
                    if rng.below(8) == 0 {
                        batch.delete(&key(k)).unwrap();
                        lines += &format!("D {k}\n");
                    } else {
                        let len = rng.below(VALUE_BYTES_MAX);
                        batch.set(&key(k), &value(k, counter, len)).unwrap();
                        lines += &format!("S {k} {len}\n");
                    }
                }
                out.write_all(lines.as_bytes()).unwrap();
                out.flush().unwrap();
                durable.commit(batch).await.unwrap();
                unflushed.push(counter);
                let sync = durability == Durability::Sync;
                if sync || rng.below(ASYNC_FLUSH_EVERY) == 0 {
                    if !sync {
                        durable.flush().await.unwrap();
                    }
                    for acknowledged in unflushed.drain(..) {
                        writeln!(out, "A {acknowledged}").unwrap();
                    }
                    out.flush().unwrap();
                }
                if durable.compaction_due() {
                    writeln!(out, "C").unwrap();
                    out.flush().unwrap();
                }
                durable
                    .maintenance_step(Duration::from_millis(1))
                    .await
                    .unwrap();
            }
        });
}

#[test]
fn crash_writer_child() {
    // Only does something when re-executed by the parent below.
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let counter_base: u64 = std::env::var("TESSERA_CRASH_COUNTER")
        .unwrap()
        .parse()
        .unwrap();
    let seed: u64 = std::env::var("TESSERA_CRASH_CHILD_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let durability = durability_named(&std::env::var(MODE_ENV).unwrap());
    run_child(PathBuf::from(dir), durability, counter_base, seed);
}

fn durability_named(name: &str) -> Durability {
    match name {
        "sync" => Durability::Sync,
        "async" => Durability::Async {
            flush_interval_ms: 5,
        },
        other => panic!("{MODE_ENV}={other}: sync or async"),
    }
}

/// What the parent knows about one key: the last acknowledged state and the
/// states of later writes that may or may not have reached disk.
#[derive(Clone, Default)]
struct KeyHistory {
    acked: Option<(u64, Option<u64>)>, // (counter, Some(len) = set / None = delete)
    pending: Vec<(u64, Option<u64>)>,
}

#[derive(Default)]
struct Expected {
    keys: HashMap<u64, KeyHistory>,
    /// The ops of batches printed but not acknowledged yet (async mode
    /// acknowledges several at once, after a flush).
    batches: HashMap<u64, Vec<(u64, Option<u64>)>>,
}

impl Expected {
    /// Applies the child's output: complete lines only.
    fn apply(&mut self, lines: &[String]) {
        // A batch the kill cut short was never committed.
        self.batches.clear();
        let mut batch_counter = 0;
        for line in lines {
            let mut fields = line.split(' ');
            match fields.next() {
                Some("B") => {
                    batch_counter = fields.next().unwrap().parse().unwrap();
                    self.batches.insert(batch_counter, Vec::new());
                }
                Some("S") => {
                    let k = fields.next().unwrap().parse().unwrap();
                    let len = fields.next().unwrap().parse().unwrap();
                    self.batches
                        .get_mut(&batch_counter)
                        .unwrap()
                        .push((k, Some(len)));
                    self.keys
                        .entry(k)
                        .or_default()
                        .pending
                        .push((batch_counter, Some(len)));
                }
                Some("D") => {
                    let k = fields.next().unwrap().parse().unwrap();
                    self.batches
                        .get_mut(&batch_counter)
                        .unwrap()
                        .push((k, None));
                    self.keys
                        .entry(k)
                        .or_default()
                        .pending
                        .push((batch_counter, None));
                }
                Some("A") => {
                    let counter: u64 = fields.next().unwrap().parse().unwrap();
                    let batch = self.batches.remove(&counter).expect("a printed batch");
                    // Within a batch the last op on a key wins; batches are
                    // acknowledged in order.
                    for (k, op) in batch {
                        let history = self.keys.get_mut(&k).unwrap();
                        history.acked = Some((counter, op));
                        history.pending.retain(|&(c, _)| c > counter);
                    }
                }
                _ => {}
            }
        }
    }

    /// Once the store is checked, what it holds becomes the new baseline.
    fn settle(&mut self, k: u64, found: Option<u64>, found_counter: u64) {
        let history = self.keys.entry(k).or_default();
        history.pending.clear();
        history.acked = Some((found_counter, found));
    }
}

fn check_store(dir: &Path, durability: Durability, expected: &mut Expected, cycle: u64, seed: u64) {
    let dir = dir.to_path_buf();
    let found: Vec<(u64, Option<Vec<u8>>)> = LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .make()
        .unwrap()
        .run(async move {
            let data_dir = DataDir::open_or_create(&dir, 1).unwrap();
            let (durable, report) =
                DurableStore::open(&data_dir, 0, child_config(durability), store_config())
                    .await
                    .unwrap_or_else(|e| panic!("cycle {cycle} seed {seed}: reopen failed: {e}"));
            assert!(report.dropped.is_none());
            let store = durable.store();
            // Every record served must be intact, whatever key it is.
            let mut count = 0;
            for entry in store.range(..) {
                let k: u64 = std::str::from_utf8(&entry.key[4..])
                    .unwrap()
                    .parse()
                    .unwrap();
                check_value(k, entry.value);
                count += 1;
            }
            assert_eq!(count, store.len());
            (0..KEYS)
                .map(|k| (k, store.get(&key(k)).map(<[u8]>::to_vec)))
                .collect()
        });
    for (k, value) in found {
        let history = expected.keys.get(&k).cloned().unwrap_or_default();
        let (found_op, found_counter) = match &value {
            Some(bytes) => {
                let counter = check_value(k, bytes);
                let len = bytes.len() as u64 - format!("{k}:{counter}:").len() as u64;
                let len = len - (len.to_string().len() as u64 + 1);
                (Some(len), counter)
            }
            None => (None, 0),
        };
        let acked_ok = match history.acked {
            None => value.is_none(),
            Some((counter, Some(_))) => found_op.is_some() && found_counter == counter,
            Some((_, None)) => value.is_none(),
        };
        let pending_ok = history.pending.iter().any(|&(counter, op)| match op {
            Some(_) => found_op.is_some() && found_counter == counter,
            None => value.is_none(),
        });
        assert!(
            acked_ok || pending_ok,
            "cycle {cycle} seed {seed}: key {k} holds counter {found_counter} (present: {}), last acknowledged {:?}, unacknowledged {:?}",
            value.is_some(),
            history.acked,
            history.pending
        );
        let settled_counter = if value.is_some() {
            found_counter
        } else {
            history.acked.map_or(0, |(c, _)| c)
        };
        expected.settle(k, found_op, settled_counter);
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    kill_cycles("sync");
}

#[test]
fn flushed_writes_survive_sigkill_with_flights_on_their_way() {
    kill_cycles("async");
}

fn kill_cycles(mode: &str) {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let durability = durability_named(mode);
    let cycles: u64 = std::env::var(CYCLES_ENV)
        .ok()
        .map_or(CYCLES_DEFAULT, |v| v.parse().expect("cycle count"));
    let seed: u64 = std::env::var(SEED_ENV).ok().map_or_else(
        || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |v| v.parse().expect("seed"),
    );
    eprintln!("crash test, {mode} mode: {cycles} cycles, {SEED_ENV}={seed}");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("durable-crash-{mode}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = Rng::new(seed);
    let mut expected = Expected::default();
    let mut compaction_kills = 0;
    let mut acks_total = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .env(MODE_ENV, mode)
            .env(
                "TESSERA_CRASH_COUNTER",
                ((cycle + 1) * COUNTER_STRIDE).to_string(),
            )
            .env("TESSERA_CRASH_CHILD_SEED", rng.next_u64().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                // A line cut by the kill has no newline: it never happened.
                if line.ends_with(b"\n") {
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    if lines_tx.send(text).is_err() {
                        break;
                    }
                }
                line.clear();
            }
        });
        // Kill at a random moment after the writer is ready, or right as a
        // compaction starts on some cycles.
        let kill_on_compaction = rng.below(3) == 0;
        let run_for = Duration::from_millis(1 + rng.below(CHILD_RUN_MS_MAX));
        let mut lines = Vec::new();
        let mut ready_at = None;
        let deadline_start = Instant::now();
        loop {
            let waited = ready_at.map_or(Duration::ZERO, |at: Instant| at.elapsed());
            if ready_at.is_some() && waited >= run_for {
                break;
            }
            assert!(
                deadline_start.elapsed() < Duration::from_secs(30),
                "cycle {cycle} seed {seed}: writer never became ready"
            );
            match lines_rx.recv_timeout(Duration::from_millis(1)) {
                Ok(line) => {
                    let compaction = line == "C";
                    if line == "READY" {
                        ready_at = Some(Instant::now());
                    }
                    lines.push(line);
                    if compaction && kill_on_compaction {
                        compaction_kills += 1;
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("cycle {cycle} seed {seed}: writer exited by itself")
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(lines_rx.try_iter());
        acks_total += lines.iter().filter(|l| l.starts_with("A ")).count();
        expected.apply(&lines);
        check_store(&dir, durability, &mut expected, cycle, seed);
    }
    eprintln!("crash test, {mode} mode: {acks_total} acknowledged batches checked, {compaction_kills} kills at compaction start");
    assert!(acks_total > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
