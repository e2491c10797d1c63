//! Tessera's per-core store (placeholder until the engine lands).

mod persist;
pub use persist::*;
