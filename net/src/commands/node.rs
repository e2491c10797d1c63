//! This core as a Redis Cluster node, and its peers (the node's other cores).
//!
//! Core `i` listens on `announce_ip:base_port+i` and owns the contiguous slot
//! range `cluster::slot_range_of_core(i, cores)`. Node ids are 40 hex
//! characters derived from `ip:port` with xxh3, so they are stable across
//! restarts and identical whichever core computes them.

use std::io::Write as _;
use std::net::IpAddr;

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::cluster::{core_for_slot, slot_range_of_core};
use crate::handler::NodeTopology;

pub const NODE_ID_LEN: usize = 40;

#[derive(Debug)]
pub struct Node {
    pub core: u16,
    pub cores: u16,
    pub announce_ip: IpAddr,
    pub base_port: u16,
    pub slot_first: u16,
    pub slot_last: u16,
    ids: Vec<[u8; NODE_ID_LEN]>,
}

fn hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// The node id of `ip:port`.
pub fn node_id(ip: IpAddr, port: u16) -> [u8; NODE_ID_LEN] {
    let addr = format!("{ip}:{port}");
    let mut id = [0u8; NODE_ID_LEN];
    hex(&xxh3_128(addr.as_bytes()).to_be_bytes(), &mut id[..32]);
    hex(&xxh3_64(addr.as_bytes()).to_be_bytes()[..4], &mut id[32..]);
    id
}

impl Node {
    /// Panics on an invalid topology: the server validates flags first.
    pub fn new(core: u16, topology: &NodeTopology) -> Node {
        assert!(topology.cores > 0, "a node has at least one core");
        assert!(core < topology.cores, "core {core} out of range");
        assert!(
            u32::from(topology.base_port) + u32::from(topology.cores) - 1 <= u32::from(u16::MAX),
            "ports base_port..base_port+cores must fit u16"
        );
        let (slot_first, slot_last) = slot_range_of_core(core, topology.cores);
        let ids = (0..topology.cores)
            .map(|c| node_id(topology.announce_ip, topology.base_port + c))
            .collect();
        Node {
            core,
            cores: topology.cores,
            announce_ip: topology.announce_ip,
            base_port: topology.base_port,
            slot_first,
            slot_last,
            ids,
        }
    }

    pub fn owns(&self, slot: u16) -> bool {
        self.slot_first <= slot && slot <= self.slot_last
    }

    pub fn port(&self, core: u16) -> u16 {
        debug_assert!(core < self.cores);
        self.base_port + core
    }

    pub fn id(&self, core: u16) -> &[u8; NODE_ID_LEN] {
        &self.ids[usize::from(core)]
    }

    pub fn owner(&self, slot: u16) -> u16 {
        core_for_slot(slot, self.cores)
    }

    /// Appends `ip:port` of `core`.
    pub fn write_addr(&self, out: &mut Vec<u8>, core: u16) {
        write!(out, "{}:{}", self.announce_ip, self.port(core)).expect("Vec write");
    }

    /// Appends the announce ip.
    pub fn write_ip(&self, out: &mut Vec<u8>) {
        write!(out, "{}", self.announce_ip).expect("Vec write");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn node_ids_are_40_hex_and_distinct() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let a = node_id(ip, 7000);
        let b = node_id(ip, 7001);
        assert_ne!(a, b);
        assert_eq!(a, node_id(ip, 7000));
        assert!(a
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
