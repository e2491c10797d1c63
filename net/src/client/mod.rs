//! Tessera's smart client (and the RESP codec the load generator shares).
//!
//! The client bootstraps from any seed address with `CLUSTER SLOTS`, keeps
//! the slot map, hashes each key straight to the owning node (for Tessera,
//! the owning core's port), pools and pipelines connections per node,
//! refreshes the map on `-MOVED` and on a timer, follows `-ASK`, and scans
//! ranges across every node in key order. It speaks plain Redis Cluster, so
//! it works against a real Redis Cluster as well as against Tessera.
//!
//! It runs on glommio (one client per executor, `!Send`): it is a
//! correctness tool and an application library, not the benchmark driver;
//! `tessera-bench` drives load with its own io_uring loop and reuses only
//! [`resp`] from here.
//!
//! Trade-off: the client allocates per request (the encoded command and the
//! decoded [`Reply`] tree). Replies are owned values handed to the caller,
//! so a zero-copy design would tie them to a connection buffer's lifetime;
//! for an application client that convenience is worth a few allocations,
//! while the load generator, whose cost per request is the measurement,
//! allocates nothing.

mod cluster;
mod conn;
mod error;
pub mod resp;
mod scan;
mod topology;

pub use cluster::{
    Client, ClientConfig, COMMAND_ARGS_MAX, KEY_LEN_MAX, PIPELINE_COMMANDS_MAX, REDIRECTS_MAX,
    SEEDS_MAX,
};
pub use conn::{POOL_CONNECTIONS_MAX, READ_BUFFER_BYTES_MAX};
pub use error::ClientError;
pub use resp::Reply;
pub use scan::{
    RangeScan, ScanItem, ScanMethod, ScanOptions, SCAN_NODES_MAX, SCAN_NODE_KEYS_MAX,
    SCAN_PAGE_KEYS_MAX,
};
pub use topology::{Redirect, SlotMap, NODES_MAX};
