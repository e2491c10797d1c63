//! The server runtime: one pinned glommio executor per core, each with its
//! own listener, connection table, buffer pools, raw io_uring network ring
//! and command layer (a [`Handler`](crate::handler::Handler)). No request
//! ever crosses a core; the only cross-thread code is the control plane
//! (start-up, signals, shutdown, stats), which is small and model-checked
//! with loom.
//!
//! Module map: `runtime` (main thread: checks, binding, executors, signals),
//! `control` (+ `control_state.rs`, the atomic state machine), `event_loop`
//! (one core's io_uring loop), `bufring` (provided receive buffers), `conn`
//! (connections and their pooled buffers).

pub(crate) mod bufring;
mod conn;
mod control;
mod error;
mod event_loop;
mod runtime;

pub use conn::{INPUT_BYTES_MAX, OUTPUT_PAUSE_BYTES};
pub use error::ServerError;
pub use event_loop::{executor_waits, in_executor_wait};
pub use runtime::{announce_ip, run, usable_cpus, HandlerResult};
