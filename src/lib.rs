//! Tessera: a thread-per-core, io_uring key-value storage engine and server.
//!
//! This facade re-exports the two crates that make up Tessera:
//! - [`engine`]: the per-core store of memory-oriented sorted segments
//!   (crate `tessera-engine`), embeddable in any shard service;
//! - [`net`]: the RESP2/RESP3 server speaking the Redis Cluster protocol with
//!   one cluster node per core, the smart client and the load generator
//!   (crate `tessera-net`).
//!
//! The facade package owns the workspace-level `tests/` and `benches/`.

pub use tessera_engine as engine;
pub use tessera_net as net;
