//! Argument parsing shared by the command families.

use crate::resp::parse_i64_strict;

/// An integer argument, Redis's strict rules (`string2ll`).
pub fn int(arg: &[u8]) -> Option<i64> {
    parse_i64_strict(arg)
}

/// Whether `arg` is `word` in any case (`word` is uppercase ASCII).
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Longest text we accept as a float argument (`INCRBYFLOAT`); Redis
/// rejects longer ones too (`MAX_LONG_DOUBLE_CHARS`).
pub const FLOAT_TEXT_LEN_MAX: usize = 5 * 1024;

/// A finite float argument: decimal or exponent notation, no spaces, no
/// `nan`/`inf` (they can never yield a storable result).
pub fn float(arg: &[u8]) -> Option<f64> {
    if arg.is_empty() || arg.len() > FLOAT_TEXT_LEN_MAX {
        return None;
    }
    if !arg
        .iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    let text = std::str::from_utf8(arg).ok()?;
    let value: f64 = text.parse().ok()?;
    value.is_finite().then_some(value)
}

/// Milliseconds per unit of an expiry argument.
pub const SECONDS: i64 = 1000;
pub const MILLISECONDS: i64 = 1;

/// The absolute deadline (Unix ms, may be negative = long past) of an expiry
/// argument: `amount` units, relative to `now_ms` unless absolute. `None`
/// when it overflows (Redis's "invalid expire time").
pub fn deadline_ms(amount: i64, unit_ms: i64, relative_to_ms: Option<u64>) -> Option<i64> {
    let ms = amount.checked_mul(unit_ms)?;
    match relative_to_ms {
        None => Some(ms),
        Some(now_ms) => ms.checked_add(i64::try_from(now_ms).ok()?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats() {
        assert_eq!(float(b"1.5"), Some(1.5));
        assert_eq!(float(b"-2e3"), Some(-2000.0));
        assert_eq!(float(b"5"), Some(5.0));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"nan",
            b"inf",
            b"1e999",
            b"abc",
            b"0x10",
        ] {
            assert_eq!(float(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn words() {
        assert!(is(b"ex", "EX"));
        assert!(!is(b"exa", "EX"));
    }
}
