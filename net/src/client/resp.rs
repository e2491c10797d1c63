//! The client side of RESP2: encoding commands and reading replies.
//!
//! There is exactly one reply reader, split in two layers so that both users
//! get what they need from the same code:
//!
//! - [`scan_reply`] frames one reply: it walks the bytes, validates the
//!   structure against named limits and returns the reply's length and
//!   whether it is an error, without allocating. The load generator calls
//!   only this, once per reply, in its hot loop.
//! - [`decode_reply`] materialises a reply that [`scan_reply`] has already
//!   framed into an owned [`Reply`] tree. The smart client uses it; it
//!   allocates, which is fine off the load generator's path.
//!
//! Commands are encoded as RESP arrays of bulk strings ([`encode_command`]),
//! appending into a caller-owned buffer so that a reused buffer never
//! allocates once it has grown to its working size.

use std::fmt;

/// Longest bulk string a reply may carry. Redis's own `proto-max-bulk-len`
/// default; anything larger is a corrupt stream, not data.
pub const REPLY_BULK_LEN_MAX: usize = 512 * 1024 * 1024;
/// Most elements one reply array may announce; bounds the work and memory a
/// hostile or corrupt length can make us commit to.
pub const REPLY_ARRAY_LEN_MAX: usize = 1024 * 1024;
/// Deepest nesting of arrays accepted (`CLUSTER SLOTS` needs 3).
pub const REPLY_DEPTH_MAX: usize = 8;
/// Longest header line (`+status`, `-error`, `:int`, `$len`, `*len`).
pub const REPLY_LINE_LEN_MAX: usize = 64 * 1024;

/// A reply that breaks the protocol. The connection it came from cannot be
/// trusted to be in sync any more and must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The first byte of a reply is not a RESP2 type marker.
    UnknownType {
        byte: u8,
    },
    /// A length or integer field does not parse.
    BadNumber,
    /// A header line has no CRLF within [`REPLY_LINE_LEN_MAX`].
    LineTooLong {
        max: usize,
    },
    BulkTooLong {
        len: usize,
        max: usize,
    },
    ArrayTooLong {
        len: usize,
        max: usize,
    },
    TooDeep {
        max: usize,
    },
    /// A bulk string is not followed by CRLF.
    MissingCrlf,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType { byte } => write!(f, "unknown reply type byte 0x{byte:02x}"),
            Self::BadNumber => write!(f, "malformed number in reply header"),
            Self::LineTooLong { max } => write!(f, "reply header line longer than {max} bytes"),
            Self::BulkTooLong { len, max } => write!(f, "bulk reply of {len} bytes exceeds {max}"),
            Self::ArrayTooLong { len, max } => {
                write!(f, "array reply of {len} elements exceeds {max}")
            }
            Self::TooDeep { max } => write!(f, "reply nested deeper than {max}"),
            Self::MissingCrlf => write!(f, "bulk reply not terminated by CRLF"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// One decoded RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and other status lines.
    Status(String),
    /// `-ERR ...`, `-MOVED ...`: the whole line after the `-`.
    Error(String),
    Integer(i64),
    /// `$-1` decodes to `Bulk(None)`.
    Bulk(Option<Vec<u8>>),
    /// `*-1` decodes to `Array(None)`.
    Array(Option<Vec<Reply>>),
}

/// What [`scan_reply`] learnt about one complete reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes the reply occupies, from its type byte to its last CRLF.
    pub len: usize,
    /// The reply itself is an error (`-...`); nested errors don't count.
    pub is_error: bool,
}

/// Append `args` to `out` as one RESP command (an array of bulk strings).
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    assert!(!args.is_empty(), "a command has at least a name");
    out.push(b'*');
    push_decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        encode_bulk(out, arg);
    }
}

/// Append one bulk string (`$len\r\nbytes\r\n`).
pub fn encode_bulk(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'$');
    push_decimal(out, arg.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Append `value` in decimal without going through `fmt` (which is slow and,
/// for the load generator's hot loop, needlessly general).
pub fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Frame the first reply in `buf`. `Ok(None)` means the reply is not complete
/// yet (read more and call again with the longer buffer).
pub fn scan_reply(buf: &[u8]) -> Result<Option<Scanned>, ProtocolError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let is_error = first == b'-';
    Ok(scan_at(buf, 0, 0)?.map(|end| Scanned { len: end, is_error }))
}

/// Frame the reply starting at `at`; returns the offset just past it.
fn scan_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, ProtocolError> {
    if depth > REPLY_DEPTH_MAX {
        return Err(ProtocolError::TooDeep {
            max: REPLY_DEPTH_MAX,
        });
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(line_end) = find_crlf(buf, at + 1)? else {
        return Ok(None);
    };
    let line = &buf[at + 1..line_end];
    let after_line = line_end + 2;
    match kind {
        b'+' | b'-' => Ok(Some(after_line)),
        b':' => {
            parse_signed(line)?;
            Ok(Some(after_line))
        }
        b'$' => match parse_length(line)? {
            None => Ok(Some(after_line)),
            Some(len) => {
                if len > REPLY_BULK_LEN_MAX {
                    return Err(ProtocolError::BulkTooLong {
                        len,
                        max: REPLY_BULK_LEN_MAX,
                    });
                }
                let end = after_line + len + 2;
                if buf.len() < end {
                    return Ok(None);
                }
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(ProtocolError::MissingCrlf);
                }
                Ok(Some(end))
            }
        },
        b'*' => match parse_length(line)? {
            None => Ok(Some(after_line)),
            Some(count) => {
                if count > REPLY_ARRAY_LEN_MAX {
                    return Err(ProtocolError::ArrayTooLong {
                        len: count,
                        max: REPLY_ARRAY_LEN_MAX,
                    });
                }
                let mut next = after_line;
                for _ in 0..count {
                    match scan_at(buf, next, depth + 1)? {
                        Some(end) => next = end,
                        None => return Ok(None),
                    }
                }
                Ok(Some(next))
            }
        },
        byte => Err(ProtocolError::UnknownType { byte }),
    }
}

/// Decode the reply at the start of `buf`, which [`scan_reply`] has framed as
/// complete. Returns the reply and its length.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some(scanned) = scan_reply(buf)? else {
        return Ok(None);
    };
    let (reply, end) = decode_at(&buf[..scanned.len], 0)?;
    assert_eq!(end, scanned.len, "decode and scan agree on the frame");
    Ok(Some((reply, end)))
}

fn decode_at(buf: &[u8], at: usize) -> Result<(Reply, usize), ProtocolError> {
    // The frame was validated by `scan_at`, so every CRLF and length exists.
    let line_end = find_crlf(buf, at + 1)?.expect("framed reply has its CRLF");
    let line = &buf[at + 1..line_end];
    let after_line = line_end + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    match buf[at] {
        b'+' => Ok((Reply::Status(text()), after_line)),
        b'-' => Ok((Reply::Error(text()), after_line)),
        b':' => Ok((Reply::Integer(parse_signed(line)?), after_line)),
        b'$' => match parse_length(line)? {
            None => Ok((Reply::Bulk(None), after_line)),
            Some(len) => {
                let bytes = buf[after_line..after_line + len].to_vec();
                Ok((Reply::Bulk(Some(bytes)), after_line + len + 2))
            }
        },
        b'*' => match parse_length(line)? {
            None => Ok((Reply::Array(None), after_line)),
            Some(count) => {
                let mut items = Vec::with_capacity(count);
                let mut next = after_line;
                for _ in 0..count {
                    let (item, end) = decode_at(buf, next)?;
                    items.push(item);
                    next = end;
                }
                Ok((Reply::Array(Some(items)), next))
            }
        },
        byte => Err(ProtocolError::UnknownType { byte }),
    }
}

/// Index of the `\r` of the first CRLF at or after `from`.
fn find_crlf(buf: &[u8], from: usize) -> Result<Option<usize>, ProtocolError> {
    let window_end = buf.len().min(from + REPLY_LINE_LEN_MAX + 1);
    if from >= window_end {
        return Ok(None);
    }
    match buf[from..window_end].windows(2).position(|w| w == b"\r\n") {
        Some(offset) => Ok(Some(from + offset)),
        None if window_end - from > REPLY_LINE_LEN_MAX => Err(ProtocolError::LineTooLong {
            max: REPLY_LINE_LEN_MAX,
        }),
        None => Ok(None),
    }
}

/// A `$`/`*` length: `-1` is the null marker, anything else must be >= 0.
fn parse_length(line: &[u8]) -> Result<Option<usize>, ProtocolError> {
    if line == b"-1" {
        return Ok(None);
    }
    let value = parse_unsigned(line)?;
    usize::try_from(value)
        .map(Some)
        .map_err(|_| ProtocolError::BadNumber)
}

fn parse_unsigned(digits: &[u8]) -> Result<u64, ProtocolError> {
    if digits.is_empty() || digits.len() > 19 {
        return Err(ProtocolError::BadNumber);
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(ProtocolError::BadNumber);
        }
        value = value * 10 + u64::from(d - b'0');
    }
    Ok(value)
}

fn parse_signed(line: &[u8]) -> Result<i64, ProtocolError> {
    let (negative, digits) = match line.first() {
        Some(b'-') => (true, &line[1..]),
        _ => (false, line),
    };
    let magnitude = i64::try_from(parse_unsigned(digits)?).map_err(|_| ProtocolError::BadNumber)?;
    Ok(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_command_as_an_array_of_bulks() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"k", b"hello"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n");
    }

    #[test]
    fn decimal_edges() {
        for value in [0u64, 9, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }

    #[test]
    fn scans_every_type_and_reports_errors() {
        let cases: &[(&[u8], bool)] = &[
            (b"+OK\r\n", false),
            (b"-MOVED 1 127.0.0.1:7000\r\n", true),
            (b":-42\r\n", false),
            (b"$5\r\nhello\r\n", false),
            (b"$-1\r\n", false),
            (b"*-1\r\n", false),
            (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", false),
        ];
        for (bytes, is_error) in cases {
            let scanned = scan_reply(bytes).unwrap().unwrap();
            assert_eq!(
                scanned,
                Scanned {
                    len: bytes.len(),
                    is_error: *is_error
                }
            );
            // Every strict prefix is incomplete, never an error.
            for cut in 0..bytes.len() {
                assert_eq!(
                    scan_reply(&bytes[..cut]),
                    Ok(None),
                    "prefix {cut} of {bytes:?}"
                );
            }
        }
    }

    #[test]
    fn decodes_nested_replies() {
        let bytes = b"*3\r\n:0\r\n$-1\r\n*2\r\n+a\r\n-ERR b\r\n:9\r\n";
        let (reply, len) = decode_reply(bytes).unwrap().unwrap();
        assert_eq!(len, bytes.len() - 4, "only the first reply is consumed");
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Integer(0),
                Reply::Bulk(None),
                Reply::Array(Some(vec![
                    Reply::Status("a".into()),
                    Reply::Error("ERR b".into())
                ])),
            ]))
        );
    }

    #[test]
    fn rejects_corrupt_streams() {
        assert_eq!(
            scan_reply(b"?x\r\n"),
            Err(ProtocolError::UnknownType { byte: b'?' })
        );
        assert_eq!(scan_reply(b"$x\r\n"), Err(ProtocolError::BadNumber));
        assert_eq!(scan_reply(b"$1\r\nab\r\n"), Err(ProtocolError::MissingCrlf));
        assert!(matches!(
            scan_reply(b"*99999999\r\n"),
            Err(ProtocolError::ArrayTooLong { .. })
        ));
        let deep = "*1\r\n".repeat(REPLY_DEPTH_MAX + 2);
        assert!(matches!(
            scan_reply(deep.as_bytes()),
            Err(ProtocolError::TooDeep { .. })
        ));
        let long = vec![b'+'; REPLY_LINE_LEN_MAX + 10];
        assert!(matches!(
            scan_reply(&long),
            Err(ProtocolError::LineTooLong { .. })
        ));
    }
}
