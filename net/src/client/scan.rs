//! Ordered range scan over every node (core) of the cluster, or of one host:
//! scatter one request stream per node, gather the records in key order as
//! a stream, and report a failing node with its address without ending the
//! others (Aerospike's Recordset).
//!
//! How each node's stream is ordered: Redis's `SCAN` walks its hash table in
//! no useful order, so each node's stream first lists the node's keys in the
//! range with `SCAN ... MATCH ... COUNT` (all nodes concurrently), sorts
//! them, and then fetches values lazily, a page of pipelined `GET`s at a
//! time, as the merge consumes that node. The listing is bounded by
//! [`SCAN_NODE_KEYS_MAX`]; a node over it is reported as failed rather than
//! allowed to exhaust the client's memory. Records are merged with a binary
//! heap keyed by (key, node), so ties can't occur across nodes (a key lives
//! on one node) and the output is strictly increasing.
//!
//! A node that fails while its values are being fetched yields one
//! [`ScanItem::NodeFailed`] at the point of failure; the records it already
//! yielded stand, and every other node's records still arrive in order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use super::resp::{encode_command, Reply};
use super::{Client, ClientError};

/// Keys one node's stream may list before it is reported as too large.
pub const SCAN_NODE_KEYS_MAX: usize = 1 << 20;
/// Values fetched per round trip, and the `COUNT` hint for listing.
pub const SCAN_PAGE_KEYS_MAX: usize = 1024;

/// What and where to scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// First key included (`None`: from the smallest key).
    pub start: Option<Vec<u8>>,
    /// First key excluded (`None`: to the largest key).
    pub end: Option<Vec<u8>>,
    /// Only the nodes (cores) on this host; `None` scans the whole cluster.
    pub host: Option<IpAddr>,
    /// Values fetched per round trip (0 means [`SCAN_PAGE_KEYS_MAX`]).
    pub page_keys: usize,
}

/// One element of a scan's output.
#[derive(Debug)]
pub enum ScanItem {
    Record {
        key: Vec<u8>,
        value: Vec<u8>,
        node: SocketAddr,
    },
    /// `node`'s stream ended early with `error`; other nodes carry on.
    NodeFailed {
        node: SocketAddr,
        error: ClientError,
    },
}

/// A scan in progress; call [`RangeScan::next`] until it returns `None`.
pub struct RangeScan {
    client: Client,
    streams: Vec<NodeStream>,
    /// Head key of every live stream, smallest first.
    heads: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    failures: VecDeque<ScanItem>,
    page_keys: usize,
}

struct NodeStream {
    node: SocketAddr,
    /// Sorted keys not yet fetched.
    keys: VecDeque<Vec<u8>>,
    /// Fetched (key, value) pairs not yet yielded, in key order; `None`
    /// values are keys deleted since listing.
    page: VecDeque<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Client {
    /// Start an ordered scan. Listing runs on every node concurrently; a
    /// node whose listing fails shows up as the first items of the stream.
    pub async fn scan(&self, options: ScanOptions) -> RangeScan {
        let page_keys = match options.page_keys {
            0 => SCAN_PAGE_KEYS_MAX,
            n => n.min(SCAN_PAGE_KEYS_MAX),
        };
        let nodes: Vec<SocketAddr> = self
            .slot_map()
            .nodes()
            .iter()
            .copied()
            .filter(|node| options.host.map_or(true, |host| node.ip() == host))
            .collect();
        let listings: Vec<_> = nodes
            .iter()
            .map(|&node| {
                let client = self.clone();
                let options = options.clone();
                glommio::spawn_local(
                    async move { list_keys(&client, node, &options, page_keys).await },
                )
            })
            .collect();
        let mut scan = RangeScan {
            client: self.clone(),
            streams: Vec::with_capacity(nodes.len()),
            heads: BinaryHeap::new(),
            failures: VecDeque::new(),
            page_keys,
        };
        for (node, listing) in nodes.into_iter().zip(listings) {
            match listing.await {
                Ok(keys) => {
                    let index = scan.streams.len();
                    if let Some(first) = keys.front() {
                        scan.heads.push(Reverse((first.clone(), index)));
                    }
                    scan.streams.push(NodeStream {
                        node,
                        keys,
                        page: VecDeque::new(),
                    });
                }
                Err(error) => scan
                    .failures
                    .push_back(ScanItem::NodeFailed { node, error }),
            }
        }
        scan
    }
}

impl RangeScan {
    /// The next record in key order, or a node's failure; `None` at the end.
    pub async fn next(&mut self) -> Option<ScanItem> {
        loop {
            if let Some(failure) = self.failures.pop_front() {
                return Some(failure);
            }
            let Reverse((_, index)) = self.heads.pop()?;
            if self.streams[index].page.is_empty() {
                if let Err(error) = self.fetch_page(index).await {
                    let stream = &mut self.streams[index];
                    stream.keys.clear();
                    return Some(ScanItem::NodeFailed {
                        node: stream.node,
                        error,
                    });
                }
            }
            let stream = &mut self.streams[index];
            let (key, value) = stream.page.pop_front().expect("fetched page is not empty");
            let next_head = stream.page.front().map(|(k, _)| k).or(stream.keys.front());
            if let Some(next) = next_head {
                assert!(*next > key, "a node's stream is strictly increasing");
                self.heads.push(Reverse((next.clone(), index)));
            }
            if let Some(value) = value {
                return Some(ScanItem::Record {
                    key,
                    value,
                    node: stream.node,
                });
            }
        }
    }

    /// Fetch the values of the next page of `index`'s keys in one pipeline.
    async fn fetch_page(&mut self, index: usize) -> Result<(), ClientError> {
        let stream = &mut self.streams[index];
        assert!(stream.page.is_empty() && !stream.keys.is_empty());
        let count = stream.keys.len().min(self.page_keys);
        let mut encoded = Vec::new();
        for key in stream.keys.iter().take(count) {
            encode_command(&mut encoded, &[b"GET", key]);
        }
        let replies = self
            .client
            .round_trip_on(stream.node, &encoded, count)
            .await?;
        for reply in replies {
            let key = stream.keys.pop_front().expect("one key per reply");
            let value = match reply {
                Reply::Bulk(value) => value,
                Reply::Error(message) => return Err(ClientError::Server(message)),
                other => {
                    return Err(ClientError::UnexpectedReply {
                        command: "GET",
                        detail: format!("{other:?}"),
                    })
                }
            };
            stream.page.push_back((key, value));
        }
        Ok(())
    }
}

/// Every key of `node` within the range, sorted.
async fn list_keys(
    client: &Client,
    node: SocketAddr,
    options: &ScanOptions,
    page_keys: usize,
) -> Result<VecDeque<Vec<u8>>, ClientError> {
    let count = page_keys.to_string();
    let mut cursor = b"0".to_vec();
    let mut keys = Vec::new();
    loop {
        let reply = client
            .command_on(node, &[b"SCAN", &cursor, b"COUNT", count.as_bytes()])
            .await?;
        let bad = || ClientError::UnexpectedReply {
            command: "SCAN",
            detail: "not [cursor, [keys]]".into(),
        };
        let Reply::Array(Some(mut parts)) = reply else {
            return Err(bad());
        };
        let (Some(Reply::Array(Some(batch))), Some(Reply::Bulk(Some(next)))) =
            (parts.pop(), parts.pop())
        else {
            return Err(bad());
        };
        for key in batch {
            let Reply::Bulk(Some(key)) = key else {
                return Err(bad());
            };
            let after_start = options.start.as_ref().map_or(true, |start| key >= *start);
            let before_end = options.end.as_ref().map_or(true, |end| key < *end);
            if after_start && before_end {
                if keys.len() == SCAN_NODE_KEYS_MAX {
                    return Err(ClientError::InvalidArgument {
                        what: "node key listing",
                        len: keys.len() + 1,
                        max: SCAN_NODE_KEYS_MAX,
                    });
                }
                keys.push(key);
            }
        }
        if next == b"0" {
            break;
        }
        cursor = next;
    }
    // SCAN may return a key more than once across a rehash.
    keys.sort_unstable();
    keys.dedup();
    Ok(keys.into())
}
