//! Reply writer: RESP2 or RESP3 frames appended to a connection's output.
//!
//! Commands describe replies in RESP3 terms (map, set, null, double,
//! boolean); the writer lowers them to RESP2 when the connection did not
//! negotiate `HELLO 3`, the way Redis does: a map becomes a flat array of
//! twice the length, a set an array, a null `$-1` (or `*-1` for a null
//! array), a double a bulk string and a boolean the integer 0 or 1.
//!
//! Nothing here allocates beyond the output vector's own growth: integers
//! are formatted on the stack, and the vector is reused across rounds.

use std::io::Write as _;

/// The protocol version a connection speaks, chosen with `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// Longest decimal form of an `i64` (`-9223372036854775808`).
const I64_DECIMAL_LEN_MAX: usize = 20;

/// Formats `value` in decimal into `buf`, returning the used tail.
pub fn format_i64(value: i64, buf: &mut [u8; I64_DECIMAL_LEN_MAX]) -> &[u8] {
    let mut magnitude = value.unsigned_abs();
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        pos -= 1;
        buf[pos] = b'-';
    }
    &buf[pos..]
}

/// Appends replies to `out` in the connection's protocol.
pub struct Reply<'a> {
    pub out: &'a mut Vec<u8>,
    pub proto: Protocol,
}

impl<'a> Reply<'a> {
    pub fn new(out: &'a mut Vec<u8>, proto: Protocol) -> Reply<'a> {
        Reply { out, proto }
    }

    fn line(&mut self, prefix: u8, value: i64) {
        let mut buf = [0u8; I64_DECIMAL_LEN_MAX];
        self.out.push(prefix);
        self.out.extend_from_slice(format_i64(value, &mut buf));
        self.out.extend_from_slice(b"\r\n");
    }

    fn len_line(&mut self, prefix: u8, len: usize) {
        self.line(prefix, i64::try_from(len).expect("reply length fits i64"));
    }

    /// `+text`: `text` must not contain CR or LF.
    pub fn simple(&mut self, text: &[u8]) {
        debug_assert!(!text.iter().any(|&b| b == b'\r' || b == b'\n'));
        self.out.push(b'+');
        self.out.extend_from_slice(text);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// `-text`: `text` starts with the error code (`ERR`, `MOVED`, ...).
    /// CR and LF would end the frame early, so they are replaced by spaces
    /// (Redis does the same to errors echoing user input).
    pub fn error(&mut self, text: &[u8]) {
        self.out.push(b'-');
        let start = self.out.len();
        self.out.extend_from_slice(text);
        for b in &mut self.out[start..] {
            if *b == b'\r' || *b == b'\n' {
                *b = b' ';
            }
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// An error built with `format_args!`; for rare paths only (formatting
    /// goes through `io::Write` on the output vector, no `String`).
    pub fn error_fmt(&mut self, args: std::fmt::Arguments<'_>) {
        self.out.push(b'-');
        let start = self.out.len();
        self.out
            .write_fmt(args)
            .expect("writing to a Vec cannot fail");
        for b in &mut self.out[start..] {
            if *b == b'\r' || *b == b'\n' {
                *b = b' ';
            }
        }
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, value: i64) {
        self.line(b':', value);
    }

    pub fn bulk(&mut self, bytes: &[u8]) {
        self.len_line(b'$', bytes.len());
        self.out.extend_from_slice(bytes);
        self.out.extend_from_slice(b"\r\n");
    }

    /// A bulk string holding the decimal form of `value`.
    pub fn bulk_i64(&mut self, value: i64) {
        let mut buf = [0u8; I64_DECIMAL_LEN_MAX];
        let digits = format_i64(value, &mut buf);
        self.len_line(b'$', digits.len());
        self.out.extend_from_slice(digits);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Starts a bulk string of `len` bytes that the caller appends to `out`
    /// before calling [`Reply::bulk_end`].
    pub fn bulk_start(&mut self, len: usize) {
        self.len_line(b'$', len);
    }

    pub fn bulk_end(&mut self) {
        self.out.extend_from_slice(b"\r\n");
    }

    /// The null reply: `_` in RESP3, a null bulk string in RESP2.
    pub fn null(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.out.extend_from_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    /// The null reply where RESP2 expects a null array (`*-1`).
    pub fn null_array(&mut self) {
        match self.proto {
            Protocol::Resp2 => self.out.extend_from_slice(b"*-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    pub fn array(&mut self, len: usize) {
        self.len_line(b'*', len);
    }

    /// A map of `len` key/value pairs; the caller writes `2 * len` items.
    pub fn map(&mut self, len: usize) {
        match self.proto {
            Protocol::Resp2 => self.len_line(b'*', 2 * len),
            Protocol::Resp3 => self.len_line(b'%', len),
        }
    }

    pub fn set(&mut self, len: usize) {
        match self.proto {
            Protocol::Resp2 => self.len_line(b'*', len),
            Protocol::Resp3 => self.len_line(b'~', len),
        }
    }

    pub fn boolean(&mut self, value: bool) {
        match (self.proto, value) {
            (Protocol::Resp2, value) => self.int(i64::from(value)),
            (Protocol::Resp3, true) => self.out.extend_from_slice(b"#t\r\n"),
            (Protocol::Resp3, false) => self.out.extend_from_slice(b"#f\r\n"),
        }
    }

    /// A double: `,value` in RESP3, a bulk string in RESP2. Uses Rust's
    /// shortest round-trip form, which never uses an exponent, matching how
    /// Redis prints `INCRBYFLOAT` results.
    pub fn double(&mut self, value: f64) {
        debug_assert!(value.is_finite());
        let mut buf = [0u8; DOUBLE_TEXT_LEN_MAX];
        let text = format_f64(value, &mut buf);
        match self.proto {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                self.out.push(b',');
                self.out.extend_from_slice(text);
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// Room for any finite f64 in plain decimal form (up to 309 integer digits
/// plus up to 17 significant fraction digits after leading zeros).
pub const DOUBLE_TEXT_LEN_MAX: usize = 400;

/// Formats a finite `value` in plain decimal (no exponent) into `buf`.
pub fn format_f64(value: f64, buf: &mut [u8; DOUBLE_TEXT_LEN_MAX]) -> &[u8] {
    debug_assert!(value.is_finite());
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{value}").expect("a finite f64 fits the buffer");
    let len = cursor.position() as usize;
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(proto: Protocol, f: impl FnOnce(&mut Reply<'_>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut Reply::new(&mut out, proto));
        out
    }

    #[test]
    fn integers() {
        let mut buf = [0u8; I64_DECIMAL_LEN_MAX];
        for v in [0i64, 7, -7, 10, 1234567890, i64::MAX, i64::MIN] {
            assert_eq!(format_i64(v, &mut buf), v.to_string().as_bytes());
        }
        assert_eq!(with(Protocol::Resp2, |r| r.int(-42)), b":-42\r\n");
    }

    #[test]
    fn resp2_lowering() {
        assert_eq!(with(Protocol::Resp2, |r| r.null()), b"$-1\r\n");
        assert_eq!(with(Protocol::Resp2, |r| r.null_array()), b"*-1\r\n");
        assert_eq!(with(Protocol::Resp2, |r| r.map(2)), b"*4\r\n");
        assert_eq!(with(Protocol::Resp2, |r| r.set(3)), b"*3\r\n");
        assert_eq!(with(Protocol::Resp2, |r| r.boolean(true)), b":1\r\n");
        assert_eq!(with(Protocol::Resp2, |r| r.double(1.5)), b"$3\r\n1.5\r\n");
    }

    #[test]
    fn resp3_types() {
        assert_eq!(with(Protocol::Resp3, |r| r.null()), b"_\r\n");
        assert_eq!(with(Protocol::Resp3, |r| r.null_array()), b"_\r\n");
        assert_eq!(with(Protocol::Resp3, |r| r.map(2)), b"%2\r\n");
        assert_eq!(with(Protocol::Resp3, |r| r.set(3)), b"~3\r\n");
        assert_eq!(with(Protocol::Resp3, |r| r.boolean(false)), b"#f\r\n");
        assert_eq!(with(Protocol::Resp3, |r| r.double(3.0)), b",3\r\n");
    }

    #[test]
    fn errors_never_break_frames() {
        assert_eq!(
            with(Protocol::Resp2, |r| r.error(b"ERR a\r\nb")),
            b"-ERR a  b\r\n"
        );
        assert_eq!(
            with(Protocol::Resp2, |r| r.error_fmt(format_args!("ERR {}", 5))),
            b"-ERR 5\r\n"
        );
    }

    #[test]
    fn doubles_have_no_exponent() {
        let mut buf = [0u8; DOUBLE_TEXT_LEN_MAX];
        assert_eq!(format_f64(1e21, &mut buf), b"1000000000000000000000");
        assert_eq!(format_f64(10.6, &mut buf), b"10.6");
        assert_eq!(format_f64(-0.0001, &mut buf), b"-0.0001");
        assert!(format_f64(f64::MAX, &mut buf).len() < DOUBLE_TEXT_LEN_MAX);
        assert!(format_f64(f64::MIN_POSITIVE, &mut buf).len() < DOUBLE_TEXT_LEN_MAX);
    }
}
