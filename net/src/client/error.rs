//! The smart client's one error type.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::resp::ProtocolError;

/// Everything a client request can fail with. Structured so that callers
/// can tell a slow node from a dead one from a refused command.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting to, writing to or reading from `node` failed.
    Io {
        node: SocketAddr,
        source: std::io::Error,
    },
    /// `node` did not answer within the request timeout.
    Timeout { node: SocketAddr, after: Duration },
    /// The server redirected us more than [`super::REDIRECTS_MAX`] times;
    /// the last redirect is kept for diagnosis.
    Redirect {
        slot: u16,
        to: SocketAddr,
        redirects: usize,
    },
    /// The server refused the command (`-ERR ...`, `-WRONGTYPE ...`).
    Server(String),
    /// The node broke the protocol; its connection was dropped.
    Protocol {
        node: SocketAddr,
        source: ProtocolError,
    },
    /// No node serves `slot` (the map has a hole, or `-CLUSTERDOWN`).
    ClusterDown { slot: u16 },
    /// None of the seed addresses answered `CLUSTER SLOTS` usefully.
    NoSeedReachable {
        tried: usize,
        last: Box<ClientError>,
    },
    /// The reply had a shape the command does not allow.
    UnexpectedReply {
        command: &'static str,
        detail: String,
    },
    /// A caller-supplied argument is out of bounds.
    InvalidArgument {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { node, source } => write!(f, "i/o error talking to {node}: {source}"),
            Self::Timeout { node, after } => write!(f, "{node} did not answer within {after:?}"),
            Self::Redirect {
                slot,
                to,
                redirects,
            } => {
                write!(
                    f,
                    "slot {slot}: gave up after {redirects} redirects (last to {to})"
                )
            }
            Self::Server(message) => write!(f, "server error: {message}"),
            Self::Protocol { node, source } => write!(f, "protocol error from {node}: {source}"),
            Self::ClusterDown { slot } => write!(f, "no node serves slot {slot}"),
            Self::NoSeedReachable { tried, last } => {
                write!(
                    f,
                    "none of {tried} seed addresses usable; last error: {last}"
                )
            }
            Self::UnexpectedReply { command, detail } => {
                write!(f, "unexpected reply to {command}: {detail}")
            }
            Self::InvalidArgument { what, len, max } => {
                write!(f, "{what} is {len} bytes, limit {max}")
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Protocol { source, .. } => Some(source),
            Self::NoSeedReachable { last, .. } => Some(last.as_ref()),
            _ => None,
        }
    }
}

impl ClientError {
    /// Worth retrying on a fresh connection (the node may be back, or the
    /// map may have moved the slot elsewhere).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Io { .. } | Self::Timeout { .. } | Self::Protocol { .. }
        )
    }
}
