//! Sync mode through the whole server, killed at random moments while it
//! writes: a client pipelines rounds of SETs and DELs (one round is one
//! commit of the core's open batch), records which it saw acknowledged,
//! and the server gets SIGKILL mid-stream. After each restart every key
//! holds its last acknowledged value, or the value of a write sent after it
//! whose acknowledgement the kill cut off; never anything else, never an
//! older value. The state found carries over to the next cycle.
//!
//! `TESSERA_SERVER_CRASH_CYCLES` sets the number of cycles (default 4);
//! `TESSERA_SERVER_CRASH_SEED` replays a run.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tessera_net::loadgen::Rng;

use support::{encode, port_for_key, Client, Server};

const BASE_PORT: u16 = 16230;
const CYCLES_ENV: &str = "TESSERA_SERVER_CRASH_CYCLES";
const SEED_ENV: &str = "TESSERA_SERVER_CRASH_SEED";
const CYCLES_DEFAULT: u64 = 4;
/// Keys written, all owned by core 0.
const KEYS: usize = 120;
const ROUND_OPS_MAX: u64 = 16;
/// The kill comes this long after the writer started, at random.
const KILL_AFTER_MS_MIN: u64 = 40;
const KILL_AFTER_MS_MAX: u64 = 400;
const FLAGS: [&str; 2] = ["--durability", "sync"];

/// One write the client sent: `None` is a DEL.
#[derive(Clone)]
struct Sent {
    key: usize,
    value: Option<Vec<u8>>,
    acknowledged: bool,
}

fn keys() -> Vec<Vec<u8>> {
    (0..)
        .map(|i| format!("kill:{i}").into_bytes())
        .filter(|key| port_for_key(BASE_PORT, 2, key) == BASE_PORT)
        .take(KEYS)
        .collect()
}

/// Writes rounds until the connection dies, recording every write and
/// whether its reply arrived.
fn write_until_killed(keys: &[Vec<u8>], seed: u64, cycle: u64, log: &Mutex<Vec<Sent>>) {
    let stream = TcpStream::connect(("127.0.0.1", BASE_PORT)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut rng = Rng::new(seed ^ (cycle + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut line = Vec::new();
    for round in 0u64.. {
        let ops = 1 + rng.below(ROUND_OPS_MAX) as usize;
        let mut pipeline = Vec::new();
        let first = {
            let mut log = log.lock().unwrap();
            let first = log.len();
            for op in 0..ops {
                let key = rng.below(keys.len() as u64) as usize;
                let value = (rng.below(5) != 0).then(|| {
                    format!("c{cycle}-r{round}-o{op}-{}", "v".repeat(op * 7)).into_bytes()
                });
                match &value {
                    Some(value) => {
                        pipeline.extend_from_slice(&encode(&[b"SET", &keys[key], value]))
                    }
                    None => pipeline.extend_from_slice(&encode(&[b"DEL", &keys[key]])),
                }
                log.push(Sent {
                    key,
                    value,
                    acknowledged: false,
                });
            }
            first
        };
        if writer.write_all(&pipeline).is_err() {
            return;
        }
        for at in first..first + ops {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(n) if n > 0 && line.ends_with(b"\r\n") => {}
                _ => return,
            }
            let is_set = log.lock().unwrap()[at].value.is_some();
            let ok = if is_set {
                line == b"+OK\r\n"
            } else {
                line == b":0\r\n" || line == b":1\r\n"
            };
            assert!(ok, "unexpected reply {:?}", String::from_utf8_lossy(&line));
            log.lock().unwrap()[at].acknowledged = true;
        }
    }
}

/// For each key, every value it may hold now: its value before the cycle
/// or its last acknowledged one, and any written after that.
fn allowed(before: &[Option<Vec<u8>>], log: &[Sent]) -> Vec<Vec<Option<Vec<u8>>>> {
    let mut last_acknowledged: HashMap<usize, usize> = HashMap::new();
    for (at, sent) in log.iter().enumerate() {
        if sent.acknowledged {
            last_acknowledged.insert(sent.key, at);
        }
    }
    (0..before.len())
        .map(|key| {
            let (floor, from) = match last_acknowledged.get(&key) {
                Some(&at) => (log[at].value.clone(), at + 1),
                None => (before[key].clone(), 0),
            };
            let mut values = vec![floor];
            values.extend(
                log[from..]
                    .iter()
                    .filter(|sent| sent.key == key)
                    .map(|sent| sent.value.clone()),
            );
            values
        })
        .collect()
}

#[test]
fn acknowledged_writes_survive_kills_mid_stream() {
    let cycles: u64 = std::env::var(CYCLES_ENV).map_or(CYCLES_DEFAULT, |v| v.parse().unwrap());
    let seed: u64 = std::env::var(SEED_ENV).map_or_else(
        |_| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        },
        |v| v.parse().unwrap(),
    );
    eprintln!("server kill cycles: {cycles}, {SEED_ENV}={seed}");
    let keys = Arc::new(keys());
    let mut state: Vec<Option<Vec<u8>>> = vec![None; KEYS];
    let mut server = Server::start(BASE_PORT, "durability-sync-kill-cycles", &FLAGS);
    let mut rng = Rng::new(seed);
    let mut acknowledged_total = 0;
    for cycle in 0..cycles {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let (keys, log) = (keys.clone(), log.clone());
            std::thread::spawn(move || write_until_killed(&keys, seed, cycle, &log))
        };
        let kill_after = KILL_AFTER_MS_MIN + rng.below(KILL_AFTER_MS_MAX - KILL_AFTER_MS_MIN);
        std::thread::sleep(Duration::from_millis(kill_after));
        let (_, data_dir) = server.stop_keeping_data(libc::SIGKILL);
        writer.join().expect("writer");
        let log = log.lock().unwrap().clone();
        let acknowledged = log.iter().filter(|sent| sent.acknowledged).count();
        assert!(
            acknowledged > 0,
            "cycle {cycle}: nothing acknowledged before the kill"
        );
        acknowledged_total += acknowledged;
        let allowed = allowed(&state, &log);

        server = Server::start_in(BASE_PORT, data_dir, &FLAGS);
        let mut client = Client::connect(BASE_PORT);
        for (key, name) in keys.iter().enumerate() {
            client.command(&[b"GET", name]);
            let got = client.read_bulk();
            assert!(
                allowed[key].contains(&got),
                "cycle {cycle} (seed {seed}): {} holds {:?}, allowed {:?}",
                String::from_utf8_lossy(name),
                got.as_deref().map(String::from_utf8_lossy),
                allowed[key]
                    .iter()
                    .map(|value| value.as_deref().map(String::from_utf8_lossy))
                    .collect::<Vec<_>>()
            );
            state[key] = got;
        }
    }
    eprintln!("server kill cycles: {acknowledged_total} acknowledged writes checked");
}
