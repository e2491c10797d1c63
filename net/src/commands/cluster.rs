//! Cluster commands: each core presents itself as one master node owning a
//! contiguous slot range; the node's other cores are its peers. There are no
//! replicas and no slot migrations, so `ASKING`, `READONLY` and `READWRITE`
//! only record the client's intent.

use std::io::Write as _;

use super::table::{subcommand, Command};
use super::{args, keyspace, Ctx};
use crate::cluster::{key_slot, SLOT_COUNT};
use crate::resp::Reply;

pub fn asking(ctx: &mut Ctx<'_>) {
    ctx.conn.asking = true;
    ctx.reply.ok();
}

pub fn readonly(ctx: &mut Ctx<'_>) {
    ctx.conn.readonly = true;
    ctx.reply.ok();
}

pub fn readwrite(ctx: &mut Ctx<'_>) {
    ctx.conn.readonly = false;
    ctx.reply.ok();
}

const RO: &[&str] = &["loading", "stale"];

pub static CLUSTER_SUBCOMMANDS: &[Command] = &[
    subcommand(
        "countkeysinslot",
        3,
        RO,
        "Returns the number of keys in a hash slot.",
        countkeysinslot,
    ),
    subcommand(
        "getkeysinslot",
        4,
        RO,
        "Returns the key names in a hash slot.",
        getkeysinslot,
    ),
    subcommand(
        "help",
        2,
        RO,
        "Returns helpful text about the different subcommands.",
        help,
    ),
    subcommand(
        "info",
        2,
        RO,
        "Returns information about the state of a node.",
        info,
    ),
    subcommand(
        "keyslot",
        3,
        RO,
        "Returns the hash slot for a key.",
        keyslot,
    ),
    subcommand("myid", 2, RO, "Returns the ID of a node.", myid),
    subcommand("myshardid", 2, RO, "Returns the shard ID of a node.", myid),
    subcommand(
        "nodes",
        2,
        RO,
        "Returns the cluster configuration for a node.",
        nodes,
    ),
    subcommand(
        "shards",
        2,
        RO,
        "Returns the mapping of cluster slots to shards.",
        shards,
    ),
    subcommand(
        "slots",
        2,
        RO,
        "Returns the mapping of cluster slots to nodes.",
        slots,
    ),
];

fn help(ctx: &mut Ctx<'_>) {
    super::server::help_reply(ctx, "CLUSTER", CLUSTER_SUBCOMMANDS);
}

fn write_ip_bulk(ctx: &mut Ctx<'_>) {
    let scratch = &mut ctx.core.scratch;
    scratch.clear();
    ctx.core.node.write_ip(scratch);
    ctx.reply.bulk(scratch);
}

fn slots(ctx: &mut Ctx<'_>) {
    let cores = ctx.core.node.cores;
    ctx.reply.array(usize::from(cores));
    for core in 0..cores {
        let (first, last) = crate::cluster::slot_range_of_core(core, cores);
        ctx.reply.array(3);
        ctx.reply.int(i64::from(first));
        ctx.reply.int(i64::from(last));
        ctx.reply.array(4);
        write_ip_bulk(ctx);
        ctx.reply.int(i64::from(ctx.core.node.port(core)));
        ctx.reply.bulk(ctx.core.node.id(core));
        ctx.reply.map(0);
    }
}

fn shards(ctx: &mut Ctx<'_>) {
    let cores = ctx.core.node.cores;
    ctx.reply.array(usize::from(cores));
    for core in 0..cores {
        let (first, last) = crate::cluster::slot_range_of_core(core, cores);
        ctx.reply.map(2);
        ctx.reply.bulk(b"slots");
        ctx.reply.array(2);
        ctx.reply.int(i64::from(first));
        ctx.reply.int(i64::from(last));
        ctx.reply.bulk(b"nodes");
        ctx.reply.array(1);
        ctx.reply.map(7);
        ctx.reply.bulk(b"id");
        ctx.reply.bulk(ctx.core.node.id(core));
        ctx.reply.bulk(b"port");
        ctx.reply.int(i64::from(ctx.core.node.port(core)));
        ctx.reply.bulk(b"ip");
        write_ip_bulk(ctx);
        ctx.reply.bulk(b"endpoint");
        write_ip_bulk(ctx);
        ctx.reply.bulk(b"role");
        ctx.reply.bulk(b"master");
        ctx.reply.bulk(b"replication-offset");
        ctx.reply.int(0);
        ctx.reply.bulk(b"health");
        ctx.reply.bulk(b"online");
    }
}

/// Each core's config epoch: distinct and stable (1-based core index).
fn epoch_of(core: u16) -> u64 {
    u64::from(core) + 1
}

fn nodes(ctx: &mut Ctx<'_>) {
    let node = &ctx.core.node;
    let scratch = &mut ctx.core.scratch;
    scratch.clear();
    for core in 0..node.cores {
        let (first, last) = crate::cluster::slot_range_of_core(core, node.cores);
        scratch.extend_from_slice(node.id(core));
        scratch.push(b' ');
        node.write_addr(scratch, core);
        let flags = if core == node.core {
            "myself,master"
        } else {
            "master"
        };
        // The cluster bus port is port + 10000 by Redis's convention; we run
        // no bus, but clients parse the field.
        writeln!(
            scratch,
            "@{} {flags} - 0 0 {} connected {first}-{last}",
            u32::from(node.port(core)) + 10000,
            epoch_of(core)
        )
        .expect("Vec write");
    }
    ctx.reply.bulk(&ctx.core.scratch);
}

fn info(ctx: &mut Ctx<'_>) {
    let node = &ctx.core.node;
    let scratch = &mut ctx.core.scratch;
    scratch.clear();
    write!(
        scratch,
        "cluster_state:ok\r\n\
         cluster_slots_assigned:{SLOT_COUNT}\r\n\
         cluster_slots_ok:{SLOT_COUNT}\r\n\
         cluster_slots_pfail:0\r\n\
         cluster_slots_fail:0\r\n\
         cluster_known_nodes:{cores}\r\n\
         cluster_size:{cores}\r\n\
         cluster_current_epoch:{cores}\r\n\
         cluster_my_epoch:{my_epoch}\r\n\
         cluster_stats_messages_sent:0\r\n\
         cluster_stats_messages_received:0\r\n\
         total_cluster_links_buffer_limit_exceeded:0\r\n",
        cores = node.cores,
        my_epoch = epoch_of(node.core),
    )
    .expect("Vec write");
    ctx.reply.bulk(&ctx.core.scratch);
}

fn keyslot(ctx: &mut Ctx<'_>) {
    let slot = key_slot(ctx.argv.get(2));
    ctx.reply.int(i64::from(slot));
}

fn myid(ctx: &mut Ctx<'_>) {
    let id = *ctx.core.node.id(ctx.core.node.core);
    ctx.reply.bulk(&id);
}

/// A slot argument, or `-ERR Invalid slot` (Redis's wording).
fn slot_arg(ctx: &mut Ctx<'_>, index: usize) -> Option<u16> {
    match args::int(ctx.argv.get(index)) {
        Some(slot) if (0..i64::from(SLOT_COUNT)).contains(&slot) => Some(slot as u16),
        _ => {
            ctx.reply.error(b"ERR Invalid slot");
            None
        }
    }
}

/// Exact, by a scan of this core's keys: O(keys). Slots of other cores are
/// answered 0 without scanning (none of their keys can be stored here).
fn countkeysinslot(ctx: &mut Ctx<'_>) {
    let Some(slot) = slot_arg(ctx, 2) else {
        return;
    };
    if !ctx.core.node.owns(slot) {
        ctx.reply.int(0);
        return;
    }
    let snapshot = ctx.core.keyspace.snapshot();
    let count = keyspace::all(&snapshot)
        .filter(|entry| key_slot(entry.key) == slot)
        .count();
    ctx.reply.int(i64::try_from(count).unwrap_or(i64::MAX));
}

/// Most keys `CLUSTER GETKEYSINSLOT` returns at once.
pub const GETKEYSINSLOT_COUNT_MAX: i64 = 100_000;

fn getkeysinslot(ctx: &mut Ctx<'_>) {
    let Some(slot) = slot_arg(ctx, 2) else {
        return;
    };
    let count = match args::int(ctx.argv.get(3)) {
        Some(count) if count >= 0 => count.min(GETKEYSINSLOT_COUNT_MAX) as usize,
        _ => {
            ctx.reply.error(b"ERR Invalid number of keys");
            return;
        }
    };
    let snapshot = ctx.core.keyspace.snapshot();
    let reply: &mut Reply<'_> = &mut ctx.reply;
    let matching = || {
        keyspace::all(&snapshot)
            .filter(|entry| key_slot(entry.key) == slot)
            .take(count)
    };
    if !ctx.core.node.owns(slot) {
        reply.array(0);
        return;
    }
    reply.array(matching().count());
    for entry in matching() {
        reply.bulk(entry.key);
    }
}
