//! Redis Cluster key-to-slot mapping and the split of slots over cores.
//!
//! Every core of a Tessera node is presented to clients as one Redis Cluster
//! node. Both the server (to answer `-MOVED`) and the smart client and load
//! generator (to go one hop to the owning core) use this module, so the
//! mapping lives in exactly one place.

mod slot;

pub use slot::{core_for_slot, crc16, key_slot, slot_range_of_core, SLOT_COUNT};
