//! Ordered range scan over every node (core) of the cluster, or of one host:
//! scatter one request stream per node, gather the records in key order as
//! a stream, and report a failing node with its address without ending the
//! others (Aerospike's Recordset).
//!
//! How each node's stream is ordered depends on what the node can do:
//!
//! - **Tessera** answers `TRANGE start end COUNT n` with one page of its
//!   records already in key order plus the key to continue from. Each
//!   node's stream holds one page at a time and fetches the next when the
//!   merge has consumed it, so a scan of any size needs memory for one page
//!   per node ([`SCAN_PAGE_KEYS_MAX`] records at most), nothing more.
//! - **Redis** has no ordered walk (`SCAN` walks its hash table in no useful
//!   order), so a node that answers `TRANGE` with "unknown command" falls
//!   back to listing its keys in the range with `SCAN ... COUNT` (all nodes
//!   concurrently), sorting them, and fetching values lazily, a page of
//!   pipelined `GET`s at a time. That listing is bounded by
//!   [`SCAN_NODE_KEYS_MAX`]; a node over it is reported as failed rather
//!   than allowed to exhaust the client's memory.
//!
//! The choice is made per node by the first request (a `TRANGE` for the
//! first page), so no separate probe round trip is spent. Records are merged
//! with a binary heap keyed by (head key, node): a key lives on one node, so
//! ties can't occur across nodes and the output is strictly increasing. A
//! stream's heap entry is keyed by the smallest key it can still produce
//! (the page's first key, or the continuation key before a fetch), and after
//! every fetch the stream is re-queued under its real first key, since keys
//! deleted meanwhile can make it larger.
//!
//! A node that fails while its stream is being fetched yields one
//! [`ScanItem::NodeFailed`] at the point of failure; the records it already
//! yielded stand, and every other node's records still arrive in order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use super::resp::{encode_command, Reply};
use super::{Client, ClientError};

/// Keys one node's stream may list (SCAN fallback) before it is reported
/// as too large.
pub const SCAN_NODE_KEYS_MAX: usize = 1 << 20;
/// Records fetched per round trip (`TRANGE ... COUNT`, or pipelined `GET`s),
/// and the `COUNT` hint for listing. At most Tessera's `TRANGE_COUNT_MAX`.
pub const SCAN_PAGE_KEYS_MAX: usize = 1024;
/// Nodes one scan may name explicitly in [`ScanOptions::nodes`].
pub const SCAN_NODES_MAX: usize = super::NODES_MAX;

/// What and where to scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// First key included (`None`: from the smallest key).
    pub start: Option<Vec<u8>>,
    /// First key excluded (`None`: to the largest key).
    pub end: Option<Vec<u8>>,
    /// Only the nodes (cores) on this host; `None` scans the whole cluster.
    pub host: Option<IpAddr>,
    /// Scan exactly these nodes instead of the slot map's (for instance the
    /// cores of several independent single-host deployments); `host` still
    /// filters them.
    pub nodes: Option<Vec<SocketAddr>>,
    /// Records fetched per round trip (0 means [`SCAN_PAGE_KEYS_MAX`]).
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

/// How a node's records are walked in key order (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanMethod {
    /// Tessera's native ordered `TRANGE`, page by page.
    Trange,
    /// `SCAN` listing sorted in the client, values by pipelined `GET`.
    ScanSort,
}

/// A scan in progress; call [`RangeScan::next`] until it returns `None`.
pub struct RangeScan {
    client: Client,
    streams: Vec<NodeStream>,
    /// Head key of every live stream, smallest first.
    heads: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    failures: VecDeque<ScanItem>,
    page_keys: usize,
    end: Option<Vec<u8>>,
}

struct NodeStream {
    node: SocketAddr,
    source: Source,
    /// Fetched (key, value) pairs not yet yielded, in key order; `None`
    /// values are keys deleted since listing.
    page: VecDeque<(Vec<u8>, Option<Vec<u8>>)>,
}

enum Source {
    /// The key the next `TRANGE` page starts at (inclusive); `None` when
    /// the node has no more records in the range.
    Trange { next: Option<Vec<u8>> },
    /// Sorted keys not yet fetched.
    Listed { keys: VecDeque<Vec<u8>> },
}

impl NodeStream {
    /// The smallest key this stream can still yield, if any.
    fn head(&self) -> Option<&Vec<u8>> {
        self.page
            .front()
            .map(|(key, _)| key)
            .or(match &self.source {
                Source::Trange { next } => next.as_ref(),
                Source::Listed { keys } => keys.front(),
            })
    }

    fn method(&self) -> ScanMethod {
        match self.source {
            Source::Trange { .. } => ScanMethod::Trange,
            Source::Listed { .. } => ScanMethod::ScanSort,
        }
    }

    /// Forget everything not yet yielded (the node failed).
    fn abandon(&mut self) {
        self.page.clear();
        self.source = Source::Listed {
            keys: VecDeque::new(),
        };
    }
}

impl Client {
    /// Start an ordered scan. Every node's first page (or, without TRANGE,
    /// its listing) is fetched concurrently; a node that fails there shows
    /// up as the first items of the stream.
    pub async fn scan(&self, options: ScanOptions) -> RangeScan {
        let page_keys = match options.page_keys {
            0 => SCAN_PAGE_KEYS_MAX,
            n => n.min(SCAN_PAGE_KEYS_MAX),
        };
        let candidates = match &options.nodes {
            Some(nodes) => nodes.clone(),
            None => self.slot_map().nodes().to_vec(),
        };
        let nodes: Vec<SocketAddr> = candidates
            .into_iter()
            .filter(|node| options.host.map_or(true, |host| node.ip() == host))
            .collect();
        let mut scan = RangeScan {
            client: self.clone(),
            streams: Vec::with_capacity(nodes.len()),
            heads: BinaryHeap::new(),
            failures: VecDeque::new(),
            page_keys,
            end: options.end.clone(),
        };
        if nodes.len() > SCAN_NODES_MAX {
            scan.failures.push_back(ScanItem::NodeFailed {
                node: nodes[SCAN_NODES_MAX],
                error: ClientError::InvalidArgument {
                    what: "scan node list",
                    len: nodes.len(),
                    max: SCAN_NODES_MAX,
                },
            });
            return scan;
        }
        let openings: Vec<_> = nodes
            .iter()
            .map(|&node| {
                let client = self.clone();
                let options = options.clone();
                glommio::spawn_local(async move {
                    open_stream(&client, node, &options, page_keys).await
                })
            })
            .collect();
        for (node, opening) in nodes.into_iter().zip(openings) {
            match opening.await {
                Ok(stream) => {
                    let index = scan.streams.len();
                    if let Some(head) = stream.head() {
                        scan.heads.push(Reverse((head.clone(), index)));
                    }
                    scan.streams.push(stream);
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
    /// How `node`'s records are being walked; `None` if the scan doesn't
    /// cover `node` or its stream failed to open.
    pub fn method(&self, node: SocketAddr) -> Option<ScanMethod> {
        self.streams
            .iter()
            .find(|stream| stream.node == node)
            .map(NodeStream::method)
    }

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
                    stream.abandon();
                    return Some(ScanItem::NodeFailed {
                        node: stream.node,
                        error,
                    });
                }
                // Deleted keys may have moved the head past other streams'.
                if let Some(head) = self.streams[index].head() {
                    self.heads.push(Reverse((head.clone(), index)));
                }
                continue;
            }
            let stream = &mut self.streams[index];
            let (key, value) = stream.page.pop_front().expect("page is not empty");
            if let Some(next) = stream.head() {
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

    /// Fetch the next page of `index`'s records in one round trip.
    async fn fetch_page(&mut self, index: usize) -> Result<(), ClientError> {
        let stream = &mut self.streams[index];
        assert!(stream.page.is_empty());
        match &mut stream.source {
            Source::Trange { next } => {
                let from = next.take().expect("a stream without a head is not queued");
                let (records, next) = trange_page(
                    &self.client,
                    stream.node,
                    Some(&from),
                    self.end.as_deref(),
                    self.page_keys,
                )
                .await?;
                if records.first().is_some_and(|(first, _)| *first < from) {
                    return Err(ClientError::UnexpectedReply {
                        command: "TRANGE",
                        detail: "page starts before the continuation key".into(),
                    });
                }
                stream
                    .page
                    .extend(records.into_iter().map(|(k, v)| (k, Some(v))));
                stream.source = Source::Trange { next };
                Ok(())
            }
            Source::Listed { keys } => {
                assert!(!keys.is_empty(), "a stream without a head is not queued");
                let count = keys.len().min(self.page_keys);
                let mut encoded = Vec::new();
                for key in keys.iter().take(count) {
                    encode_command(&mut encoded, &[b"GET", key]);
                }
                let replies = self
                    .client
                    .round_trip_on(stream.node, &encoded, count)
                    .await?;
                for reply in replies {
                    let key = keys.pop_front().expect("one key per reply");
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
    }
}

/// Open `node`'s stream: its first TRANGE page, or (when the node doesn't
/// know TRANGE) its sorted key listing.
async fn open_stream(
    client: &Client,
    node: SocketAddr,
    options: &ScanOptions,
    page_keys: usize,
) -> Result<NodeStream, ClientError> {
    let first = trange_page(
        client,
        node,
        options.start.as_deref(),
        options.end.as_deref(),
        page_keys,
    )
    .await;
    match first {
        Ok((records, next)) => Ok(NodeStream {
            node,
            source: Source::Trange { next },
            page: records.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        }),
        Err(ClientError::Server(message)) if is_unknown_command(&message) => {
            let keys = list_keys(client, node, options, page_keys).await?;
            Ok(NodeStream {
                node,
                source: Source::Listed { keys },
                page: VecDeque::new(),
            })
        }
        Err(error) => Err(error),
    }
}

/// Redis: "ERR unknown command 'TRANGE', with args beginning with: ...".
fn is_unknown_command(message: &str) -> bool {
    message
        .get(.."ERR unknown command".len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("ERR unknown command"))
}

type TrangePage = (Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>);

/// One `TRANGE [from (end COUNT n` page from `node`: its records in key
/// order and the key to continue from. Not retried: a scan reports a failed
/// node rather than hiding it.
async fn trange_page(
    client: &Client,
    node: SocketAddr,
    from: Option<&[u8]>,
    end: Option<&[u8]>,
    page_keys: usize,
) -> Result<TrangePage, ClientError> {
    assert!(page_keys > 0 && page_keys <= SCAN_PAGE_KEYS_MAX);
    let start_bound = match from {
        Some(key) => [b"[".as_slice(), key].concat(),
        None => b"-".to_vec(),
    };
    let end_bound = match end {
        Some(key) => [b"(".as_slice(), key].concat(),
        None => b"+".to_vec(),
    };
    let count = page_keys.to_string();
    let mut encoded = Vec::new();
    encode_command(
        &mut encoded,
        &[
            b"TRANGE",
            &start_bound,
            &end_bound,
            b"COUNT",
            count.as_bytes(),
        ],
    );
    let reply = client
        .round_trip_on(node, &encoded, 1)
        .await?
        .pop()
        .expect("one reply");
    parse_trange(reply, page_keys)
}

/// `[[k, v, ...], next | nil]`, at most `page_keys` strictly increasing
/// records, with `next` past the last record.
fn parse_trange(reply: Reply, page_keys: usize) -> Result<TrangePage, ClientError> {
    let bad = |detail: &str| ClientError::UnexpectedReply {
        command: "TRANGE",
        detail: detail.into(),
    };
    let parts = match reply {
        Reply::Error(message) => return Err(ClientError::Server(message)),
        Reply::Array(Some(parts)) if parts.len() == 2 => parts,
        _ => return Err(bad("not [[key, value, ...], next]")),
    };
    let mut parts = parts.into_iter();
    let (Some(Reply::Array(Some(flat))), Some(next)) = (parts.next(), parts.next()) else {
        return Err(bad("not [[key, value, ...], next]"));
    };
    let next = match next {
        Reply::Bulk(next) => next,
        Reply::Array(None) => None,
        _ => return Err(bad("continuation is not a key or nil")),
    };
    if flat.len() % 2 != 0 || flat.len() / 2 > page_keys {
        return Err(bad("record list has an odd length or exceeds COUNT"));
    }
    if flat.is_empty() && next.is_some() {
        return Err(bad("an empty page with a continuation key"));
    }
    let mut records = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(key), Some(value)) = (flat.next(), flat.next()) {
        let (Reply::Bulk(Some(key)), Reply::Bulk(Some(value))) = (key, value) else {
            return Err(bad("a record is not two bulk strings"));
        };
        if records
            .last()
            .is_some_and(|(last, _): &(Vec<u8>, _)| *last >= key)
        {
            return Err(bad("records out of key order"));
        }
        records.push((key, value));
    }
    if let (Some((last, _)), Some(next)) = (records.last(), &next) {
        if next <= last {
            return Err(bad("continuation key not past the page"));
        }
    }
    Ok((records, next))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> Reply {
        Reply::Bulk(Some(bytes.to_vec()))
    }

    fn page(flat: &[&[u8]], next: Option<&[u8]>) -> Reply {
        Reply::Array(Some(vec![
            Reply::Array(Some(flat.iter().map(|b| bulk(b)).collect())),
            Reply::Bulk(next.map(<[u8]>::to_vec)),
        ]))
    }

    #[test]
    fn parses_a_trange_page() {
        let (records, next) = parse_trange(page(&[b"a", b"1", b"b", b"2"], Some(b"c")), 2).unwrap();
        assert_eq!(
            records,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        assert_eq!(next.as_deref(), Some(b"c".as_slice()));
        let (records, next) = parse_trange(page(&[], None), 2).unwrap();
        assert!(records.is_empty() && next.is_none());
    }

    #[test]
    fn rejects_malformed_trange_pages() {
        for (reply, page_keys) in [
            (page(&[b"a"], None), 2),                   // odd length
            (page(&[b"a", b"1", b"b", b"2"], None), 1), // over COUNT
            (page(&[b"b", b"1", b"a", b"2"], None), 2), // out of order
            (page(&[b"a", b"1"], Some(b"a")), 2),       // next not past the page
            (page(&[], Some(b"a")), 2),                 // empty with a next key
            (Reply::Integer(3), 2),
        ] {
            assert!(parse_trange(reply, page_keys).is_err());
        }
        assert!(matches!(
            parse_trange(Reply::Error("ERR unknown command 'TRANGE'".into()), 1),
            Err(ClientError::Server(message)) if is_unknown_command(&message)
        ));
    }

    #[test]
    fn recognises_unknown_command_errors() {
        assert!(is_unknown_command(
            "ERR unknown command 'TRANGE', with args beginning with: '-' "
        ));
        assert!(!is_unknown_command("ERR syntax error"));
        assert!(!is_unknown_command("ERR"));
    }
}
