//! `INFO` text: Redis's `# Section` / `field:value` CRLF format, for this
//! core only (each core is its own cluster node).

use std::io::Write as _;

use super::args;
use super::connection::REDIS_VERSION;
use super::shard::Core;
use crate::handler::Durability;
use crate::resp::Argv;

/// Sections in the order `INFO` prints them; `default`/`all`/`everything`
/// select all of them.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cluster",
    "keyspace",
];

fn wanted(argv: Argv<'_>, section: &str) -> bool {
    if argv.len() == 1 {
        return true;
    }
    argv.iter_from(1).any(|arg| {
        args::is(arg, section)
            || args::is(arg, "DEFAULT")
            || args::is(arg, "ALL")
            || args::is(arg, "EVERYTHING")
    })
}

pub fn write_info(core: &mut Core, argv: Argv<'_>, out: &mut Vec<u8>) {
    for section in SECTIONS {
        if !wanted(argv, section) {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
        write_section(core, section, out);
    }
}

fn write_section(core: &mut Core, section: &str, out: &mut Vec<u8>) {
    let stats = core.stats;
    let node = &core.node;
    let w = match section {
        "server" => {
            let uptime_s = core.started.elapsed().as_secs();
            write!(
                out,
                "# Server\r\nredis_version:{REDIS_VERSION}\r\ntessera_version:{}\r\n\
                 redis_mode:cluster\r\nos:{}\r\narch_bits:64\r\nmultiplexing_api:io_uring\r\n\
                 process_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime_s}\r\n\
                 uptime_in_days:{}\r\ncore:{}\r\ncores:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::process::id(),
                node.port(node.core),
                uptime_s / 86_400,
                node.core,
                node.cores,
            )
        }
        "clients" => write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\n",
            stats.connected_clients
        ),
        "memory" => write!(
            out,
            "# Memory\r\nused_memory:{}\r\nmaxmemory:{}\r\nmaxmemory_policy:noeviction\r\n",
            core.keyspace.memory_used_bytes(),
            core.keyspace.memory_limit_bytes(),
        ),
        "persistence" => match core.keyspace.durable() {
            None => write!(
                out,
                "# Persistence\r\nloading:0\r\naof_enabled:0\r\ndurability:off\r\n"
            ),
            Some(durable) => write!(
                out,
                "# Persistence\r\nloading:0\r\naof_enabled:1\r\ndurability:{}\r\n\
                 aof_last_write_status:{}\r\naof_current_size:{}\r\n\
                 unpersisted_segments:{}\r\ncompacting:{}\r\ncommit_failures:{}\r\n",
                match core.durability {
                    Durability::Sync => "sync",
                    Durability::Async => "async",
                },
                if core.keyspace.counters.maintenance_failures == 0 {
                    "ok"
                } else {
                    "err"
                },
                durable.file_bytes(),
                durable.unpersisted_segments(),
                u8::from(durable.compacting()),
                core.keyspace.counters.commit_failures,
            ),
        },
        "stats" => {
            let counters = core.keyspace.counters;
            write!(
                out,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 keyspace_hits:{}\r\nkeyspace_misses:{}\r\nrejected_calls:{}\r\n\
                 protocol_errors:{}\r\nbatches_applied:{}\r\nwrites_applied:{}\r\n\
                 writes_refused_oom:{}\r\nbatch_apply_failures:{}\r\n\
                 engine_segments:{}\r\nengine_merges_completed:{}\r\n",
                stats.connections_received,
                stats.commands_processed,
                stats.keyspace_hits,
                stats.keyspace_misses,
                stats.rejected_calls,
                stats.protocol_errors,
                counters.batches_applied,
                counters.writes_applied,
                counters.writes_refused_oom,
                counters.apply_failures,
                core.keyspace.stack_height(),
                counters.merges_completed,
            )
        }
        "replication" => write!(
            out,
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
        ),
        "cluster" => write!(out, "# Cluster\r\ncluster_enabled:1\r\n"),
        "keyspace" => {
            let keys = core.keyspace.len();
            out.extend_from_slice(b"# Keyspace\r\n");
            if keys > 0 {
                write!(out, "db0:keys={keys}\r\n")
            } else {
                Ok(())
            }
        }
        _ => unreachable!("unknown INFO section {section}"),
    };
    w.expect("Vec write");
}
