//! Redis's glob matcher (`stringmatchlen`) for `KEYS`, `SCAN MATCH` and
//! `CONFIG GET`: `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, and `\x` escapes.
//!
//! Iterative with single-star backtracking, so a hostile pattern costs
//! O(pattern * key) time rather than exponential recursion.

fn fold(b: u8, nocase: bool) -> u8 {
    if nocase {
        b.to_ascii_lowercase()
    } else {
        b
    }
}

/// Matches a `[...]` class starting after `[` at `pattern[p]` against `c`.
/// Returns (matched, index after the closing `]`).
fn match_class(pattern: &[u8], mut p: usize, c: u8, nocase: bool) -> (bool, usize) {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    loop {
        match pattern.get(p) {
            // An unterminated class ends at the pattern's end, like Redis.
            None => break,
            Some(b']') => {
                p += 1;
                break;
            }
            Some(b'\\') if p + 1 < pattern.len() => {
                if pattern[p + 1] == c {
                    matched = true;
                }
                p += 2;
            }
            Some(&low) if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() => {
                let high = pattern[p + 2];
                let (low, high) = if low > high { (high, low) } else { (low, high) };
                let (low, high, c) = (fold(low, nocase), fold(high, nocase), fold(c, nocase));
                if low <= c && c <= high {
                    matched = true;
                }
                p += 3;
            }
            Some(&b) => {
                if fold(b, nocase) == fold(c, nocase) {
                    matched = true;
                }
                p += 1;
            }
        }
    }
    (matched != negate, p)
}

/// Whether `string` matches the glob `pattern`.
pub fn glob_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let (mut p, mut s) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, string index).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            let step = match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, s));
                    continue;
                }
                _ if s == string.len() => None,
                b'?' => Some(p + 1),
                b'[' => {
                    let (matched, next) = match_class(pattern, p + 1, string[s], nocase);
                    matched.then_some(next)
                }
                b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == string[s]).then_some(p + 2),
                b => (fold(b, nocase) == fold(string[s], nocase)).then_some(p + 1),
            };
            if let Some(next) = step {
                p = next;
                s += 1;
                continue;
            }
        } else if s == string.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more byte, if any.
        match star {
            Some((star_p, star_s)) if star_s < string.len() => {
                star = Some((star_p, star_s + 1));
                p = star_p;
                s = star_s + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_glob_cases() {
        let yes: &[(&[u8], &[u8])] = &[
            (b"*", b""),
            (b"*", b"anything"),
            (b"h?llo", b"hello"),
            (b"h*llo", b"heeeello"),
            (b"h*llo", b"hllo"),
            (b"h[ae]llo", b"hallo"),
            (b"h[^e]llo", b"hallo"),
            (b"h[a-b]llo", b"hbllo"),
            (b"h[b-a]llo", b"hallo"),
            (b"h\\*llo", b"h*llo"),
            (b"user:*:name", b"user:42:name"),
            (b"*a*b*c*", b"xxaxxbxxcxx"),
        ];
        for (pattern, string) in yes {
            assert!(glob_match(pattern, string, false), "{pattern:?} {string:?}");
        }
        let no: &[(&[u8], &[u8])] = &[
            (b"h?llo", b"hllo"),
            (b"h[ae]llo", b"hillo"),
            (b"h[^e]llo", b"hello"),
            (b"h\\*llo", b"hello"),
            (b"abc", b"abcd"),
            (b"*a*b*c*", b"xxaxxbxx"),
            (b"", b"a"),
        ];
        for (pattern, string) in no {
            assert!(
                !glob_match(pattern, string, false),
                "{pattern:?} {string:?}"
            );
        }
        assert!(glob_match(b"MAX*", b"maxmemory", true));
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let pattern = [b'*', b'a'].repeat(50);
        let string = vec![b'a'; 10_000];
        assert!(!glob_match(&[&pattern[..], b"b"].concat(), &string, false));
    }
}
