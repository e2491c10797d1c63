//! The one static command table. Dispatch, arity checks, `-NOAUTH`, cluster
//! key routing (`-MOVED`, `-CROSSSLOT`), `COMMAND` replies and `COMMAND
//! GETKEYS` all derive from it, so they cannot disagree.
//!
//! The table is sorted by name; lookup lowercases the request's command name
//! into four big-endian words (zero padded, so word order is name order)
//! and binary-searches on them: ~7 comparisons of integers, no allocation.
//! Comparing the names as byte slices instead called `memcmp` per step:
//! 3-5 % of a server core under a GET/SET load.

use super::{cluster, connection, keys, server, strings, Ctx};

/// Runs one command; the arity, auth and cluster checks already passed.
pub type CommandFn = fn(&mut Ctx<'_>);

/// Longest command or subcommand name we know, so lookup can lowercase into
/// a fixed buffer: anything longer is unknown.
pub const COMMAND_NAME_LEN_MAX: usize = 32;

/// Where a command's keys are, Redis's legacy (first, last, step) triple:
/// `last` negative counts from the end (-1 = last argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPositions {
    pub first: i32,
    pub last: i32,
    pub step: i32,
}

pub const NO_KEYS: KeyPositions = KeyPositions {
    first: 0,
    last: 0,
    step: 0,
};
const ONE_KEY: KeyPositions = KeyPositions {
    first: 1,
    last: 1,
    step: 1,
};
const ALL_KEYS: KeyPositions = KeyPositions {
    first: 1,
    last: -1,
    step: 1,
};
const KEY_VALUE_PAIRS: KeyPositions = KeyPositions {
    first: 1,
    last: -1,
    step: 2,
};

impl KeyPositions {
    pub fn has_keys(&self) -> bool {
        self.first > 0
    }

    /// Argument indexes of the keys in a request of `argc` arguments (the
    /// arity check passed), ascending.
    pub fn indexes(&self, argc: usize) -> impl Iterator<Item = usize> {
        let (first, last, step) = if self.has_keys() {
            let last = if self.last < 0 {
                argc as i32 + self.last
            } else {
                self.last.min(argc as i32 - 1)
            };
            (
                self.first as usize,
                last.max(0) as usize,
                self.step.max(1) as usize,
            )
        } else {
            (1, 0, 1)
        };
        (first..=last).step_by(step).filter(move |_| first <= last)
    }
}

/// Command flags (Redis's names, as `COMMAND` reports them).
pub mod flag {
    pub const WRITE: &str = "write";
    pub const READONLY: &str = "readonly";
    pub const DENYOOM: &str = "denyoom";
    pub const ADMIN: &str = "admin";
    pub const NOSCRIPT: &str = "noscript";
    pub const LOADING: &str = "loading";
    pub const STALE: &str = "stale";
    pub const FAST: &str = "fast";
    pub const NO_AUTH: &str = "no_auth";
}

#[derive(Debug)]
pub struct Command {
    /// `name` packed by [`name_key`], what lookup compares.
    name_key: NameKey,
    /// Lowercase name (for subcommands, without the container's name).
    pub name: &'static str,
    /// Redis arity: N means exactly N arguments, -N at least N (the command
    /// name counts; for subcommands, the container name counts too).
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub keys: KeyPositions,
    pub acl_categories: &'static [&'static str],
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
    /// `None` only for containers that need a subcommand.
    pub run: Option<CommandFn>,
    /// Sorted by name.
    pub subcommands: &'static [Command],
}

impl Command {
    pub fn has_flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }
}

/// A command name of at most [`COMMAND_NAME_LEN_MAX`] bytes, lowercased,
/// zero padded and packed big-endian: comparing keys compares names.
type NameKey = [u64; COMMAND_NAME_LEN_MAX / 8];

const fn name_key(name: &[u8]) -> NameKey {
    assert!(name.len() <= COMMAND_NAME_LEN_MAX);
    let mut key = [0u64; COMMAND_NAME_LEN_MAX / 8];
    let mut i = 0;
    while i < name.len() {
        let byte = name[i].to_ascii_lowercase();
        // A NUL would compare like padding; no command name holds one.
        key[i / 8] |= (byte as u64) << (56 - 8 * (i % 8));
        i += 1;
    }
    key
}

/// Finds `name` (any case) in a sorted table.
pub fn lookup(table: &'static [Command], name: &[u8]) -> Option<&'static Command> {
    if name.len() > COMMAND_NAME_LEN_MAX || name.contains(&0) {
        return None;
    }
    let key = name_key(name);
    table
        .binary_search_by(|command| command.name_key.cmp(&key))
        .ok()
        .map(|i| &table[i])
}

// One row of the table: positional so the table reads as a table.
#[allow(clippy::too_many_arguments)]
const fn command(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: KeyPositions,
    acl_categories: &'static [&'static str],
    group: &'static str,
    summary: &'static str,
    run: CommandFn,
) -> Command {
    Command {
        name_key: name_key(name.as_bytes()),
        name,
        arity,
        flags,
        keys,
        acl_categories,
        group,
        since: "1.0.0",
        summary,
        run: Some(run),
        subcommands: &[],
    }
}

const fn container(
    name: &'static str,
    arity: i32,
    group: &'static str,
    summary: &'static str,
    run: Option<CommandFn>,
    subcommands: &'static [Command],
) -> Command {
    Command {
        name_key: name_key(name.as_bytes()),
        name,
        arity,
        flags: &[],
        keys: NO_KEYS,
        acl_categories: &["@slow"],
        group,
        since: "2.0.0",
        summary,
        run,
        subcommands,
    }
}

use flag::*;

const R_FAST: &[&str] = &[READONLY, FAST];
const R: &[&str] = &[READONLY];
const W_OOM_FAST: &[&str] = &[WRITE, DENYOOM, FAST];
const W_OOM: &[&str] = &[WRITE, DENYOOM];
const W_FAST: &[&str] = &[WRITE, FAST];
const W: &[&str] = &[WRITE];
const CONN: &[&str] = &[NOSCRIPT, LOADING, STALE, FAST];
const CONN_NO_AUTH: &[&str] = &[NOSCRIPT, LOADING, STALE, FAST, NO_AUTH];
const ADMIN_FLAGS: &[&str] = &[ADMIN, NOSCRIPT, LOADING, STALE];

const A_READ_STR_FAST: &[&str] = &["@read", "@string", "@fast"];
const A_READ_STR_SLOW: &[&str] = &["@read", "@string", "@slow"];
const A_WRITE_STR_FAST: &[&str] = &["@write", "@string", "@fast"];
const A_WRITE_STR_SLOW: &[&str] = &["@write", "@string", "@slow"];
const A_KEYSPACE_READ_FAST: &[&str] = &["@keyspace", "@read", "@fast"];
const A_KEYSPACE_READ_SLOW: &[&str] = &["@keyspace", "@read", "@slow"];
const A_KEYSPACE_WRITE_FAST: &[&str] = &["@keyspace", "@write", "@fast"];
const A_KEYSPACE_WRITE_SLOW: &[&str] = &["@keyspace", "@write", "@slow"];
const A_DANGEROUS: &[&str] = &["@keyspace", "@write", "@slow", "@dangerous"];
const A_CONN: &[&str] = &["@fast", "@connection"];

/// Every top-level command, sorted by name (a unit test checks it).
pub static COMMANDS: &[Command] = &[
    command("append", 3, W_OOM_FAST, ONE_KEY, A_WRITE_STR_FAST, "string", "Appends a string to the value of a key. Creates the key if it doesn't exist.", strings::append),
    command("asking", 1, &[FAST], NO_KEYS, &["@fast", "@connection"], "cluster", "Signals that a cluster client is following an -ASK redirect.", cluster::asking),
    command("auth", -2, CONN_NO_AUTH, NO_KEYS, &["@fast", "@connection"], "connection", "Authenticates the connection.", connection::auth),
    container("client", -2, "connection", "A container for client connection commands.", None, connection::CLIENT_SUBCOMMANDS),
    container("cluster", -2, "cluster", "A container for Redis Cluster commands.", None, cluster::CLUSTER_SUBCOMMANDS),
    container("command", -1, "server", "Returns detailed information about all commands.", Some(server::command_list_all), server::COMMAND_SUBCOMMANDS),
    container("config", -2, "server", "A container for server configuration commands.", None, server::CONFIG_SUBCOMMANDS),
    command("dbsize", 1, R_FAST, NO_KEYS, A_KEYSPACE_READ_FAST, "server", "Returns the number of keys in the database.", server::dbsize),
    command("decr", 2, W_OOM_FAST, ONE_KEY, A_WRITE_STR_FAST, "string", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", strings::decr),
    command("decrby", 3, W_OOM_FAST, ONE_KEY, A_WRITE_STR_FAST, "string", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", strings::decrby),
    command("del", -2, W, ALL_KEYS, A_KEYSPACE_WRITE_SLOW, "generic", "Deletes one or more keys.", keys::del),
    command("echo", 2, CONN, NO_KEYS, A_CONN, "connection", "Returns the given string.", connection::echo),
    command("exists", -2, R_FAST, ALL_KEYS, A_KEYSPACE_READ_FAST, "generic", "Determines whether one or more keys exist.", keys::exists),
    command("expire", -3, W_FAST, ONE_KEY, A_KEYSPACE_WRITE_FAST, "generic", "Sets the expiration time of a key in seconds.", keys::expire),
    command("expireat", -3, W_FAST, ONE_KEY, A_KEYSPACE_WRITE_FAST, "generic", "Sets the expiration time of a key to a Unix timestamp.", keys::expireat),
    command("expiretime", 2, R_FAST, ONE_KEY, A_KEYSPACE_READ_FAST, "generic", "Returns the expiration time of a key as a Unix timestamp.", keys::expiretime),
    command("flushall", -1, W, NO_KEYS, A_DANGEROUS, "server", "Removes all keys from all databases.", server::flushdb),
    command("flushdb", -1, W, NO_KEYS, A_DANGEROUS, "server", "Remove all keys from the current database.", server::flushdb),
    command("get", 2, R_FAST, ONE_KEY, A_READ_STR_FAST, "string", "Returns the string value of a key.", strings::get),
    command("getdel", 2, W_FAST, ONE_KEY, A_WRITE_STR_FAST, "string", "Returns the string value of a key after deleting the key.", strings::getdel),
    command("getex", -2, W_FAST, ONE_KEY, A_WRITE_STR_FAST, "string", "Returns the string value of a key after setting its expiration time.", strings::getex),
    command("getrange", 4, R, ONE_KEY, A_READ_STR_SLOW, "string", "Returns a substring of the string stored at a key.", strings::getrange),
    command("hello", -1, CONN_NO_AUTH, NO_KEYS, A_CONN, "connection", "Handshakes with the Redis server.", connection::hello),
    command("incr", 2, W_OOM_FAST, ONE_KEY, A_WRITE_STR_FAST, "string", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", strings::incr),
    command("incrby", 3, W_OOM_FAST, ONE_KEY, A_WRITE_STR_FAST, "string", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", strings::incrby),
    command("incrbyfloat", 3, W_OOM_FAST, ONE_KEY, A_WRITE_STR_FAST, "string", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", strings::incrbyfloat),
    command("info", -1, &[LOADING, STALE], NO_KEYS, &["@slow", "@dangerous"], "server", "Returns information and statistics about the server.", server::info),
    command("keys", 2, R, NO_KEYS, &["@keyspace", "@read", "@slow", "@dangerous"], "generic", "Returns all key names that match a pattern.", keys::keys),
    command("mget", -2, R_FAST, ALL_KEYS, A_READ_STR_FAST, "string", "Atomically returns the string values of one or more keys.", strings::mget),
    command("mset", -3, W_OOM, KEY_VALUE_PAIRS, A_WRITE_STR_SLOW, "string", "Atomically creates or modifies the string values of one or more keys.", strings::mset),
    command("msetnx", -3, W_OOM, KEY_VALUE_PAIRS, A_WRITE_STR_SLOW, "string", "Atomically modifies the string values of one or more keys only when all keys don't exist.", strings::msetnx),
    command("persist", 2, W_FAST, ONE_KEY, A_KEYSPACE_WRITE_FAST, "generic", "Removes the expiration time of a key.", keys::persist),
    command("pexpire", -3, W_FAST, ONE_KEY, A_KEYSPACE_WRITE_FAST, "generic", "Sets the expiration time of a key in milliseconds.", keys::pexpire),
    command("pexpireat", -3, W_FAST, ONE_KEY, A_KEYSPACE_WRITE_FAST, "generic", "Sets the expiration time of a key to a Unix milliseconds timestamp.", keys::pexpireat),
    command("pexpiretime", 2, R_FAST, ONE_KEY, A_KEYSPACE_READ_FAST, "generic", "Returns the expiration time of a key as a Unix milliseconds timestamp.", keys::pexpiretime),
    command("ping", -1, &[FAST], NO_KEYS, A_CONN, "connection", "Returns the server's liveliness response.", connection::ping),
    command("psetex", 4, W_OOM, ONE_KEY, A_WRITE_STR_SLOW, "string", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", strings::psetex),
    command("pttl", 2, R_FAST, ONE_KEY, A_KEYSPACE_READ_FAST, "generic", "Returns the expiration time in milliseconds of a key.", keys::pttl),
    command("quit", -1, CONN_NO_AUTH, NO_KEYS, A_CONN, "connection", "Closes the connection.", connection::quit),
    command("readonly", 1, &[LOADING, STALE, FAST], NO_KEYS, A_CONN, "cluster", "Enables read-only queries for a connection to a Redis Cluster replica node.", cluster::readonly),
    command("readwrite", 1, &[LOADING, STALE, FAST], NO_KEYS, A_CONN, "cluster", "Enables read-write queries for a connection to a Redis Cluster replica node.", cluster::readwrite),
    command("scan", -2, R, NO_KEYS, A_KEYSPACE_READ_SLOW, "generic", "Iterates over the key names of this core.", keys::scan),
    command("select", 2, CONN, NO_KEYS, A_CONN, "connection", "Changes the selected database.", connection::select),
    command("set", -3, W_OOM, ONE_KEY, A_WRITE_STR_SLOW, "string", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", strings::set),
    command("setex", 4, W_OOM, ONE_KEY, A_WRITE_STR_SLOW, "string", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", strings::setex),
    command("setnx", 3, W_OOM_FAST, ONE_KEY, A_WRITE_STR_FAST, "string", "Set the string value of a key only when the key doesn't exist.", strings::setnx),
    command("setrange", 4, W_OOM, ONE_KEY, A_WRITE_STR_SLOW, "string", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", strings::setrange),
    command("strlen", 2, R_FAST, ONE_KEY, A_READ_STR_FAST, "string", "Returns the length of a string value.", strings::strlen),
    command("time", 1, &[LOADING, STALE, FAST], NO_KEYS, &["@fast"], "server", "Returns the server time.", server::time),
    command("trange", -3, R, NO_KEYS, A_KEYSPACE_READ_SLOW, "generic", "Returns this core's live records between two bounds in key order, with a continuation key.", keys::trange),
    command("ttl", 2, R_FAST, ONE_KEY, A_KEYSPACE_READ_FAST, "generic", "Returns the expiration time in seconds of a key.", keys::ttl),
    command("type", 2, R_FAST, ONE_KEY, A_KEYSPACE_READ_FAST, "generic", "Determines the type of value stored at a key.", keys::type_),
    command("unlink", -2, W_FAST, ALL_KEYS, A_KEYSPACE_WRITE_FAST, "generic", "Asynchronously deletes one or more keys.", keys::del),
];

/// A subcommand entry of a container (its arity counts the container name).
pub const fn subcommand(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    summary: &'static str,
    run: CommandFn,
) -> Command {
    Command {
        since: "2.0.0",
        ..command(
            name,
            arity,
            flags,
            NO_KEYS,
            &["@slow"],
            "server",
            summary,
            run,
        )
    }
}

/// Admin subcommands share these flags.
pub const SUBCOMMAND_ADMIN_FLAGS: &[&str] = ADMIN_FLAGS;

#[cfg(test)]
mod tests {
    use super::*;

    fn check_sorted(table: &[Command]) {
        for pair in table.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} >= {}",
                pair[0].name,
                pair[1].name
            );
            assert!(pair[0].name_key < pair[1].name_key, "{}", pair[0].name);
        }
        for command in table {
            assert!(command.name.len() <= COMMAND_NAME_LEN_MAX);
            assert_eq!(command.name, command.name.to_ascii_lowercase());
            assert!(command.run.is_some() || !command.subcommands.is_empty());
            check_sorted(command.subcommands);
        }
    }

    #[test]
    fn lookup_ignores_case_and_refuses_near_misses() {
        for name in ["get", "GET", "gEt"] {
            assert_eq!(lookup(COMMANDS, name.as_bytes()).unwrap().name, "get");
        }
        assert_eq!(lookup(COMMANDS, b"getdel").unwrap().name, "getdel");
        for unknown in [&b"ge"[..], b"gett", b"get\0", b"", b"nosuch", &[b'a'; 64]] {
            assert!(lookup(COMMANDS, unknown).is_none(), "{unknown:?}");
        }
    }

    #[test]
    fn tables_are_sorted_lowercase_and_runnable() {
        check_sorted(COMMANDS);
    }

    #[test]
    fn key_positions() {
        let keys: Vec<usize> = KEY_VALUE_PAIRS.indexes(5).collect();
        assert_eq!(keys, vec![1, 3]);
        let keys: Vec<usize> = ALL_KEYS.indexes(4).collect();
        assert_eq!(keys, vec![1, 2, 3]);
        assert_eq!(ONE_KEY.indexes(4).collect::<Vec<_>>(), vec![1]);
        assert_eq!(NO_KEYS.indexes(4).count(), 0);
    }
}
