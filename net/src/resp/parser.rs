//! Server-side request parser: one complete request at a time, no allocation.
//!
//! A request is either a multibulk array (`*N\r\n$len\r\narg\r\n...`, what
//! every client library sends) or an inline command line (`PING\r\n`, what
//! telnet users and `redis-benchmark`'s `PING_INLINE` send). The parser never
//! copies multibulk arguments: it records each argument as a byte range of the
//! caller's input in a preallocated [`Args`] table. Inline arguments may carry
//! quotes and escapes (Redis's `sdssplitargs`), so their unescaped bytes go to
//! a preallocated scratch buffer of [`INLINE_LEN_MAX`] bytes instead.
//!
//! The parser is restartable rather than incremental: on incomplete input it
//! reports [`Parsed::Incomplete`] and the caller retries once more bytes have
//! arrived. Re-parsing a partial request costs a scan of its header lines
//! only (bulk payloads are skipped by length), which is cheap next to the
//! bookkeeping an incremental state machine would need for every request.

use std::fmt;

/// Most arguments one request may carry. Redis allows 1024*1024 after auth;
/// we preallocate the argument table, so we bound it lower: 64 Ki arguments
/// (an `MSET` of 32 Ki pairs) is 512 KiB of ranges per core, and a larger
/// request is better split by the client anyway.
pub const ARGS_MAX: usize = 64 * 1024;

/// Most arguments a request may carry before the connection authenticated,
/// like Redis 7.2: it keeps unauthenticated peers from making us buffer much.
pub const ARGS_MAX_UNAUTHENTICATED: usize = 10;

/// Largest bulk argument the protocol accepts, Redis's `proto-max-bulk-len`
/// default. Values are further limited by the engine (256 MiB); those get a
/// command-level error rather than a protocol error that closes the link.
pub const BULK_LEN_MAX: usize = 512 << 20;

/// Largest bulk argument before the connection authenticated (Redis 7.2).
pub const BULK_LEN_MAX_UNAUTHENTICATED: usize = 16 * 1024;

/// Largest whole request, Redis's `client-query-buffer-limit` default (a
/// request must sit whole in the connection's buffer before it runs). Also
/// keeps every argument offset within `u32`.
pub const REQUEST_LEN_MAX: usize = 1 << 30;

/// Longest inline request line and longest `*N` / `$N` header line, Redis's
/// `PROTO_INLINE_MAX_SIZE`.
pub const INLINE_LEN_MAX: usize = 64 * 1024;

/// Where an argument's bytes live.
#[derive(Debug, Clone, Copy)]
struct ArgRange {
    start: u32,
    end: u32,
}

/// The argument table of one request: byte ranges into the input (multibulk)
/// or into the inline scratch buffer (inline). Allocated once per core.
#[derive(Debug)]
pub struct Args {
    ranges: Vec<ArgRange>,
    inline: bool,
    scratch: Vec<u8>,
}

impl Default for Args {
    fn default() -> Self {
        Self::new()
    }
}

impl Args {
    /// Allocates the table for [`ARGS_MAX`] arguments and the inline scratch.
    pub fn new() -> Args {
        Args {
            ranges: Vec::with_capacity(ARGS_MAX),
            inline: false,
            scratch: Vec::with_capacity(INLINE_LEN_MAX),
        }
    }

    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The arguments of the request last parsed out of `input`.
    pub fn view<'a>(&'a self, input: &'a [u8]) -> Argv<'a> {
        Argv {
            ranges: &self.ranges,
            source: if self.inline { &self.scratch } else { input },
        }
    }

    fn reset(&mut self, inline: bool) {
        self.ranges.clear();
        self.scratch.clear();
        self.inline = inline;
    }

    fn push(&mut self, start: usize, end: usize) {
        debug_assert!(start <= end);
        debug_assert!(self.ranges.len() < ARGS_MAX);
        // Offsets fit u32: a request is bounded by the connection's buffer,
        // far below 4 GiB (one bulk is at most 512 MiB).
        let start = u32::try_from(start).expect("request offset fits u32");
        let end = u32::try_from(end).expect("request offset fits u32");
        self.ranges.push(ArgRange { start, end });
    }
}

/// A borrowed view of one request's arguments.
#[derive(Clone, Copy)]
pub struct Argv<'a> {
    ranges: &'a [ArgRange],
    source: &'a [u8],
}

impl<'a> Argv<'a> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i` (0 is the command name). Panics when out of range: the
    /// command table's arity check runs before any command reads arguments.
    pub fn get(&self, i: usize) -> &'a [u8] {
        let range = self.ranges[i];
        &self.source[range.start as usize..range.end as usize]
    }

    /// Arguments `from..` as an iterator.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
        let source = self.source;
        self.ranges[from.min(self.ranges.len())..]
            .iter()
            .map(move |r| &source[r.start as usize..r.end as usize])
    }
}

/// Limits that depend on the connection (authenticated or not).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub args_max: usize,
    pub bulk_len_max: usize,
    pub request_len_max: usize,
}

impl Limits {
    pub const AUTHENTICATED: Limits = Limits {
        args_max: ARGS_MAX,
        bulk_len_max: BULK_LEN_MAX,
        request_len_max: REQUEST_LEN_MAX,
    };
    pub const UNAUTHENTICATED: Limits = Limits {
        args_max: ARGS_MAX_UNAUTHENTICATED,
        bulk_len_max: BULK_LEN_MAX_UNAUTHENTICATED,
        request_len_max: REQUEST_LEN_MAX,
    };
}

/// Why the input is not a valid request. Displayed with Redis's wording, to
/// follow `-ERR Protocol error: `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    InvalidMultibulkLength,
    InvalidBulkLength,
    ExpectedDollar { got: u8 },
    ExpectedCrlfAfterBulk,
    TooBigMultibulkCount,
    TooBigBulkCount,
    TooBigInlineRequest,
    UnbalancedQuotes,
    RequestTooLarge,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedDollar { got } => {
                write!(
                    f,
                    "expected '$', got '{}'",
                    char::from(*got).escape_default()
                )
            }
            ProtocolError::ExpectedCrlfAfterBulk => f.write_str("expected CRLF after bulk data"),
            ProtocolError::TooBigMultibulkCount => f.write_str("too big mbulk count string"),
            ProtocolError::TooBigBulkCount => f.write_str("too big bulk count string"),
            ProtocolError::TooBigInlineRequest => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::RequestTooLarge => f.write_str("request too large"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Outcome of one [`parse_request`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// One request of `len` input bytes is in the table. An empty table
    /// (`*0\r\n`, a blank inline line) is a request to skip silently.
    Request { len: usize },
    /// More bytes are needed.
    Incomplete,
    /// The input is not RESP; the connection must be closed.
    Error(ProtocolError),
}

/// Parses the first request out of `input` into `args`.
pub fn parse_request(input: &[u8], args: &mut Args, limits: Limits) -> Parsed {
    match input.first() {
        None => Parsed::Incomplete,
        Some(b'*') => parse_multibulk(input, args, limits),
        Some(_) => parse_inline(input, args),
    }
}

/// Reads a `<prefix><integer>\r\n` header line starting at `pos` (the prefix
/// byte already checked). Returns the integer and the offset after the line.
enum Header {
    Value(i64, usize),
    Incomplete,
    Invalid,
    TooLong,
}

fn read_header(input: &[u8], pos: usize) -> Header {
    let digits_start = pos + 1;
    let window_end = input.len().min(digits_start + INLINE_LEN_MAX);
    let Some(cr) = input[digits_start..window_end]
        .iter()
        .position(|&b| b == b'\r')
    else {
        return if input.len() - digits_start >= INLINE_LEN_MAX {
            Header::TooLong
        } else {
            Header::Incomplete
        };
    };
    let cr = digits_start + cr;
    if cr + 1 >= input.len() {
        return Header::Incomplete;
    }
    if input[cr + 1] != b'\n' {
        return Header::Invalid;
    }
    match parse_i64_strict(&input[digits_start..cr]) {
        Some(value) => Header::Value(value, cr + 2),
        None => Header::Invalid,
    }
}

fn parse_multibulk(input: &[u8], args: &mut Args, limits: Limits) -> Parsed {
    args.reset(false);
    let (count, mut pos) = match read_header(input, 0) {
        Header::Value(count, pos) => (count, pos),
        Header::Incomplete => return Parsed::Incomplete,
        Header::Invalid => return Parsed::Error(ProtocolError::InvalidMultibulkLength),
        Header::TooLong => return Parsed::Error(ProtocolError::TooBigMultibulkCount),
    };
    if count <= 0 {
        return Parsed::Request { len: pos };
    }
    if count as u64 > limits.args_max as u64 {
        return Parsed::Error(ProtocolError::InvalidMultibulkLength);
    }
    for _ in 0..count {
        let Some(&prefix) = input.get(pos) else {
            return Parsed::Incomplete;
        };
        if prefix != b'$' {
            return Parsed::Error(ProtocolError::ExpectedDollar { got: prefix });
        }
        let (len, data_start) = match read_header(input, pos) {
            Header::Value(len, next) => (len, next),
            Header::Incomplete => return Parsed::Incomplete,
            Header::Invalid => return Parsed::Error(ProtocolError::InvalidBulkLength),
            Header::TooLong => return Parsed::Error(ProtocolError::TooBigBulkCount),
        };
        if len < 0 || len as u64 > limits.bulk_len_max as u64 {
            return Parsed::Error(ProtocolError::InvalidBulkLength);
        }
        let data_end = data_start + len as usize;
        if data_end + 2 > limits.request_len_max {
            return Parsed::Error(ProtocolError::RequestTooLarge);
        }
        if data_end + 2 > input.len() {
            return Parsed::Incomplete;
        }
        if &input[data_end..data_end + 2] != b"\r\n" {
            return Parsed::Error(ProtocolError::ExpectedCrlfAfterBulk);
        }
        args.push(data_start, data_end);
        pos = data_end + 2;
    }
    debug_assert_eq!(args.len() as i64, count);
    Parsed::Request { len: pos }
}

fn parse_inline(input: &[u8], args: &mut Args) -> Parsed {
    args.reset(true);
    let window = &input[..input.len().min(INLINE_LEN_MAX + 1)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        return if input.len() > INLINE_LEN_MAX {
            Parsed::Error(ProtocolError::TooBigInlineRequest)
        } else {
            Parsed::Incomplete
        };
    };
    let mut line = &input[..newline];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    match split_inline_args(line, args) {
        Ok(()) => Parsed::Request { len: newline + 1 },
        Err(error) => Parsed::Error(error),
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The index just past the closing quote at `line[quote]`: Redis refuses a
/// closing quote that runs straight into the next argument.
fn after_closing_quote(line: &[u8], quote: usize) -> Result<usize, ProtocolError> {
    debug_assert!(matches!(line[quote], b'"' | b'\''));
    match line.get(quote + 1) {
        Some(&next) if !is_space(next) => Err(ProtocolError::UnbalancedQuotes),
        _ => Ok(quote + 1),
    }
}

/// Redis's `sdssplitargs`: spaces separate arguments; `"..."` supports
/// `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a` and `\<any>`; `'...'` supports `\'`;
/// a closing quote must be followed by a space or the end of the line.
fn split_inline_args(line: &[u8], args: &mut Args) -> Result<(), ProtocolError> {
    debug_assert!(line.len() <= INLINE_LEN_MAX);
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        if args.ranges.len() == ARGS_MAX {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        let start = args.scratch.len();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                let Some(&c) = line.get(i) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' {
                    if let (Some(h), Some(l)) = (hex_value(line[i + 2]), hex_value(line[i + 3])) {
                        args.scratch.push(h * 16 + l);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < line.len() {
                    let escaped = match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    };
                    args.scratch.push(escaped);
                    i += 2;
                } else if c == b'"' {
                    i = after_closing_quote(line, i)?;
                    break;
                } else {
                    args.scratch.push(c);
                    i += 1;
                }
            } else if in_single {
                let Some(&c) = line.get(i) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\' && i + 1 < line.len() && line[i + 1] == b'\'' {
                    args.scratch.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    i = after_closing_quote(line, i)?;
                    break;
                } else {
                    args.scratch.push(c);
                    i += 1;
                }
            } else {
                match line.get(i) {
                    None => break,
                    Some(&c) if is_space(c) => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(&c) => args.scratch.push(c),
                }
                i += 1;
            }
        }
        let end = args.scratch.len();
        args.push(start, end);
    }
}

/// Redis's `string2ll`: optional `-`, digits, no leading zeros, no `+`, no
/// spaces, within i64.
pub fn parse_i64_strict(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || negative) {
        return None;
    }
    let mut value: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    if negative {
        if value > i64::MAX as u64 + 1 {
            return None;
        }
        Some((value as i64).wrapping_neg())
    } else {
        i64::try_from(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> (Parsed, Vec<Vec<u8>>) {
        let mut args = Args::new();
        let parsed = parse_request(input, &mut args, Limits::AUTHENTICATED);
        let argv = args.view(input);
        let list = (0..argv.len()).map(|i| argv.get(i).to_vec()).collect();
        (parsed, list)
    }

    #[test]
    fn multibulk_complete_and_incomplete() {
        let req = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        let (parsed, argv) = parse(req);
        assert_eq!(parsed, Parsed::Request { len: req.len() });
        assert_eq!(argv, vec![b"GET".to_vec(), b"key".to_vec()]);
        for cut in 0..req.len() {
            assert_eq!(parse(&req[..cut]).0, Parsed::Incomplete, "cut {cut}");
        }
    }

    #[test]
    fn multibulk_errors_use_redis_wording() {
        let cases: &[(&[u8], &str)] = &[
            (b"*x\r\n", "invalid multibulk length"),
            (b"*99999999\r\n", "invalid multibulk length"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (b"*1\r\n$999999999999\r\n", "invalid bulk length"),
            (b"*1\r\n+3\r\n", "expected '$', got '+'"),
            (b"*1\r\n$3\r\nabcd\r\n", "expected CRLF after bulk data"),
        ];
        for (input, message) in cases {
            match parse(input).0 {
                Parsed::Error(error) => assert_eq!(error.to_string(), *message),
                other => panic!("{other:?} for {input:?}"),
            }
        }
    }

    #[test]
    fn requests_are_bounded() {
        let limits = Limits {
            request_len_max: 32,
            ..Limits::AUTHENTICATED
        };
        let mut args = Args::new();
        let fits = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        assert!(matches!(
            parse_request(fits, &mut args, limits),
            Parsed::Request { .. }
        ));
        let too_big = b"*2\r\n$3\r\nGET\r\n$20\r\n";
        assert_eq!(
            parse_request(too_big, &mut args, limits),
            Parsed::Error(ProtocolError::RequestTooLarge)
        );
        assert!(REQUEST_LEN_MAX < u32::MAX as usize);
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        assert_eq!(parse(b"*0\r\n").0, Parsed::Request { len: 4 });
        assert_eq!(parse(b"*-1\r\n").0, Parsed::Request { len: 5 });
    }

    #[test]
    fn unauthenticated_limits() {
        let mut args = Args::new();
        let parsed = parse_request(b"*11\r\n", &mut args, Limits::UNAUTHENTICATED);
        assert_eq!(parsed, Parsed::Error(ProtocolError::InvalidMultibulkLength));
        let parsed = parse_request(b"*1\r\n$16385\r\n", &mut args, Limits::UNAUTHENTICATED);
        assert_eq!(parsed, Parsed::Error(ProtocolError::InvalidBulkLength));
    }

    #[test]
    fn inline_with_quotes() {
        let (parsed, argv) = parse(b"SET \"a b\\x41\\n\" 'it\\'s'  x\r\nrest");
        assert_eq!(parsed, Parsed::Request { len: 28 });
        assert_eq!(
            argv,
            vec![
                b"SET".to_vec(),
                b"a bA\n".to_vec(),
                b"it's".to_vec(),
                b"x".to_vec()
            ]
        );
        assert_eq!(parse(b"PING\n").1, vec![b"PING".to_vec()]);
        assert_eq!(parse(b"PING").0, Parsed::Incomplete);
        assert_eq!(parse(b"\r\n").0, Parsed::Request { len: 2 });
        assert_eq!(
            parse(b"SET \"abc\r\n").0,
            Parsed::Error(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            parse(b"SET \"abc\"x\r\n").0,
            Parsed::Error(ProtocolError::UnbalancedQuotes)
        );
        let long = vec![b'a'; INLINE_LEN_MAX + 1];
        assert_eq!(
            parse(&long).0,
            Parsed::Error(ProtocolError::TooBigInlineRequest)
        );
    }

    #[test]
    fn strict_integers() {
        assert_eq!(parse_i64_strict(b"0"), Some(0));
        assert_eq!(parse_i64_strict(b"-12"), Some(-12));
        assert_eq!(parse_i64_strict(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64_strict(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1a",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_i64_strict(bad), None, "{bad:?}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn encode(args: &[Vec<u8>]) -> Vec<u8> {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            crate::client::resp::encode_command(&mut out, &args);
            out
        }

        proptest! {
            #[test]
            fn multibulk_round_trips(
                args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..12),
            ) {
                let input = encode(&args);
                let mut table = Args::new();
                let parsed = parse_request(&input, &mut table, Limits::AUTHENTICATED);
                prop_assert_eq!(parsed, Parsed::Request { len: input.len() });
                let argv = table.view(&input);
                let got: Vec<Vec<u8>> = (0..argv.len()).map(|i| argv.get(i).to_vec()).collect();
                prop_assert_eq!(got, args);
                for cut in 0..input.len() {
                    let parsed = parse_request(&input[..cut], &mut table, Limits::AUTHENTICATED);
                    prop_assert_eq!(parsed, Parsed::Incomplete);
                }
            }

            #[test]
            fn garbage_never_panics(input in prop::collection::vec(any::<u8>(), 0..256)) {
                let mut table = Args::new();
                if let Parsed::Request { len } =
                    parse_request(&input, &mut table, Limits::AUTHENTICATED)
                {
                    prop_assert!(len > 0 && len <= input.len());
                }
            }
        }
    }
}
