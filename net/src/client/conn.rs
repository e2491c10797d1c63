//! One pipelined connection to one node, and the bounded pool of them.
//!
//! A request borrows a connection exclusively for one round trip: it writes
//! a whole batch of encoded commands with one `write_all` and reads exactly
//! as many replies back. Exclusive borrowing keeps replies trivially matched
//! to requests (no reader task, no per-request channel) while still
//! pipelining: a batch of N commands costs one write and as few reads as the
//! kernel hands us. Concurrency comes from more connections per node, up to
//! [`POOL_CONNECTIONS_MAX`].

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::resp::{decode_reply, Reply};
use super::ClientError;

/// Idle connections kept per node; more may be open while busy, and the
/// surplus is closed on return.
pub const POOL_CONNECTIONS_MAX: usize = 8;
/// Bytes a read buffer may grow to while one batch's replies arrive. Larger
/// replies mean a runaway scan or a corrupt stream; the connection is dropped.
pub const READ_BUFFER_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Read granularity: large enough for a pipeline of small replies at once.
const READ_CHUNK_BYTES: usize = 16 * 1024;

pub(crate) struct Connection {
    node: SocketAddr,
    stream: TcpStream,
    read_buf: Vec<u8>,
}

impl Connection {
    pub(crate) async fn open(node: SocketAddr, timeout: Duration) -> Result<Self, ClientError> {
        let stream =
            TcpStream::connect_timeout(node, timeout)
                .await
                .map_err(|error| match error {
                    glommio::GlommioError::TimedOut(after) => ClientError::Timeout { node, after },
                    other => ClientError::Io {
                        node,
                        source: other.into(),
                    },
                })?;
        stream.set_nodelay(true).map_err(|e| ClientError::Io {
            node,
            source: e.into(),
        })?;
        Ok(Connection {
            node,
            stream,
            read_buf: Vec::with_capacity(READ_CHUNK_BYTES),
        })
    }

    pub(crate) fn node(&self) -> SocketAddr {
        self.node
    }

    /// Write `encoded` (holding `count` commands) and read `count` replies.
    /// Any error leaves the connection unusable; the caller drops it.
    pub(crate) async fn round_trip(
        &mut self,
        encoded: &[u8],
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Reply>, ClientError> {
        assert!(count > 0 && !encoded.is_empty());
        let node = self.node;
        let work = async {
            self.stream
                .write_all(encoded)
                .await
                .map_err(|source| ClientError::Io { node, source })?;
            self.read_replies(count).await
        };
        match glommio::timer::timeout(timeout, async { Ok(work.await) }).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                node,
                after: timeout,
            }),
        }
    }

    async fn read_replies(&mut self, count: usize) -> Result<Vec<Reply>, ClientError> {
        let node = self.node;
        let mut replies = Vec::with_capacity(count);
        let mut parsed = 0;
        self.read_buf.clear();
        while replies.len() < count {
            if let Some((reply, len)) = decode_reply(&self.read_buf[parsed..])
                .map_err(|source| ClientError::Protocol { node, source })?
            {
                replies.push(reply);
                parsed += len;
                continue;
            }
            let filled = self.read_buf.len();
            if filled + READ_CHUNK_BYTES > READ_BUFFER_BYTES_MAX {
                return Err(ClientError::InvalidArgument {
                    what: "reply batch",
                    len: filled,
                    max: READ_BUFFER_BYTES_MAX,
                });
            }
            self.read_buf.resize(filled + READ_CHUNK_BYTES, 0);
            let read = self.stream.read(&mut self.read_buf[filled..]).await;
            let read = match read {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed by the server",
                )),
                other => other,
            };
            match read {
                Ok(n) => self.read_buf.truncate(filled + n),
                Err(source) => {
                    self.read_buf.truncate(filled);
                    return Err(ClientError::Io { node, source });
                }
            }
        }
        // A reply past the ones we asked for would mean we lost sync.
        if parsed != self.read_buf.len() {
            return Err(ClientError::UnexpectedReply {
                command: "pipeline",
                detail: format!(
                    "{} stray bytes after {count} replies",
                    self.read_buf.len() - parsed
                ),
            });
        }
        Ok(replies)
    }
}

/// Idle connections to one node.
#[derive(Default)]
pub(crate) struct Pool {
    idle: RefCell<Vec<Connection>>,
}

impl Pool {
    pub(crate) async fn take(
        &self,
        node: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<Connection, ClientError> {
        let idle = self.idle.borrow_mut().pop();
        match idle {
            Some(conn) => Ok(conn),
            None => Connection::open(node, connect_timeout).await,
        }
    }

    pub(crate) fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < POOL_CONNECTIONS_MAX {
            idle.push(conn);
        }
    }

    /// Drop every idle connection (the node failed; they are likely dead too).
    pub(crate) fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}
