//! The client's picture of the cluster: which node (for Tessera, which
//! core's port) owns each of the 16384 slots, and the redirects that correct
//! that picture.
//!
//! The map is a flat `[u16; SLOT_COUNT]` of indexes into a small node list,
//! so routing a key is one CRC16 and one array load. It is rebuilt whole from
//! `CLUSTER SLOTS` (never patched range by range) so a refresh can't leave a
//! half-old map behind; a `-MOVED` patches the one slot it names at once, and
//! the tend loop refreshes the rest soon after.

use std::net::{IpAddr, SocketAddr};

use super::resp::Reply;
use super::ClientError;
use crate::cluster::SLOT_COUNT;

/// Most distinct nodes a map may name: Tessera presents one node per core,
/// and 1024 cores is beyond any machine we target.
pub const NODES_MAX: usize = 1024;

/// Marks a slot no node serves.
const UNOWNED: u16 = u16::MAX;

/// Slot ownership as of one `CLUSTER SLOTS` reply.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotMap {
    nodes: Vec<SocketAddr>,
    owner: Box<[u16; SLOT_COUNT as usize]>,
}

impl std::fmt::Debug for SlotMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotMap")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

impl SlotMap {
    /// Build the map from a `CLUSTER SLOTS` reply sent by `answered_by`
    /// (an empty ip means "the node you asked", per the Redis docs).
    pub fn from_cluster_slots(reply: &Reply, answered_by: SocketAddr) -> Result<Self, ClientError> {
        let bad = |detail: &str| ClientError::UnexpectedReply {
            command: "CLUSTER SLOTS",
            detail: detail.to_string(),
        };
        let Reply::Array(Some(ranges)) = reply else {
            return Err(match reply {
                Reply::Error(message) => ClientError::Server(message.clone()),
                _ => bad("not an array"),
            });
        };
        let mut map = SlotMap {
            nodes: Vec::new(),
            owner: Box::new([UNOWNED; SLOT_COUNT as usize]),
        };
        for range in ranges {
            let Reply::Array(Some(fields)) = range else {
                return Err(bad("range is not an array"));
            };
            let (Some(Reply::Integer(start)), Some(Reply::Integer(end)), Some(master)) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err(bad("range lacks start, end or master"));
            };
            if !(0 <= *start && start <= end && *end < i64::from(SLOT_COUNT)) {
                return Err(bad("slot range out of bounds"));
            }
            let node = parse_node(master, answered_by).ok_or_else(|| bad("malformed master"))?;
            let index = map.node_index(node)?;
            for slot in *start as usize..=*end as usize {
                map.owner[slot] = index;
            }
        }
        Ok(map)
    }

    /// A map where one node owns every slot: `--mode single` and plain
    /// (non-cluster) servers.
    pub fn single(node: SocketAddr) -> Self {
        SlotMap {
            nodes: vec![node],
            owner: Box::new([0; SLOT_COUNT as usize]),
        }
    }

    pub fn owner(&self, slot: u16) -> Option<SocketAddr> {
        let index = self.owner[usize::from(slot)];
        (index != UNOWNED).then(|| self.nodes[usize::from(index)])
    }

    /// Every node that owns at least one slot, in first-slot order.
    pub fn nodes(&self) -> &[SocketAddr] {
        &self.nodes
    }

    /// Slots nobody serves. A healthy cluster has none.
    pub fn unowned_slots(&self) -> usize {
        self.owner.iter().filter(|&&index| index == UNOWNED).count()
    }

    /// Apply a `-MOVED`: `slot` now lives on `node`.
    pub fn assign(&mut self, slot: u16, node: SocketAddr) -> Result<(), ClientError> {
        assert!(slot < SLOT_COUNT);
        let index = self.node_index(node)?;
        self.owner[usize::from(slot)] = index;
        Ok(())
    }

    fn node_index(&mut self, node: SocketAddr) -> Result<u16, ClientError> {
        if let Some(index) = self.nodes.iter().position(|&known| known == node) {
            return Ok(index as u16);
        }
        if self.nodes.len() == NODES_MAX {
            return Err(ClientError::UnexpectedReply {
                command: "CLUSTER SLOTS",
                detail: format!("more than {NODES_MAX} nodes"),
            });
        }
        self.nodes.push(node);
        Ok((self.nodes.len() - 1) as u16)
    }
}

fn parse_node(master: &Reply, answered_by: SocketAddr) -> Option<SocketAddr> {
    let Reply::Array(Some(fields)) = master else {
        return None;
    };
    let ip = match fields.first()? {
        Reply::Bulk(Some(ip)) if ip.is_empty() => answered_by.ip(),
        Reply::Bulk(None) => answered_by.ip(),
        Reply::Bulk(Some(ip)) => std::str::from_utf8(ip).ok()?.parse::<IpAddr>().ok()?,
        _ => return None,
    };
    let Reply::Integer(port) = fields.get(1)? else {
        return None;
    };
    Some(SocketAddr::new(ip, u16::try_from(*port).ok()?))
}

/// A cluster redirect carried by an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirect {
    /// The slot has moved for good: update the map.
    Moved { slot: u16, to: SocketAddr },
    /// The slot is migrating: ask `to` once, prefixed by `ASKING`.
    Ask { slot: u16, to: SocketAddr },
}

impl Redirect {
    /// Parse `MOVED <slot> <ip>:<port>` / `ASK ...`; anything else is `None`.
    pub fn parse(message: &str) -> Option<Redirect> {
        let mut words = message.split(' ');
        let kind = words.next()?;
        let slot: u16 = words.next()?.parse().ok()?;
        let to: SocketAddr = words.next()?.parse().ok()?;
        if slot >= SLOT_COUNT || words.next().is_some() {
            return None;
        }
        match kind {
            "MOVED" => Some(Redirect::Moved { slot, to }),
            "ASK" => Some(Redirect::Ask { slot, to }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    fn range(start: i64, end: i64, ip: &str, port: i64) -> Reply {
        Reply::Array(Some(vec![
            Reply::Integer(start),
            Reply::Integer(end),
            Reply::Array(Some(vec![bulk(ip), Reply::Integer(port), bulk("id")])),
        ]))
    }

    #[test]
    fn builds_from_cluster_slots() {
        let seed: SocketAddr = "10.0.0.9:7000".parse().unwrap();
        let reply = Reply::Array(Some(vec![
            range(0, 8191, "127.0.0.1", 7000),
            range(8192, 16383, "", 7001),
        ]));
        let map = SlotMap::from_cluster_slots(&reply, seed).unwrap();
        assert_eq!(map.owner(0), Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(map.owner(16383), Some("10.0.0.9:7001".parse().unwrap()));
        assert_eq!(map.nodes().len(), 2);
        assert_eq!(map.unowned_slots(), 0);
    }

    #[test]
    fn holes_and_bad_replies() {
        let seed: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let reply = Reply::Array(Some(vec![range(0, 10, "127.0.0.1", 7000)]));
        let map = SlotMap::from_cluster_slots(&reply, seed).unwrap();
        assert_eq!(map.owner(11), None);
        assert_eq!(map.unowned_slots(), 16384 - 11);
        let out_of_range = Reply::Array(Some(vec![range(0, 16384, "127.0.0.1", 7000)]));
        assert!(SlotMap::from_cluster_slots(&out_of_range, seed).is_err());
        let refused = Reply::Error("ERR This instance has cluster support disabled".into());
        assert!(matches!(
            SlotMap::from_cluster_slots(&refused, seed),
            Err(ClientError::Server(_))
        ));
    }

    #[test]
    fn parses_redirects() {
        assert_eq!(
            Redirect::parse("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: 3999,
                to: "127.0.0.1:6381".parse().unwrap()
            })
        );
        assert_eq!(
            Redirect::parse("ASK 1 127.0.0.1:6381"),
            Some(Redirect::Ask {
                slot: 1,
                to: "127.0.0.1:6381".parse().unwrap()
            })
        );
        assert_eq!(Redirect::parse("ERR unknown command"), None);
        assert_eq!(Redirect::parse("MOVED 16384 127.0.0.1:6381"), None);
    }
}
