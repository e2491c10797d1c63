//! Per-connection protocol state.

use crate::resp::{Limits, Protocol};

/// Longest client name or library name/version we keep (Redis has no limit;
/// we bound what a connection can make us store).
pub const CLIENT_NAME_LEN_MAX: usize = 256;

/// One connection's state, owned by the network loop between requests.
#[derive(Debug)]
pub struct Conn {
    pub(crate) id: u64,
    pub(crate) proto: Protocol,
    pub(crate) authenticated: bool,
    /// Set by `CLIENT SETNAME` / `HELLO SETNAME`; allocated only then.
    pub(crate) name: Vec<u8>,
    pub(crate) lib_name: Vec<u8>,
    pub(crate) lib_ver: Vec<u8>,
    /// `ASKING` was sent: valid for the next command only.
    pub(crate) asking: bool,
    /// `READONLY` was sent (we have no replicas, so it changes nothing).
    pub(crate) readonly: bool,
    /// The shard's round in which `round_requests` were answered; a failed
    /// commit rewrites exactly that many replies.
    pub(crate) round: u64,
    pub(crate) round_requests: u32,
}

impl Conn {
    pub(crate) fn new(id: u64, authenticated: bool) -> Conn {
        Conn {
            id,
            proto: Protocol::Resp2,
            authenticated,
            name: Vec::new(),
            lib_name: Vec::new(),
            lib_ver: Vec::new(),
            asking: false,
            readonly: false,
            round: 0,
            round_requests: 0,
        }
    }

    /// The id given by the network loop (`CLIENT ID`).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn protocol(&self) -> Protocol {
        self.proto
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    pub(crate) fn limits(&self) -> Limits {
        if self.authenticated {
            Limits::AUTHENTICATED
        } else {
            Limits::UNAUTHENTICATED
        }
    }
}
