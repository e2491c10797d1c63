//! The ceiling responder: a [`Handler`] that answers `+OK` to every complete
//! request and does nothing else.
//!
//! It runs on the very same network loop as the real command layer, so the
//! gap between `tessera --ceiling` and `tessera` under the same load is what
//! the command layer and the store cost, and the ceiling itself is what one
//! core can do over loopback at all. To keep it honest it still frames
//! requests exactly (multibulk `*<n>\r\n$<len>\r\n...` and inline lines), so
//! pipelines of any depth get one reply per request, and it still rejects
//! malformed framing with `-ERR Protocol error` like the real server. It does
//! not split arguments or look at them.

use crate::handler::{Handled, Handler};

/// Largest argument count accepted in one multibulk request (Redis' limit).
pub const MULTIBULK_ARGS_MAX: u64 = 1024 * 1024;
/// Largest bulk string accepted (Redis' `proto-max-bulk-len`).
pub const BULK_LEN_MAX: u64 = 512 * 1024 * 1024;
/// Longest inline request or header line.
pub const INLINE_LEN_MAX: usize = 64 * 1024;

const REPLY_OK: &[u8] = b"+OK\r\n";

/// Answers `+OK\r\n` to every request. Stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ceiling;

impl Handler for Ceiling {
    type Conn = ();
    /// Nothing is stored, so nothing can fail to persist.
    type CommitError = std::convert::Infallible;

    fn open(&mut self, _conn_id: u64) {}

    fn handle(&mut self, _conn: &mut (), input: &[u8], out: &mut Vec<u8>) -> Handled {
        let mut consumed = 0;
        loop {
            match frame_len(&input[consumed..]) {
                Ok(Some(len)) => {
                    assert!(len > 0 && consumed + len <= input.len());
                    consumed += len;
                    out.extend_from_slice(REPLY_OK);
                }
                Ok(None) => {
                    return Handled {
                        consumed,
                        close: false,
                    }
                }
                Err(error) => {
                    out.extend_from_slice(b"-ERR Protocol error: ");
                    out.extend_from_slice(error.as_bytes());
                    out.extend_from_slice(b"\r\n");
                    return Handled {
                        consumed: input.len(),
                        close: true,
                    };
                }
            }
        }
    }

    async fn commit(&mut self) -> Result<(), Self::CommitError> {
        Ok(())
    }

    fn round_failed(
        &mut self,
        _conn: &mut (),
        _out: &mut Vec<u8>,
        _round_start: usize,
        error: &Self::CommitError,
    ) {
        match *error {}
    }

    async fn maintain(&mut self) {}

    fn idle_wake_after(&self) -> Option<std::time::Duration> {
        None
    }

    async fn shutdown(&mut self) -> Result<(), Self::CommitError> {
        Ok(())
    }

    fn close(&mut self, _conn: ()) {}
}

/// Length of the first complete request in `input`, `None` if it is not
/// complete yet, or why the framing is invalid.
pub fn frame_len(input: &[u8]) -> Result<Option<usize>, &'static str> {
    let Some(&first) = input.first() else {
        return Ok(None);
    };
    if first != b'*' {
        return inline_len(input);
    }
    let Some((count, mut at)) = header(input, b'*')? else {
        return Ok(None);
    };
    if count > MULTIBULK_ARGS_MAX {
        return Err("invalid multibulk length");
    }
    for _ in 0..count {
        if at >= input.len() {
            return Ok(None);
        }
        if input[at] != b'$' {
            return Err("expected '$'");
        }
        let Some((len, header_len)) = header(&input[at..], b'$')? else {
            return Ok(None);
        };
        if len > BULK_LEN_MAX {
            return Err("invalid bulk length");
        }
        // len <= BULK_LEN_MAX, so this cannot overflow.
        let end = at + header_len + len as usize + 2;
        if end > input.len() {
            return Ok(None);
        }
        if &input[end - 2..end] != b"\r\n" {
            return Err("bulk string not terminated by CRLF");
        }
        at = end;
    }
    Ok(Some(at))
}

/// Parses `<sigil><decimal>\r\n`, returning the number and the header length.
fn header(input: &[u8], sigil: u8) -> Result<Option<(u64, usize)>, &'static str> {
    assert_eq!(input[0], sigil);
    let window = &input[..input.len().min(32)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if window.len() == 32 {
            return Err("header line too long");
        }
        return Ok(None);
    };
    if lf < 2 || input[lf - 1] != b'\r' {
        return Err("header not terminated by CRLF");
    }
    let digits = &input[1..lf - 1];
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(if sigil == b'*' {
                "invalid multibulk length"
            } else {
                "invalid bulk length"
            });
        }
        value = value * 10 + u64::from(d - b'0');
        if value > BULK_LEN_MAX.max(MULTIBULK_ARGS_MAX) {
            return Err("length out of range");
        }
    }
    if digits.is_empty() {
        return Err("empty length");
    }
    Ok(Some((value, lf + 1)))
}

fn inline_len(input: &[u8]) -> Result<Option<usize>, &'static str> {
    match input.iter().take(INLINE_LEN_MAX).position(|&b| b == b'\n') {
        Some(lf) => Ok(Some(lf + 1)),
        None if input.len() >= INLINE_LEN_MAX => Err("too big inline request"),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(input: &[u8]) -> (Handled, Vec<u8>) {
        let mut out = Vec::new();
        let handled = Ceiling.handle(&mut (), input, &mut out);
        (handled, out)
    }

    #[test]
    fn one_reply_per_pipelined_request() {
        let input =
            b"*1\r\n$4\r\nPING\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*2\r\n$3\r\nGE";
        let (handled, out) = handle(input);
        assert_eq!(out, b"+OK\r\n+OK\r\n+OK\r\n");
        assert!(!handled.close);
        assert_eq!(&input[handled.consumed..], b"*2\r\n$3\r\nGE");
    }

    #[test]
    fn incomplete_at_every_split_point() {
        let request = b"*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n";
        for cut in 0..request.len() {
            assert_eq!(frame_len(&request[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(frame_len(request), Ok(Some(request.len())));
    }

    #[test]
    fn garbage_is_a_protocol_error_and_closes() {
        for bad in [
            &b"*x\r\n"[..],
            b"*1\r\n+PING\r\n",
            b"*1\r\n$4\r\nPINGxx",
            b"*99999999\r\n",
        ] {
            let (handled, out) = handle(bad);
            assert!(handled.close, "{bad:?}");
            assert_eq!(handled.consumed, bad.len());
            assert!(out.starts_with(b"-ERR Protocol error"), "{bad:?}");
        }
    }

    #[test]
    fn inline_line_limit() {
        let long = vec![b'a'; INLINE_LEN_MAX];
        assert!(frame_len(&long).is_err());
        assert_eq!(frame_len(&long[..INLINE_LEN_MAX - 1]), Ok(None));
    }
}
