//! The per-core [`Shard`]: the [`Handler`] the network loop drives, and the
//! dispatch of one request (lookup, arity, auth, cluster routing, run).

use std::fmt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::cluster::key_slot;
use crate::handler::{Durability, Handled, Handler, ShardConfig};
use crate::resp::{parse_request, Args, Argv, Parsed, Reply};

use super::conn::Conn;
use super::keyspace::{Access, Keyspace, PrefetchHint};
use super::node::Node;
use super::scan::ScanCursors;
use super::table::{self, Command, COMMANDS};
use super::Ctx;
use tessera_engine::{DurableConfig, KeyHash, PersistError};

/// Longest excerpt of a command name or of its arguments echoed back in an
/// "unknown command" error (Redis's 128).
const ERROR_ECHO_LEN_MAX: usize = 128;

/// Why a shard could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShardError {
    /// `core` is not below `cores`, or the ports do not fit.
    InvalidTopology {
        core: u16,
        cores: u16,
        base_port: u16,
    },
    /// The memory limit is too small to hold anything.
    MemoryLimitTooSmall { bytes: usize, min: usize },
    /// The engine refused to open the store.
    Store(tessera_engine::Error),
    /// The durable store could not be opened or recovered (the error names
    /// the file and offset of any damage).
    Persist(PersistError),
}

impl fmt::Display for ShardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardError::InvalidTopology {
                core,
                cores,
                base_port,
            } => write!(
                f,
                "invalid topology: core {core} of {cores} cores from base port {base_port}"
            ),
            ShardError::MemoryLimitTooSmall { bytes, min } => {
                write!(f, "memory limit {bytes} bytes is below the minimum {min}")
            }
            ShardError::Store(error) => write!(f, "opening the store failed: {error}"),
            ShardError::Persist(error) => write!(f, "opening the durable store failed: {error}"),
        }
    }
}

impl std::error::Error for ShardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShardError::Store(error) => Some(error),
            ShardError::Persist(error) => Some(error),
            _ => None,
        }
    }
}

/// Smallest per-core memory limit we accept.
pub const MEMORY_LIMIT_BYTES_MIN: usize = 1 << 20;

/// Counters reported by `INFO`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub commands_processed: u64,
    pub connections_received: u64,
    pub connected_clients: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub protocol_errors: u64,
    pub rejected_calls: u64,
}

/// Where the expiry clock comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    System,
    /// Set by hand (tests, simulation): only [`Shard::set_clock_ms`] moves it.
    Manual,
}

/// Everything of a core a command may touch (the argument table lives
/// beside it in [`Shard`], so a command can borrow both).
pub(crate) struct Core {
    pub node: Node,
    pub keyspace: Keyspace,
    pub requirepass: Option<Vec<u8>>,
    pub durability: Durability,
    pub scan: ScanCursors,
    pub stats: Stats,
    /// Reused scratch for replies whose length is known only once built
    /// (`INFO`, `CLUSTER NODES`) and for read-modify-write copies.
    pub scratch: Vec<u8>,
    pub started: Instant,
    clock: Clock,
    /// Whether the clock was read since the last round ended. The first
    /// request of a round reads it: an idle core's clock, last moved when its
    /// previous round ended, would otherwise lag by the whole idle time, so a
    /// key past its deadline stayed readable once and a fresh `PX` deadline
    /// could already lie in the past by the end of the round.
    clock_read_this_round: bool,
}

impl Core {
    pub fn now_ms(&self) -> u64 {
        self.keyspace.now_ms()
    }

    /// Moves the system clock forward to now, once per round (one clock
    /// read per round, not per request). Never moves it back.
    fn read_clock_once_per_round(&mut self) {
        if self.clock_read_this_round {
            return;
        }
        self.clock_read_this_round = true;
        if self.clock == Clock::System {
            let now_ms = system_now_ms();
            if now_ms > self.keyspace.now_ms() {
                self.keyspace.set_now_ms(now_ms);
            }
        }
    }
}

fn system_now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970");
    u64::try_from(since_epoch.as_millis()).expect("milliseconds fit u64")
}

/// One core's command layer. `!Send`: it lives and dies on its core.
pub struct Shard {
    args: Args,
    core: Core,
    prefetcher: Box<Prefetcher>,
    /// Rounds committed so far, plus one: the current round's number.
    round: u64,
}

impl Shard {
    /// A shard whose store lives in memory only (`config.data_dir` and
    /// `config.durability` are not used): the command layer's tests and
    /// benches. The server uses [`Shard::open`].
    pub fn new(config: ShardConfig) -> Result<Shard, ShardError> {
        Self::check(&config)?;
        let keyspace =
            Keyspace::new(config.memory_limit_bytes, system_now_ms()).map_err(ShardError::Store)?;
        Ok(Shard::with_keyspace(config, keyspace))
    }

    /// Opens (recovering) the core's durable store in `config.data_dir`,
    /// on the core's executor. Logs what recovery found.
    pub async fn open(config: ShardConfig) -> Result<Shard, ShardError> {
        Self::check(&config)?;
        let durability = match config.durability {
            Durability::Sync => tessera_engine::Durability::Sync,
            Durability::Async => tessera_engine::Durability::Async {
                flush_interval_ms: config.flush_interval_ms,
            },
        };
        let durable_config = DurableConfig {
            durability,
            tolerant: config.tolerant_recovery,
            ..DurableConfig::default()
        };
        let (keyspace, report) = Keyspace::open(
            &config.data_dir,
            u32::from(config.core),
            durable_config,
            config.memory_limit_bytes,
            system_now_ms(),
        )
        .await
        .map_err(ShardError::Persist)?;
        tracing::info!(
            core = config.core,
            file = %report.file.display(),
            segments = report.segments,
            records = report.records,
            torn_tail_bytes = report.torn_tail_bytes,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "store recovered"
        );
        if let Some(dropped) = &report.dropped {
            tracing::warn!(
                core = config.core,
                dropped = ?dropped,
                saved_to = ?report.dropped_saved_to,
                "tolerant recovery dropped a damaged range"
            );
        }
        Ok(Shard::with_keyspace(config, keyspace))
    }

    fn check(config: &ShardConfig) -> Result<(), ShardError> {
        let topology = &config.topology;
        let ports_fit =
            u32::from(topology.base_port) + u32::from(topology.cores) <= u32::from(u16::MAX) + 1;
        if topology.cores == 0 || config.core >= topology.cores || !ports_fit {
            return Err(ShardError::InvalidTopology {
                core: config.core,
                cores: topology.cores,
                base_port: topology.base_port,
            });
        }
        if config.memory_limit_bytes < MEMORY_LIMIT_BYTES_MIN {
            return Err(ShardError::MemoryLimitTooSmall {
                bytes: config.memory_limit_bytes,
                min: MEMORY_LIMIT_BYTES_MIN,
            });
        }
        Ok(())
    }

    fn with_keyspace(config: ShardConfig, keyspace: Keyspace) -> Shard {
        let topology = &config.topology;
        Shard {
            round: 1,
            args: Args::new(),
            prefetcher: Box::new(Prefetcher::new()),
            core: Core {
                node: Node::new(config.core, topology),
                keyspace,
                requirepass: config.requirepass.map(String::into_bytes),
                durability: config.durability,
                scan: ScanCursors::new(),
                stats: Stats::default(),
                scratch: Vec::with_capacity(SCRATCH_CAPACITY_BYTES),
                started: Instant::now(),
                clock: Clock::System,
                clock_read_this_round: false,
            },
        }
    }

    /// Switches the expiry clock to manual and sets it (Unix ms). For tests
    /// and simulations that need to move time deterministically.
    pub fn set_clock_ms(&mut self, now_ms: u64) {
        self.core.clock = Clock::Manual;
        self.core.keyspace.set_now_ms(now_ms);
    }

    /// The expiry clock, Unix ms.
    pub fn clock_ms(&self) -> u64 {
        self.core.now_ms()
    }

    pub fn stats(&self) -> Stats {
        self.core.stats
    }

    /// Group-commit counters (batches and writes applied, writes refused).
    pub fn keyspace_counters(&self) -> super::KeyspaceCounters {
        self.core.keyspace.counters
    }

    /// [`Handler::commit`] for a memory-only shard ([`Shard::new`]), which
    /// never waits: tests and benches drive rounds without an executor.
    pub fn commit_round(&mut self) {
        assert!(
            self.core.keyspace.durable().is_none(),
            "a durable shard commits through Handler::commit"
        );
        poll_once(self.commit())
            .expect("a memory-only commit never waits")
            .expect("memory commits cannot fail");
        poll_once(self.maintain()).expect("memory-only maintenance never waits");
    }

    async fn commit_inner(&mut self) -> Result<(), PersistError> {
        let now_ms = match self.core.clock {
            Clock::System => system_now_ms(),
            Clock::Manual => self.core.keyspace.now_ms(),
        };
        // Replies of this round carry its number; a failure rewrites them.
        self.round += 1;
        let result = self.core.keyspace.commit(now_ms).await;
        self.core.clock_read_this_round = false;
        self.core.scratch_trim();
        result
    }
}

/// Requests at the head of an input whose keys are prefetched: about what
/// the CPU keeps in flight, and a bound on the extra parsing.
const PREFETCH_REQUESTS_MAX: usize = 32;

/// Inputs whose keys [`Prefetcher`] holds: one per stage of a lookup's
/// loads (the tables' slots, then the record's `meta`, then its bytes).
const PREFETCH_STAGES: usize = 3;

// The loop names an input as many connections ahead as there are stages,
// so each input's last stage runs just before it is handled.
const _: () = assert!(PREFETCH_STAGES == crate::handler::PREFETCH_AHEAD_CONNS);

/// A key being prefetched, and where its record probably is once known.
#[derive(Clone, Copy)]
struct PrefetchKey {
    hash: KeyHash,
    access: Access,
    hint: PrefetchHint,
}

/// The keys of the last inputs named to `Handler::prefetch`, one input per
/// stage: a lookup misses the cache three times in a row, each address
/// known only once the line before it is in. Each call starts the first
/// stage for the new input's keys and the next stage for each earlier
/// input's, so every stage's lines have the time the loop spends handling
/// a connection to arrive.
struct Prefetcher {
    keys: [[PrefetchKey; PREFETCH_REQUESTS_MAX]; PREFETCH_STAGES],
    counts: [usize; PREFETCH_STAGES],
    /// Where the next input's keys go; the one before it is at `newest - 1`.
    newest: usize,
}

impl Prefetcher {
    fn new() -> Prefetcher {
        let unused = PrefetchKey {
            hash: KeyHash::of(b""),
            access: Access::Read,
            hint: PrefetchHint::Nowhere,
        };
        Prefetcher {
            keys: [[unused; PREFETCH_REQUESTS_MAX]; PREFETCH_STAGES],
            counts: [0; PREFETCH_STAGES],
            newest: 0,
        }
    }

    /// Where the input named `age` calls ago sits (0: the newest).
    fn at(&self, age: usize) -> usize {
        (self.newest + PREFETCH_STAGES - 1 - age) % PREFETCH_STAGES
    }
}

impl Shard {
    /// See `Handler::prefetch` and [`Prefetcher`].
    fn prefetch_input(&mut self, next: Option<(&Conn, &[u8])>) {
        let keyspace = &self.core.keyspace;
        let prefetcher = &mut *self.prefetcher;
        // The oldest input first: its lines are the ones needed soonest.
        let oldest = prefetcher.at(1);
        for key in &prefetcher.keys[oldest][..prefetcher.counts[oldest]] {
            keyspace.prefetch_record(key.hint);
        }
        let previous = prefetcher.at(0);
        let count = prefetcher.counts[previous];
        for key in &mut prefetcher.keys[previous][..count] {
            key.hint = keyspace.prefetch_meta(key.hash, key.access);
        }
        let at = prefetcher.at(PREFETCH_STAGES - 1);
        prefetcher.newest = (at + 1) % PREFETCH_STAGES;
        prefetcher.counts[at] = 0;
        let Some((conn, input)) = next else {
            return;
        };
        let mut consumed = 0;
        for _ in 0..PREFETCH_REQUESTS_MAX {
            let rest = &input[consumed..];
            let Parsed::Request { len } = parse_request(rest, &mut self.args, conn.limits()) else {
                break;
            };
            consumed += len;
            let argv = self.args.view(rest);
            if argv.len() < 2 {
                continue;
            }
            let Some(command) = table::lookup(COMMANDS, argv.get(0)) else {
                continue;
            };
            if command.keys.first != 1 {
                continue;
            }
            let access = if command.has_flag(table::flag::READONLY) {
                Access::Read
            } else if command.has_flag(table::flag::WRITE) {
                Access::Write
            } else {
                continue;
            };
            let hash = KeyHash::of(argv.get(1));
            keyspace.prefetch_slots(hash, access);
            let count = &mut prefetcher.counts[at];
            prefetcher.keys[at][*count] = PrefetchKey {
                hash,
                access,
                hint: PrefetchHint::Nowhere,
            };
            *count += 1;
        }
    }
}

/// Polls `future` once with a waker that does nothing; `None` if it waits.
/// For futures that complete without I/O (a memory-only commit).
pub(crate) fn poll_once<F: std::future::Future>(future: F) -> Option<F::Output> {
    use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
    fn noop_raw() -> RawWaker {
        fn clone(_: *const ()) -> RawWaker {
            noop_raw()
        }
        fn noop(_: *const ()) {}
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    // SAFETY: the vtable's functions ignore the (null) data pointer.
    let waker = unsafe { Waker::from_raw(noop_raw()) };
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Initial capacity of the shared scratch buffer; grown by big replies and
/// trimmed back at the end of a round.
const SCRATCH_CAPACITY_BYTES: usize = 64 * 1024;

impl Core {
    fn scratch_trim(&mut self) {
        self.scratch.clear();
        if self.scratch.capacity() > 16 * SCRATCH_CAPACITY_BYTES {
            self.scratch.shrink_to(SCRATCH_CAPACITY_BYTES);
        }
    }
}

impl Handler for Shard {
    type Conn = Conn;
    type CommitError = PersistError;

    fn open(&mut self, conn_id: u64) -> Conn {
        self.core.stats.connections_received += 1;
        self.core.stats.connected_clients += 1;
        Conn::new(conn_id, self.core.requirepass.is_none())
    }

    fn prefetch(&mut self, next: Option<(&Conn, &[u8])>) {
        self.prefetch_input(next);
    }

    fn handle(&mut self, conn: &mut Conn, input: &[u8], out: &mut Vec<u8>) -> Handled {
        self.core.read_clock_once_per_round();
        if conn.round != self.round {
            conn.round = self.round;
            conn.round_requests = 0;
        }
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            match parse_request(rest, &mut self.args, conn.limits()) {
                Parsed::Incomplete => break,
                Parsed::Error(error) => {
                    self.core.stats.protocol_errors += 1;
                    conn.round_requests += 1;
                    Reply::new(out, conn.proto)
                        .error_fmt(format_args!("ERR Protocol error: {error}"));
                    return Handled {
                        consumed: input.len(),
                        close: true,
                    };
                }
                Parsed::Request { len } => {
                    debug_assert!(len > 0 && len <= rest.len());
                    consumed += len;
                    if self.args.is_empty() {
                        continue;
                    }
                    let argv = self.args.view(rest);
                    conn.round_requests += 1;
                    if execute(&mut self.core, conn, argv, out) {
                        return Handled {
                            consumed,
                            close: true,
                        };
                    }
                }
            }
        }
        Handled {
            consumed,
            close: false,
        }
    }

    async fn commit(&mut self) -> Result<(), PersistError> {
        self.commit_inner().await
    }

    /// Every reply `conn` got in the failed round becomes the disk error:
    /// its writes were taken back, and its reads may have seen writes of
    /// the round (its own or another connection's) that no longer exist.
    fn round_failed(
        &mut self,
        conn: &mut Conn,
        out: &mut Vec<u8>,
        round_start: usize,
        error: &PersistError,
    ) {
        // `commit` already moved to the next round.
        if conn.round + 1 != self.round || conn.round_requests == 0 {
            return;
        }
        assert!(round_start <= out.len());
        out.truncate(round_start);
        for _ in 0..conn.round_requests {
            Reply::new(out, conn.proto)
                .error_fmt(format_args!("ERR disk error: {error}; write not applied"));
        }
        conn.round_requests = 0;
    }

    async fn maintain(&mut self) {
        self.core.keyspace.maintain().await;
    }

    fn idle_wake_after(&self) -> Option<std::time::Duration> {
        self.core.keyspace.idle_wake_after()
    }

    async fn shutdown(&mut self) -> Result<(), PersistError> {
        self.core.keyspace.shutdown().await
    }

    fn close(&mut self, conn: Conn) {
        debug_assert!(self.core.stats.connected_clients > 0);
        self.core.stats.connected_clients -= 1;
        drop(conn);
    }
}

/// Runs one request; returns whether to close the connection.
fn execute(core: &mut Core, conn: &mut Conn, argv: Argv<'_>, out: &mut Vec<u8>) -> bool {
    debug_assert!(!argv.is_empty());
    core.stats.commands_processed += 1;
    let mut reply = Reply::new(out, conn.proto);
    let Some(command) = resolve(argv, &mut reply) else {
        core.stats.rejected_calls += 1;
        return false;
    };
    if !conn.authenticated && !command.has_flag(table::flag::NO_AUTH) {
        core.stats.rejected_calls += 1;
        reply.error(b"NOAUTH Authentication required.");
        return false;
    }
    if !route(core, command, argv, &mut reply) {
        core.stats.rejected_calls += 1;
        conn.asking = false;
        return false;
    }
    let run = command.run.expect("resolve returns runnable commands");
    // ASKING arms the flag for the next command; every other command uses
    // it up.
    let is_asking = command.name == "asking";
    let reply_start = reply.out.len();
    let mut ctx = Ctx {
        argv,
        conn,
        core,
        reply,
        close: false,
    };
    run(&mut ctx);
    // Every request gets exactly one reply; a command that wrote none would
    // desynchronise the client's pipeline.
    debug_assert!(
        ctx.reply.out.len() > reply_start,
        "{} wrote no reply",
        command.name
    );
    let close = ctx.close;
    if !is_asking {
        ctx.conn.asking = false;
    }
    close
}

/// Finds the runnable command (or subcommand) and checks its arity; on
/// failure writes Redis's error.
fn resolve(argv: Argv<'_>, reply: &mut Reply<'_>) -> Option<&'static Command> {
    let name = argv.get(0);
    let Some(command) = table::lookup(COMMANDS, name) else {
        unknown_command(argv, reply);
        return None;
    };
    if !command.arity_ok(argv.len()) {
        arity_error(reply, command.name, None);
        return None;
    }
    if command.subcommands.is_empty() || (argv.len() == 1 && command.run.is_some()) {
        return Some(command);
    }
    let sub_name = argv.get(1);
    let Some(sub) = table::lookup(command.subcommands, sub_name) else {
        let shown = &sub_name[..sub_name.len().min(ERROR_ECHO_LEN_MAX)];
        let mut upper = [0u8; table::COMMAND_NAME_LEN_MAX];
        let container = &mut upper[..command.name.len()];
        container.copy_from_slice(command.name.as_bytes());
        container.make_ascii_uppercase();
        reply.error_fmt(format_args!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            String::from_utf8_lossy(shown),
            String::from_utf8_lossy(container)
        ));
        return None;
    };
    if !sub.arity_ok(argv.len()) {
        arity_error(reply, command.name, Some(sub.name));
        return None;
    }
    Some(sub)
}

fn arity_error(reply: &mut Reply<'_>, name: &str, sub: Option<&str>) {
    match sub {
        None => reply.error_fmt(format_args!(
            "ERR wrong number of arguments for '{name}' command"
        )),
        Some(sub) => reply.error_fmt(format_args!(
            "ERR wrong number of arguments for '{name}|{sub}' command"
        )),
    }
}

/// Redis's "unknown command" error: the name and the first arguments, each
/// quoted, together at most about [`ERROR_ECHO_LEN_MAX`] bytes.
fn unknown_command(argv: Argv<'_>, reply: &mut Reply<'_>) {
    let out = &mut *reply.out;
    out.push(b'-');
    let start = out.len();
    let name = argv.get(0);
    out.extend_from_slice(b"ERR unknown command '");
    out.extend_from_slice(&name[..name.len().min(ERROR_ECHO_LEN_MAX)]);
    out.extend_from_slice(b"', with args beginning with: ");
    let mut echoed = 0;
    for arg in argv.iter_from(1) {
        if echoed >= ERROR_ECHO_LEN_MAX {
            break;
        }
        let take = arg.len().min(ERROR_ECHO_LEN_MAX - echoed);
        out.push(b'\'');
        out.extend_from_slice(&arg[..take]);
        out.extend_from_slice(b"' ");
        echoed += take + 3;
    }
    for b in &mut out[start..] {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Cluster routing: all keys must hash to one slot (`-CROSSSLOT`), owned by
/// this core (`-MOVED`). Returns whether the command may run here.
fn route(core: &Core, command: &Command, argv: Argv<'_>, reply: &mut Reply<'_>) -> bool {
    if !command.keys.has_keys() {
        return true;
    }
    let mut slot = None;
    for index in command.keys.indexes(argv.len()) {
        let key_slot = key_slot(argv.get(index));
        match slot {
            None => slot = Some(key_slot),
            Some(first) if first != key_slot => {
                reply.error(b"CROSSSLOT Keys in request don't hash to the same slot");
                return false;
            }
            Some(_) => {}
        }
    }
    let Some(slot) = slot else {
        return true;
    };
    if core.node.owns(slot) {
        return true;
    }
    let owner = core.node.owner(slot);
    let out = &mut *reply.out;
    out.extend_from_slice(b"-MOVED ");
    let mut buf = [0u8; 20];
    out.extend_from_slice(crate::resp::format_i64(i64::from(slot), &mut buf));
    out.push(b' ');
    core.node.write_addr(out, owner);
    out.extend_from_slice(b"\r\n");
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::NodeTopology;
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::PathBuf;
    use std::rc::Rc;

    fn config(core: u16, cores: u16, base_port: u16, memory_limit_bytes: usize) -> ShardConfig {
        ShardConfig {
            core,
            topology: Rc::new(NodeTopology {
                announce_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                base_port,
                cores,
            }),
            requirepass: None,
            memory_limit_bytes,
            durability: Durability::Sync,
            flush_interval_ms: 10,
            tolerant_recovery: false,
            data_dir: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn invalid_configs_are_refused() {
        let error = Shard::new(config(2, 2, 7000, 8 << 20)).err().unwrap();
        assert!(matches!(
            error,
            ShardError::InvalidTopology {
                core: 2,
                cores: 2,
                ..
            }
        ));
        assert!(matches!(
            Shard::new(config(0, 0, 7000, 8 << 20)).err().unwrap(),
            ShardError::InvalidTopology { .. }
        ));
        assert!(matches!(
            Shard::new(config(0, 4, u16::MAX - 1, 8 << 20))
                .err()
                .unwrap(),
            ShardError::InvalidTopology { .. }
        ));
        let error = Shard::new(config(0, 1, 7000, 1024)).err().unwrap();
        assert_eq!(
            error.to_string(),
            "memory limit 1024 bytes is below the minimum 1048576"
        );
        assert!(Shard::new(config(3, 4, u16::MAX - 3, 8 << 20)).is_ok());
    }

    #[test]
    fn a_failed_round_rewrites_exactly_that_rounds_replies() {
        let mut shard = Shard::new(config(0, 1, 7000, 8 << 20)).unwrap();
        let mut conn = shard.open(1);
        let mut idle = shard.open(2);
        let mut out = b"+EARLIER\r\n".to_vec();
        let round_start = out.len();
        let requests = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n\
            *2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n";
        let handled = shard.handle(&mut conn, requests, &mut out);
        assert_eq!(handled.consumed, requests.len());
        assert_eq!(&out[round_start..], b"+OK\r\n$1\r\n1\r\n+PONG\r\n");
        shard.commit_round();
        let error = PersistError::WriteFailed {
            reason: "disk\r\ngone".into(),
        };
        shard.round_failed(&mut conn, &mut out, round_start, &error);
        let reply = b"-ERR disk error: write not persisted: disk  gone; write not applied\r\n";
        let mut expected = b"+EARLIER\r\n".to_vec();
        for _ in 0..3 {
            expected.extend_from_slice(reply);
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected)
        );
        // A connection without requests in that round is left alone, and a
        // second call for the same round changes nothing.
        let mut idle_out = b"+KEEP\r\n".to_vec();
        shard.round_failed(&mut idle, &mut idle_out, 0, &error);
        assert_eq!(idle_out, b"+KEEP\r\n");
        shard.round_failed(&mut conn, &mut out, round_start, &error);
        assert_eq!(out, expected);
        shard.close(conn);
        shard.close(idle);
    }

    /// A deterministic mix of requests over few keys, so sets overwrite
    /// keys of the open batch and reads find them there and in segments;
    /// inline and malformed requests and keyless commands included.
    fn random_input(seed: &mut u64, requests: usize) -> Vec<u8> {
        let mut next = || {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*seed >> 33) as usize
        };
        let mut input = Vec::new();
        for _ in 0..requests {
            let key = format!("key:{}", next() % 3000);
            let request = match next() % 20 {
                0 => format!("GET {key}\r\n"),
                1 => format!("*2\r\n$3\r\nDEL\r\n${}\r\n{key}\r\n", key.len()),
                2 => format!("*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len()),
                3 => "*1\r\n$4\r\nPING\r\n".to_string(),
                4 => format!("*2\r\n$6\r\nEXISTS\r\n${}\r\n{key}\r\n", key.len()),
                5 if next() % 50 == 0 => "*2\r\n$3\r\nGET\r\n$x\r\n".to_string(),
                6..=12 => format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$5\r\nv{:04}\r\n",
                    key.len(),
                    next() % 10_000
                ),
                _ => format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()),
            };
            input.extend_from_slice(request.as_bytes());
        }
        input
    }

    #[test]
    fn prefetching_changes_no_reply() {
        const CONNS: usize = 6;
        let mut with = Shard::new(config(0, 1, 7000, 64 << 20)).unwrap();
        let mut without = Shard::new(config(0, 1, 7000, 64 << 20)).unwrap();
        let mut conns_with: Vec<Conn> = (0..CONNS as u64).map(|id| with.open(id)).collect();
        let mut conns_without: Vec<Conn> = (0..CONNS as u64).map(|id| without.open(id)).collect();
        let mut seed = 7;
        let (mut out_with, mut out_without) = (Vec::new(), Vec::new());
        // Enough ops to fill and apply open batches, so the stack changes
        // between a prefetch and the lookups it prepared.
        for round in 0..600 {
            let inputs: Vec<Vec<u8>> = (0..CONNS)
                .map(|_| random_input(&mut seed, 1 + round % 48))
                .collect();
            // As the event loop does: each input named PREFETCH_AHEAD_CONNS
            // connections before it is handled.
            let name = |shard: &mut Shard, conns: &[Conn], at: usize| {
                shard.prefetch(conns.get(at).map(|conn| (conn, &inputs[at][..])));
            };
            for at in 0..crate::handler::PREFETCH_AHEAD_CONNS {
                name(&mut with, &conns_with, at);
            }
            for at in 0..CONNS {
                name(
                    &mut with,
                    &conns_with,
                    at + crate::handler::PREFETCH_AHEAD_CONNS,
                );
                out_with.clear();
                out_without.clear();
                let a = with.handle(&mut conns_with[at], &inputs[at], &mut out_with);
                let b = without.handle(&mut conns_without[at], &inputs[at], &mut out_without);
                assert_eq!(a, b, "round {round} connection {at}");
                assert_eq!(
                    String::from_utf8_lossy(&out_with),
                    String::from_utf8_lossy(&out_without),
                    "round {round} connection {at}"
                );
                if a.close {
                    // A protocol error closes the connection: open another.
                    let id = (round * CONNS + at + CONNS) as u64;
                    let fresh = with.open(id);
                    with.close(std::mem::replace(&mut conns_with[at], fresh));
                    let fresh = without.open(id);
                    without.close(std::mem::replace(&mut conns_without[at], fresh));
                }
            }
            with.commit_round();
            without.commit_round();
        }
        assert!(
            with.stats().protocol_errors > 0,
            "the mix had malformed requests"
        );
        let counters = with.keyspace_counters();
        assert!(counters.batches_applied > 1, "{counters:?}");
        assert_eq!(
            with.stats().protocol_errors,
            without.stats().protocol_errors
        );
    }

    #[test]
    fn connections_are_counted() {
        let mut shard = Shard::new(config(0, 1, 7000, 8 << 20)).unwrap();
        let a = shard.open(1);
        let b = shard.open(2);
        assert_eq!(shard.stats().connected_clients, 2);
        shard.close(a);
        assert_eq!(shard.stats().connected_clients, 1);
        assert_eq!(shard.stats().connections_received, 2);
        shard.close(b);
    }

    #[test]
    fn an_idle_core_reads_the_clock_before_its_first_request() {
        let mut shard = Shard::new(config(0, 1, 7000, 8 << 20)).unwrap();
        let mut conn = shard.open(1);
        let mut out = Vec::new();
        // The clock as an idle core left it: its last round ended long ago.
        let stale_ms = system_now_ms() - 60_000;
        shard.core.keyspace.set_now_ms(stale_ms);
        let set = b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$5\r\n10000\r\n";
        let handled = shard.handle(&mut conn, set, &mut out);
        assert_eq!(handled.consumed, set.len());
        assert_eq!(out, b"+OK\r\n");
        assert!(shard.clock_ms() >= stale_ms + 60_000, "clock not read");
        shard.commit_round();
        out.clear();
        // The deadline counts from now, not from the stale clock.
        let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        shard.handle(&mut conn, get, &mut out);
        assert_eq!(out, b"$1\r\nv\r\n");
        shard.close(conn);
    }
}
