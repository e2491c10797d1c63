//! Tessera's command layer: every command, executed on the core that owns
//! the keys, against that core's store.
//!
//! One [`Shard`] per core implements [`crate::handler::Handler`]: it parses
//! requests out of a connection's bytes ([`crate::resp`]), looks the command
//! up in the one static table (`table.rs`), checks arity, authentication and
//! cluster routing (`-MOVED` when a key's slot belongs to another core,
//! `-CROSSSLOT` when a request's keys span slots), runs the command and
//! appends its reply. Writes of one network round are group-committed (see
//! `keyspace.rs` for the batch and memory-quota design).
//!
//! Files: `shard.rs` (the Handler, dispatch), `conn.rs` (per-connection
//! state), `node.rs` (this core as a cluster node), `keyspace.rs` (the only
//! engine user), `table.rs` (the command table), one file per command family
//! (`connection.rs`, `server.rs`, `cluster.rs`, `strings.rs`, `keys.rs`), and
//! helpers `args.rs` (argument parsing), `glob.rs` (Redis's pattern matcher),
//! `scan.rs` (SCAN cursors), `info.rs` (INFO text).

mod args;
mod cluster;
mod conn;
mod connection;
mod glob;
mod info;
mod keys;
mod keyspace;
mod node;
mod scan;
mod server;
mod shard;
mod strings;
mod table;

pub use conn::Conn;
pub use glob::glob_match;
pub use keys::{SCAN_COUNT_DEFAULT, SCAN_COUNT_MAX, TRANGE_COUNT_DEFAULT, TRANGE_COUNT_MAX};
pub use keyspace::{
    KeyspaceCounters, BATCH_BYTES_HINT_MAX, BATCH_BYTES_MIN, BATCH_OPS_HINT_MAX, BATCH_OPS_MIN,
    DELETE_RESERVE_BYTES,
};
pub use scan::SCAN_CURSORS_MAX;
pub use shard::{Shard, ShardError, Stats, MEMORY_LIMIT_BYTES_MIN};

use crate::resp::{Argv, Reply};
use keyspace::WriteError;
use shard::Core;

/// Everything a command sees while it runs.
pub(crate) struct Ctx<'a> {
    pub argv: Argv<'a>,
    pub conn: &'a mut Conn,
    pub core: &'a mut Core,
    pub reply: Reply<'a>,
    /// Close the connection after this reply (`QUIT`).
    pub close: bool,
}

impl Ctx<'_> {
    pub fn err_syntax(&mut self) {
        self.reply.error(b"ERR syntax error");
    }

    pub fn err_not_integer(&mut self) {
        self.reply
            .error(b"ERR value is not an integer or out of range");
    }

    /// The reply for a refused write (nothing was staged).
    pub fn err_write(&mut self, error: WriteError) {
        match error {
            WriteError::OutOfMemory => self
                .reply
                .error(b"OOM command not allowed when used memory > 'maxmemory'."),
            WriteError::KeyTooLong { len, max } => self
                .reply
                .error_fmt(format_args!("ERR key too long ({len} bytes, max {max})")),
            WriteError::ValueTooLong { len, max } => self
                .reply
                .error_fmt(format_args!("ERR value too long ({len} bytes, max {max})")),
            WriteError::TooLargeForBatch => self
                .reply
                .error(b"ERR request too large to apply atomically"),
            WriteError::Engine => self.reply.error(b"ERR the store refused the write"),
            WriteError::CommitPending => self
                .reply
                .error(b"TRYAGAIN too many writes are waiting for the disk; retry later"),
        }
    }
}
