//! The seam between a core's network loop and its command layer.
//!
//! The network loop (module `server`) owns sockets, buffers and the io_uring
//! ring; it knows nothing of RESP. The command layer (a [`Handler`], one per
//! core) parses requests out of a connection's bytes, executes them against
//! the core's store and appends replies. Keeping the seam this narrow lets the
//! same loop drive the real command layer, the ceiling responder used to
//! measure what one core can do over loopback at all, and tests.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// What [`Handler::handle`] did with a connection's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// Bytes of the input consumed (complete requests). The rest stays in the
    /// connection's read buffer until more bytes arrive.
    pub consumed: usize,
    /// Close the connection once the replies appended so far are sent
    /// (`QUIT`, or a protocol error).
    pub close: bool,
}

/// How many connections ahead of handling them the network loop names
/// their input to [`Handler::prefetch`]: a lookup's dependent cache misses
/// (hash slot, then record metadata, then key bytes) take one stage each.
pub const PREFETCH_AHEAD_CONNS: usize = 3;

/// A core's command layer, driven by that core's network loop. Single
/// threaded: it lives and dies on its core.
#[allow(async_fn_in_trait)]
pub trait Handler {
    /// Per-connection protocol state (RESP version, auth, name, ...).
    type Conn;

    /// Why a round's writes could not be made durable (a disk error).
    type CommitError: fmt::Display;

    /// A connection was accepted; `conn_id` is unique on this node.
    fn open(&mut self, conn_id: u64) -> Self::Conn;

    /// Parse and execute every complete request in `input`, appending each
    /// reply to `out` in order. Must not block.
    fn handle(&mut self, conn: &mut Self::Conn, input: &[u8], out: &mut Vec<u8>) -> Handled;

    /// A hint, called [`PREFETCH_AHEAD_CONNS`] connections before `next`'s
    /// input is handled (`None` once no connection is left to name): start
    /// loading into the CPU's caches what handling that input will read,
    /// and advance the loads begun for the connections named before. Runs
    /// while the loop handles other connections, so the misses of one
    /// round's lookups overlap with its work instead of stalling it. Must
    /// change nothing a client can observe.
    fn prefetch(&mut self, next: Option<(&Self::Conn, &[u8])>) {
        let _ = next;
    }

    /// End of one network round: every connection that had input was handled.
    /// Writes buffered during the round are made durable (per the durability
    /// mode) before this returns; the loop sends the round's replies after.
    /// Also called, without input, when [`Handler::idle_wake_after`] asked.
    /// On `Err` none of the round's writes took effect: the loop then calls
    /// [`Handler::round_failed`] for every connection handled this round.
    async fn commit(&mut self) -> Result<(), Self::CommitError>;

    /// The round's commit failed. `out[round_start..]` holds the replies
    /// `conn` got this round; replace them with one error per request (the
    /// writes were not applied, and reads of the round may have seen them).
    fn round_failed(
        &mut self,
        conn: &mut Self::Conn,
        out: &mut Vec<u8>,
        round_start: usize,
        error: &Self::CommitError,
    );

    /// Bounded background work (merges; durable: a due flush, compaction),
    /// called after each commit once the round's replies are submitted, so
    /// its disk waits never delay them.
    async fn maintain(&mut self);

    /// How soon `commit` is wanted though no input arrives (async-mode
    /// flushes, background merges); `None` when nothing waits.
    fn idle_wake_after(&self) -> Option<Duration>;

    /// Clean shutdown, after the last round's commit: persist everything.
    async fn shutdown(&mut self) -> Result<(), Self::CommitError>;

    /// The connection is gone (closed by either side).
    fn close(&mut self, conn: Self::Conn);
}

/// How acknowledged writes are persisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledge a write only after it is written and `fdatasync`ed.
    #[default]
    Sync,
    /// Acknowledge after the in-memory apply; persist within a bounded interval.
    Async,
}

/// The node as clients see it: one cluster node per core, core `i` on
/// `base_port + i`, all announced on `announce_ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTopology {
    /// A reachable address, never 0.0.0.0.
    pub announce_ip: IpAddr,
    pub base_port: u16,
    pub cores: u16,
}

/// Everything one core's command layer needs to start.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// This core's index, `0..topology.cores`.
    pub core: u16,
    pub topology: Rc<NodeTopology>,
    pub requirepass: Option<String>,
    /// This core's share of the node's memory limit, in bytes.
    pub memory_limit_bytes: usize,
    pub durability: Durability,
    /// Async mode: applied writes reach the disk within this interval.
    pub flush_interval_ms: u64,
    /// Open a damaged store keeping what precedes the damage (reported).
    pub tolerant_recovery: bool,
    /// This core's own directory, `<data-dir>/core-<n>/`.
    pub data_dir: PathBuf,
}
