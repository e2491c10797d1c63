//! Server commands: DBSIZE, FLUSHDB/FLUSHALL, INFO, CONFIG, COMMAND, TIME.

use std::time::{SystemTime, UNIX_EPOCH};

use super::glob::glob_match;
use super::table::{self, subcommand, Command, COMMANDS, SUBCOMMAND_ADMIN_FLAGS};
use super::{args, info, Ctx};
use crate::handler::Durability;
use crate::resp::{Reply, BULK_LEN_MAX};

pub fn dbsize(ctx: &mut Ctx<'_>) {
    let len = ctx.core.keyspace.len();
    ctx.reply.int(i64::try_from(len).unwrap_or(i64::MAX));
}

/// FLUSHDB and FLUSHALL: this core's store (its slots are its database).
pub fn flushdb(ctx: &mut Ctx<'_>) {
    match ctx.argv.len() {
        1 => {}
        2 if args::is(ctx.argv.get(1), "ASYNC") || args::is(ctx.argv.get(1), "SYNC") => {}
        _ => {
            ctx.err_syntax();
            return;
        }
    }
    ctx.core.keyspace.clear();
    ctx.reply.ok();
}

pub fn info(ctx: &mut Ctx<'_>) {
    ctx.core.scratch.clear();
    let mut scratch = std::mem::take(&mut ctx.core.scratch);
    info::write_info(ctx.core, ctx.argv, &mut scratch);
    ctx.reply.bulk(&scratch);
    ctx.core.scratch = scratch;
}

pub fn time(ctx: &mut Ctx<'_>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is after 1970");
    ctx.reply.array(2);
    ctx.reply
        .bulk_i64(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
    ctx.reply.bulk_i64(i64::from(now.subsec_micros()));
}

/// `<CONTAINER> HELP`: one line per subcommand, as Redis's help replies.
pub fn help_reply(ctx: &mut Ctx<'_>, container: &str, subcommands: &[Command]) {
    ctx.reply.array(1 + 2 * subcommands.len());
    ctx.reply.simple(container.as_bytes());
    for sub in subcommands {
        let mut upper = [0u8; table::COMMAND_NAME_LEN_MAX];
        let name = &mut upper[..sub.name.len()];
        name.copy_from_slice(sub.name.as_bytes());
        name.make_ascii_uppercase();
        ctx.reply.simple(name);
        ctx.reply.out.extend_from_slice(b"+    ");
        ctx.reply.out.extend_from_slice(sub.summary.as_bytes());
        ctx.reply.out.extend_from_slice(b"\r\n");
    }
}

// ---- CONFIG ----------------------------------------------------------------

pub static CONFIG_SUBCOMMANDS: &[Command] = &[
    subcommand(
        "get",
        -3,
        SUBCOMMAND_ADMIN_FLAGS,
        "Returns the effective values of configuration parameters.",
        config_get,
    ),
    subcommand(
        "help",
        2,
        &["loading", "stale"],
        "Returns helpful text about the different subcommands.",
        config_help,
    ),
    subcommand(
        "resetstat",
        2,
        SUBCOMMAND_ADMIN_FLAGS,
        "Resets the server's statistics.",
        config_resetstat,
    ),
    subcommand(
        "set",
        -4,
        SUBCOMMAND_ADMIN_FLAGS,
        "Sets configuration parameters in-flight.",
        config_set,
    ),
];

/// Parameters `CONFIG GET` knows, in the order it reports them.
const CONFIG_PARAMS: &[&str] = &[
    "appendfsync",
    "appendonly",
    "bind",
    "cluster-enabled",
    "databases",
    "maxmemory",
    "maxmemory-policy",
    "port",
    "proto-max-bulk-len",
    "save",
    "timeout",
];

/// Writes the value of `param` as a bulk string.
fn config_value(ctx: &mut Ctx<'_>, param: &str) {
    let node = &ctx.core.node;
    match param {
        // Every acknowledged write goes to the log; `Sync` acknowledges only
        // after fdatasync, `Async` within a bounded interval.
        // A memory-only shard (tests, benches) persists nothing.
        "appendfsync" => ctx.reply.bulk(match ctx.core.durability {
            _ if ctx.core.keyspace.durable().is_none() => b"no",
            Durability::Sync => b"always",
            Durability::Async => b"everysec",
        }),
        "appendonly" => ctx.reply.bulk(if ctx.core.keyspace.durable().is_some() {
            b"yes"
        } else {
            b"no"
        }),
        "bind" => {
            let scratch = &mut ctx.core.scratch;
            scratch.clear();
            node.write_ip(scratch);
            ctx.reply.bulk(&ctx.core.scratch);
        }
        "cluster-enabled" => ctx.reply.bulk(b"yes"),
        "databases" => ctx.reply.bulk(b"1"),
        "maxmemory" => ctx
            .reply
            .bulk_i64(i64::try_from(ctx.core.keyspace.memory_limit_bytes()).unwrap_or(i64::MAX)),
        "maxmemory-policy" => ctx.reply.bulk(b"noeviction"),
        "port" => ctx.reply.bulk_i64(i64::from(node.port(node.core))),
        "proto-max-bulk-len" => ctx.reply.bulk_i64(BULK_LEN_MAX as i64),
        // No RDB snapshots: persistence is the append-only log.
        "save" => ctx.reply.bulk(b""),
        "timeout" => ctx.reply.bulk(b"0"),
        _ => unreachable!("unknown config parameter {param}"),
    }
}

fn config_get(ctx: &mut Ctx<'_>) {
    let matches = |ctx: &Ctx<'_>, param: &str| {
        ctx.argv
            .iter_from(2)
            .any(|pattern| glob_match(pattern, param.as_bytes(), true))
    };
    let count = CONFIG_PARAMS.iter().filter(|p| matches(ctx, p)).count();
    ctx.reply.map(count);
    for param in CONFIG_PARAMS {
        if matches(ctx, param) {
            ctx.reply.bulk(param.as_bytes());
            config_value(ctx, param);
        }
    }
}

/// Only `save` is accepted (and ignored: there are no RDB snapshots, so any
/// schedule is equally moot); everything else is fixed at start-up.
fn config_set(ctx: &mut Ctx<'_>) {
    if ctx.argv.len() % 2 != 0 {
        ctx.reply
            .error(b"ERR wrong number of arguments for 'config|set' command");
        return;
    }
    for i in (2..ctx.argv.len()).step_by(2) {
        let param = ctx.argv.get(i);
        if args::is(param, "SAVE") {
            continue;
        }
        let known = CONFIG_PARAMS.iter().any(|p| args::is(param, p));
        let shown = String::from_utf8_lossy(&param[..param.len().min(128)]).into_owned();
        if known {
            ctx.reply.error_fmt(format_args!(
                "ERR CONFIG SET failed (possibly related to argument '{shown}') - can't set immutable config"
            ));
        } else {
            ctx.reply.error_fmt(format_args!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{shown}'"
            ));
        }
        return;
    }
    ctx.reply.ok();
}

fn config_resetstat(ctx: &mut Ctx<'_>) {
    let connected_clients = ctx.core.stats.connected_clients;
    ctx.core.stats = Default::default();
    ctx.core.stats.connected_clients = connected_clients;
    ctx.reply.ok();
}

fn config_help(ctx: &mut Ctx<'_>) {
    help_reply(ctx, "CONFIG", CONFIG_SUBCOMMANDS);
}

// ---- COMMAND ---------------------------------------------------------------

pub static COMMAND_SUBCOMMANDS: &[Command] = &[
    subcommand(
        "count",
        2,
        &["loading", "stale"],
        "Returns a count of commands.",
        command_count,
    ),
    subcommand(
        "docs",
        -2,
        &["loading", "stale"],
        "Returns documentary information about one, multiple or all commands.",
        command_docs,
    ),
    subcommand(
        "getkeys",
        -3,
        &["loading", "stale"],
        "Extracts the key names from an arbitrary command.",
        command_getkeys,
    ),
    subcommand(
        "help",
        2,
        &["loading", "stale"],
        "Returns helpful text about the different subcommands.",
        command_help,
    ),
    subcommand(
        "info",
        -2,
        &["loading", "stale"],
        "Returns information about one, multiple or all commands.",
        command_info,
    ),
    subcommand(
        "list",
        -2,
        &["loading", "stale"],
        "Returns a list of command names.",
        command_names,
    ),
];

/// A command entry in the 10-field shape clients parse: name, arity, flags,
/// first key, last key, step, ACL categories, tips, key specs, subcommands.
fn write_command_entry(reply: &mut Reply<'_>, command: &Command, parent: Option<&Command>) {
    reply.array(10);
    match parent {
        None => reply.bulk(command.name.as_bytes()),
        Some(parent) => {
            reply.bulk_start(parent.name.len() + 1 + command.name.len());
            reply.out.extend_from_slice(parent.name.as_bytes());
            reply.out.push(b'|');
            reply.out.extend_from_slice(command.name.as_bytes());
            reply.bulk_end();
        }
    }
    reply.int(i64::from(command.arity));
    reply.set(command.flags.len());
    for flag in command.flags {
        reply.simple(flag.as_bytes());
    }
    reply.int(i64::from(command.keys.first));
    reply.int(i64::from(command.keys.last));
    reply.int(i64::from(command.keys.step));
    reply.set(command.acl_categories.len());
    for category in command.acl_categories {
        reply.simple(category.as_bytes());
    }
    reply.array(0);
    reply.array(0);
    reply.array(command.subcommands.len());
    for sub in command.subcommands {
        write_command_entry(reply, sub, Some(command));
    }
}

/// Finds a command by `name` or `container|sub`.
fn find(name: &[u8]) -> Option<(&'static Command, Option<&'static Command>)> {
    match name.iter().position(|&b| b == b'|') {
        None => table::lookup(COMMANDS, name).map(|c| (c, None)),
        Some(bar) => {
            let parent = table::lookup(COMMANDS, &name[..bar])?;
            let sub = table::lookup(parent.subcommands, &name[bar + 1..])?;
            Some((sub, Some(parent)))
        }
    }
}

pub fn command_list_all(ctx: &mut Ctx<'_>) {
    ctx.reply.array(COMMANDS.len());
    for command in COMMANDS {
        write_command_entry(&mut ctx.reply, command, None);
    }
}

fn command_count(ctx: &mut Ctx<'_>) {
    ctx.reply.int(COMMANDS.len() as i64);
}

fn command_names(ctx: &mut Ctx<'_>) {
    if ctx.argv.len() > 2 {
        // FILTERBY is not supported: we have few enough commands to list.
        ctx.err_syntax();
        return;
    }
    ctx.reply.array(COMMANDS.len());
    for command in COMMANDS {
        ctx.reply.bulk(command.name.as_bytes());
    }
}

fn command_info(ctx: &mut Ctx<'_>) {
    if ctx.argv.len() == 2 {
        command_list_all(ctx);
        return;
    }
    ctx.reply.array(ctx.argv.len() - 2);
    for i in 2..ctx.argv.len() {
        match find(ctx.argv.get(i)) {
            Some((command, parent)) => write_command_entry(&mut ctx.reply, command, parent),
            None => ctx.reply.null(),
        }
    }
}

fn write_doc(reply: &mut Reply<'_>, command: &Command) {
    let has_subcommands = !command.subcommands.is_empty();
    reply.map(3 + usize::from(has_subcommands));
    reply.bulk(b"summary");
    reply.bulk(command.summary.as_bytes());
    reply.bulk(b"since");
    reply.bulk(command.since.as_bytes());
    reply.bulk(b"group");
    reply.bulk(command.group.as_bytes());
    if has_subcommands {
        reply.bulk(b"subcommands");
        reply.map(command.subcommands.len());
        for sub in command.subcommands {
            reply.bulk_start(command.name.len() + 1 + sub.name.len());
            reply.out.extend_from_slice(command.name.as_bytes());
            reply.out.push(b'|');
            reply.out.extend_from_slice(sub.name.as_bytes());
            reply.bulk_end();
            write_doc(reply, sub);
        }
    }
}

fn command_docs(ctx: &mut Ctx<'_>) {
    if ctx.argv.len() == 2 {
        ctx.reply.map(COMMANDS.len());
        for command in COMMANDS {
            ctx.reply.bulk(command.name.as_bytes());
            write_doc(&mut ctx.reply, command);
        }
        return;
    }
    let known = ctx.argv.iter_from(2).filter(|n| find(n).is_some()).count();
    ctx.reply.map(known);
    for i in 2..ctx.argv.len() {
        let name = ctx.argv.get(i);
        if let Some((command, _)) = find(name) {
            ctx.reply.bulk_start(name.len());
            ctx.reply
                .out
                .extend(name.iter().map(|b| b.to_ascii_lowercase()));
            ctx.reply.bulk_end();
            write_doc(&mut ctx.reply, command);
        }
    }
}

fn command_getkeys(ctx: &mut Ctx<'_>) {
    let inner = &ctx.argv;
    let Some(mut command) = table::lookup(COMMANDS, inner.get(2)) else {
        ctx.reply.error(b"ERR Invalid command specified");
        return;
    };
    let argc = inner.len() - 2;
    if !command.subcommands.is_empty() && argc >= 2 {
        if let Some(sub) = table::lookup(command.subcommands, inner.get(3)) {
            command = sub;
        }
    }
    if !command.arity_ok(argc) {
        ctx.reply
            .error(b"ERR Invalid number of arguments specified for command");
        return;
    }
    if !command.keys.has_keys() {
        ctx.reply.error(b"ERR The command has no key arguments");
        return;
    }
    let count = command.keys.indexes(argc).count();
    ctx.reply.array(count);
    for index in command.keys.indexes(argc) {
        let key = ctx.argv.get(index + 2);
        ctx.reply.bulk(key);
    }
}

fn command_help(ctx: &mut Ctx<'_>) {
    help_reply(ctx, "COMMAND", COMMAND_SUBCOMMANDS);
}
