//! Tessera's network layer: the RESP2/RESP3 server that presents each core as
//! one Redis Cluster node, the smart client and the load generator.

pub mod ceiling;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod handler;
pub mod loadgen;
pub mod resp;
pub mod server;
