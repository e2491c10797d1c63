//! The load generator's own RESP: requests written from constant templates,
//! replies framed with a fast path for the two shapes it expects.
//!
//! The generic encoder ([`encode_command`]) and reply scanner
//! ([`scan_reply`]) handle any command and any reply; the load generator
//! only ever sends `SET key:<12 digits> <value>` and `GET key:<12 digits>`,
//! and nearly every reply is `+OK` or `$<n>` followed by the value. At
//! pipeline 16 encoding and framing were a tenth of the client's CPU per
//! request (profiled), most of it spent re-deriving constants: the array
//! and length headers, the command name, the key's prefix, and the value
//! bytes themselves. So:
//!
//! - a request is one constant head (`*3\r\n$3\r\nSET\r\n$16\r\nkey:`) with
//!   the key's 12 digits written into it, then, for a SET, one constant
//!   tail (`\r\n$32\r\n<value>\r\n`) precomputed for a fixed `--data-size`;
//!   only a ranged `--data-size` encodes the value's length per request;
//! - a reply is framed by checking for `+OK\r\n` or parsing a short `$len`
//!   line in place; anything else (errors, nil, other types, a line cut
//!   in two by the network) goes to the generic [`scan_reply`], so every
//!   reply the scanner accepts or rejects is accepted or rejected alike.
//!
//! Both sides are checked byte for byte against the generic code in the
//! tests below.

use super::workload::{key_digits, KEY_DIGITS, KEY_LEN, KEY_PREFIX};
use crate::client::resp::{push_decimal, scan_reply, ProtocolError, Scanned, REPLY_BULK_LEN_MAX};

/// `*<n>\r\n$3\r\n<CMD>\r\n$16\r\nkey:`: 22 bytes while keys are 16 long.
const HEAD_LEN: usize = 22;
/// A GET is complete with the key's digits and one CRLF.
const GET_LEN: usize = HEAD_LEN + KEY_DIGITS + 2;
/// Most digits of a `$<len>` line the fast path parses; longer lengths
/// are left to the generic scanner, which also enforces their limit.
const FAST_BULK_DIGITS_MAX: usize = 8;
const OK_REPLY: &[u8] = b"+OK\r\n";

// The heads below spell the key length out.
const _: () = assert!(KEY_LEN == 16 && KEY_PREFIX.len() == 4);
// Every length the fast path accepts is one the generic scanner accepts.
const _: () = assert!(10usize.pow(FAST_BULK_DIGITS_MAX as u32) <= REPLY_BULK_LEN_MAX);

/// Everything of a SET before its key's digits.
const SET_HEAD: [u8; HEAD_LEN] = *b"*3\r\n$3\r\nSET\r\n$16\r\nkey:";
/// A whole GET with its key's digits left as zeroes, written per request.
const GET_TEMPLATE: [u8; GET_LEN] = *b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000000\r\n";

/// Writes one connection's requests; built once per thread at start.
#[derive(Debug)]
pub struct RequestEncoder {
    /// `data_size_min`: the only value length when `set_tail` is set.
    value_len_min: usize,
    value_len_max: usize,
    /// `\r\n$<len>\r\n<value>\r\n` for the one value length of a fixed
    /// `--data-size`; `None` for a range.
    set_tail: Option<Box<[u8]>>,
    /// `value_len_max` value bytes, sliced for a ranged `--data-size`.
    value: Box<[u8]>,
}

impl RequestEncoder {
    pub fn new(value_len_min: usize, value_len_max: usize) -> RequestEncoder {
        assert!(value_len_min <= value_len_max);
        let value = vec![b'x'; value_len_max].into_boxed_slice();
        let set_tail = (value_len_min == value_len_max).then(|| {
            let mut tail = Vec::with_capacity(value_len_max + 16);
            tail.extend_from_slice(b"\r\n$");
            push_decimal(&mut tail, value_len_max as u64);
            tail.extend_from_slice(b"\r\n");
            tail.extend_from_slice(&value);
            tail.extend_from_slice(b"\r\n");
            tail.into_boxed_slice()
        });
        RequestEncoder {
            value_len_min,
            value_len_max,
            set_tail,
            value,
        }
    }

    /// Whether SETs draw a value length per request.
    pub fn value_len_varies(&self) -> bool {
        self.set_tail.is_none()
    }

    /// Append `SET key:<index> <value_len bytes>`.
    pub fn set(&self, out: &mut Vec<u8>, key_index: u64, value_len: usize) {
        assert!(value_len >= self.value_len_min && value_len <= self.value_len_max);
        let mut head = [0u8; HEAD_LEN + KEY_DIGITS];
        head[..HEAD_LEN].copy_from_slice(&SET_HEAD);
        head[HEAD_LEN..].copy_from_slice(&key_digits(key_index));
        out.extend_from_slice(&head);
        match &self.set_tail {
            Some(tail) => out.extend_from_slice(tail),
            None => {
                out.extend_from_slice(b"\r\n$");
                push_decimal(out, value_len as u64);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&self.value[..value_len]);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Append `GET key:<index>`.
    pub fn get(&self, out: &mut Vec<u8>, key_index: u64) {
        let mut request = GET_TEMPLATE;
        request[HEAD_LEN..HEAD_LEN + KEY_DIGITS].copy_from_slice(&key_digits(key_index));
        out.extend_from_slice(&request);
    }
}

/// Frame the first reply in `buf`, exactly as [`scan_reply`] would.
pub fn frame_reply(buf: &[u8]) -> Result<Option<Scanned>, ProtocolError> {
    if buf.starts_with(OK_REPLY) {
        return Ok(Some(Scanned {
            len: OK_REPLY.len(),
            is_error: false,
        }));
    }
    if let Some(len) = frame_bulk(buf) {
        return Ok(Some(Scanned {
            len,
            is_error: false,
        }));
    }
    scan_reply(buf)
}

/// The length of a complete, well-formed `$<len>\r\n<len bytes>\r\n` at
/// the start of `buf` with a short length line; `None` for anything else,
/// including an incomplete one (the generic scanner then decides).
fn frame_bulk(buf: &[u8]) -> Option<usize> {
    if buf.first() != Some(&b'$') {
        return None;
    }
    let mut len = 0usize;
    let mut at = 1;
    while let Some(&byte) = buf.get(at) {
        if !byte.is_ascii_digit() {
            break;
        }
        if at > FAST_BULK_DIGITS_MAX {
            return None;
        }
        len = len * 10 + usize::from(byte - b'0');
        at += 1;
    }
    // At least one digit, then CRLF; "$-1" and "$0012" go to the generic
    // scanner (nil, and a leading zero it may judge differently).
    if at == 1 || (buf[1] == b'0' && at > 2) || buf.get(at..at + 2) != Some(&b"\r\n"[..]) {
        return None;
    }
    let end = at + 2 + len + 2;
    (buf.get(end - 2..end) == Some(&b"\r\n"[..])).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::resp::encode_command;

    /// The generic encoding of the same requests.
    fn encode_generic(out: &mut Vec<u8>, key_index: u64, value: Option<&[u8]>) {
        let mut key = [0u8; KEY_LEN];
        super::super::workload::write_key(&mut key, key_index);
        match value {
            Some(value) => encode_command(out, &[b"SET", &key, value]),
            None => encode_command(out, &[b"GET", &key]),
        }
    }

    #[test]
    fn requests_match_the_generic_encoder() {
        for (min, max) in [(32, 32), (0, 0), (1, 200), (1000, 1000)] {
            let encoder = RequestEncoder::new(min, max);
            assert_eq!(encoder.value_len_varies(), min != max);
            for (index, len) in [(0, min), (12345, max), (999_999_999_999, (min + max) / 2)] {
                let (mut fast, mut generic) = (Vec::new(), Vec::new());
                encoder.set(&mut fast, index, len);
                encode_generic(&mut generic, index, Some(&vec![b'x'; len]));
                assert_eq!(fast, generic, "SET {index} {len}");
                fast.clear();
                generic.clear();
                encoder.get(&mut fast, index);
                encode_generic(&mut generic, index, None);
                assert_eq!(fast, generic, "GET {index}");
            }
        }
    }

    #[test]
    #[should_panic]
    fn a_value_length_outside_the_range_is_refused() {
        RequestEncoder::new(32, 32).set(&mut Vec::new(), 1, 33);
    }

    #[test]
    fn replies_frame_as_the_generic_scanner_frames_them() {
        let replies: &[&[u8]] = &[
            b"+OK\r\n",
            b"+OK\r",
            b"+OKAY\r\n",
            b"-ERR wrong\r\n",
            b"$32\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
            b"$32\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r",
            b"$32\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxzz",
            b"$3\r\nabc\r\n+OK\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"$03\r\nabc\r\n",
            b"$\r\n",
            b"$3",
            b"$3\r",
            b"$3x\r\nabc\r\n",
            b"$1234567890\r\n",
            b"$99999999999\r\n",
            b":12\r\n",
            b"*1\r\n+OK\r\n",
            b"?",
            b"",
        ];
        for reply in replies {
            // Every prefix too: replies arrive cut anywhere.
            for end in 0..=reply.len() {
                let buf = &reply[..end];
                assert_eq!(
                    frame_reply(buf),
                    scan_reply(buf),
                    "{:?}",
                    String::from_utf8_lossy(buf)
                );
            }
        }
    }
}
