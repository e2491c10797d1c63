//! Keyspace commands: DEL, EXISTS, expiry (EXPIRE family, TTL, PERSIST),
//! TYPE, and the ordered walks SCAN, KEYS and TRANGE (this core only).

use std::ops::Bound;

use super::args::{self, MILLISECONDS, SECONDS};
use super::glob::glob_match;
use super::keyspace::{self, KeyRecord};
use super::Ctx;

/// Records `TRANGE` returns when no `COUNT` is given.
pub const TRANGE_COUNT_DEFAULT: usize = 100;
/// Most records one `TRANGE` returns: bounds one reply's size and the time a
/// core spends on it.
pub const TRANGE_COUNT_MAX: usize = 10_000;
/// Keys `SCAN` examines when no `COUNT` is given (Redis's default).
pub const SCAN_COUNT_DEFAULT: usize = 10;
/// Most keys one `SCAN` examines, whatever `COUNT` asks: bounds the time a
/// core spends on one call.
pub const SCAN_COUNT_MAX: usize = 100_000;

pub fn del(ctx: &mut Ctx<'_>) {
    let mut deleted = 0i64;
    for i in 1..ctx.argv.len() {
        let key = ctx.argv.get(i);
        if !ctx.core.keyspace.exists(key) {
            continue;
        }
        if let Err(error) = ctx.core.keyspace.delete(key) {
            ctx.err_write(error);
            return;
        }
        deleted += 1;
    }
    ctx.reply.int(deleted);
}

pub fn exists(ctx: &mut Ctx<'_>) {
    let count = ctx
        .argv
        .iter_from(1)
        .filter(|key| ctx.core.keyspace.exists(key))
        .count();
    ctx.reply.int(count as i64);
}

pub fn type_(ctx: &mut Ctx<'_>) {
    if ctx.core.keyspace.exists(ctx.argv.get(1)) {
        ctx.reply.simple(b"string");
    } else {
        ctx.reply.simple(b"none");
    }
}

/// Rewrites `key` with its current value and a new expiry (`None` =
/// persistent; a past deadline deletes it). The key must exist.
fn rewrite_expiry(ctx: &mut Ctx<'_>, key: &[u8], deadline_ms: Option<i64>) -> bool {
    let now_ms = ctx.core.now_ms() as i64;
    let staged = match deadline_ms {
        Some(at_ms) if at_ms <= now_ms => ctx.core.keyspace.delete(key),
        _ => {
            let Some(record) = ctx.core.keyspace.lookup(key) else {
                unreachable!("rewrite_expiry of a missing key");
            };
            ctx.core.scratch.clear();
            ctx.core.scratch.extend_from_slice(record.value);
            let value = &ctx.core.scratch;
            let at_ms = deadline_ms.map(|at| at as u64);
            ctx.core
                .keyspace
                .set_with(key, value.len(), at_ms, |buf| buf.copy_from_slice(value))
        }
    };
    match staged {
        Ok(()) => true,
        Err(error) => {
            ctx.err_write(error);
            false
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpireCondition {
    Always,
    NoExpiry,
    HasExpiry,
    Greater,
    Less,
}

fn expire_generic(ctx: &mut Ctx<'_>, unit_ms: i64, absolute: bool, command: &str) {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for i in 3..ctx.argv.len() {
        let option = ctx.argv.get(i);
        if args::is(option, "NX") {
            nx = true;
        } else if args::is(option, "XX") {
            xx = true;
        } else if args::is(option, "GT") {
            gt = true;
        } else if args::is(option, "LT") {
            lt = true;
        } else {
            let shown = String::from_utf8_lossy(&option[..option.len().min(128)]).into_owned();
            ctx.reply
                .error_fmt(format_args!("ERR Unsupported option {shown}"));
            return;
        }
    }
    if nx && (xx || gt || lt) {
        ctx.reply
            .error(b"ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if gt && lt {
        ctx.reply
            .error(b"ERR GT and LT options at the same time are not compatible");
        return;
    }
    let condition = match (nx, xx, gt, lt) {
        (true, ..) => ExpireCondition::NoExpiry,
        (_, _, true, _) => ExpireCondition::Greater,
        (_, _, _, true) => ExpireCondition::Less,
        (_, true, ..) => ExpireCondition::HasExpiry,
        _ => ExpireCondition::Always,
    };
    let Some(amount) = args::int(ctx.argv.get(2)) else {
        ctx.err_not_integer();
        return;
    };
    let relative_to = (!absolute).then_some(ctx.core.now_ms());
    let Some(deadline_ms) = args::deadline_ms(amount, unit_ms, relative_to) else {
        ctx.reply.error_fmt(format_args!(
            "ERR invalid expire time in '{command}' command"
        ));
        return;
    };
    let key = ctx.argv.get(1);
    let Some(record) = ctx.core.keyspace.lookup(key) else {
        ctx.reply.int(0);
        return;
    };
    let current = record.expire_at_ms.map(|at| at as i64);
    // XX combined with GT/LT also requires an existing expiry.
    if xx && current.is_none() {
        ctx.reply.int(0);
        return;
    }
    let allowed = match condition {
        ExpireCondition::Always | ExpireCondition::HasExpiry => true,
        ExpireCondition::NoExpiry => current.is_none(),
        // No expiry counts as infinite.
        ExpireCondition::Greater => current.is_some_and(|at| deadline_ms > at),
        ExpireCondition::Less => current.map_or(true, |at| deadline_ms < at),
    };
    if !allowed {
        ctx.reply.int(0);
        return;
    }
    if rewrite_expiry(ctx, key, Some(deadline_ms)) {
        ctx.reply.int(1);
    }
}

pub fn expire(ctx: &mut Ctx<'_>) {
    expire_generic(ctx, SECONDS, false, "expire");
}

pub fn pexpire(ctx: &mut Ctx<'_>) {
    expire_generic(ctx, MILLISECONDS, false, "pexpire");
}

pub fn expireat(ctx: &mut Ctx<'_>) {
    expire_generic(ctx, SECONDS, true, "expireat");
}

pub fn pexpireat(ctx: &mut Ctx<'_>) {
    expire_generic(ctx, MILLISECONDS, true, "pexpireat");
}

/// -2 when the key is missing, -1 when it has no expiry, else `f(deadline)`.
fn expiry_reply(ctx: &mut Ctx<'_>, f: impl FnOnce(u64, u64) -> i64) {
    let now_ms = ctx.core.now_ms();
    let reply = match ctx.core.keyspace.lookup(ctx.argv.get(1)) {
        None => -2,
        Some(record) => match record.expire_at_ms {
            None => -1,
            Some(at_ms) => f(at_ms, now_ms),
        },
    };
    ctx.reply.int(reply);
}

pub fn ttl(ctx: &mut Ctx<'_>) {
    expiry_reply(ctx, |at_ms, now_ms| {
        (at_ms.saturating_sub(now_ms).saturating_add(500) / 1000) as i64
    });
}

pub fn pttl(ctx: &mut Ctx<'_>) {
    expiry_reply(ctx, |at_ms, now_ms| at_ms.saturating_sub(now_ms) as i64);
}

pub fn expiretime(ctx: &mut Ctx<'_>) {
    expiry_reply(ctx, |at_ms, _| (at_ms / 1000) as i64);
}

pub fn pexpiretime(ctx: &mut Ctx<'_>) {
    expiry_reply(ctx, |at_ms, _| at_ms as i64);
}

pub fn persist(ctx: &mut Ctx<'_>) {
    let key = ctx.argv.get(1);
    let has_expiry = ctx
        .core
        .keyspace
        .lookup(key)
        .is_some_and(|record| record.expire_at_ms.is_some());
    if !has_expiry {
        ctx.reply.int(0);
    } else if rewrite_expiry(ctx, key, None) {
        ctx.reply.int(1);
    }
}

/// An unsigned cursor (Redis parses it with `strtoull`).
fn parse_cursor(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() || arg.len() > 20 || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
pub fn scan(ctx: &mut Ctx<'_>) {
    let Some(cursor) = parse_cursor(ctx.argv.get(1)) else {
        ctx.reply.error(b"ERR invalid cursor");
        return;
    };
    let mut pattern: Option<usize> = None;
    let mut count = SCAN_COUNT_DEFAULT;
    let mut strings_wanted = true;
    let mut i = 2;
    while i < ctx.argv.len() {
        let option = ctx.argv.get(i);
        if i + 1 >= ctx.argv.len() {
            ctx.err_syntax();
            return;
        }
        if args::is(option, "MATCH") {
            pattern = Some(i + 1);
        } else if args::is(option, "COUNT") {
            match args::int(ctx.argv.get(i + 1)) {
                None => {
                    ctx.err_not_integer();
                    return;
                }
                Some(n) if n < 1 => {
                    ctx.err_syntax();
                    return;
                }
                Some(n) => count = usize::try_from(n).unwrap_or(usize::MAX).min(SCAN_COUNT_MAX),
            }
        } else if args::is(option, "TYPE") {
            // Every Tessera value is a string.
            strings_wanted = args::is(ctx.argv.get(i + 1), "STRING");
        } else {
            ctx.err_syntax();
            return;
        }
        i += 2;
    }
    ctx.core.scratch.clear();
    if cursor != 0 {
        let Some(last_key) = ctx.core.scan.resume(cursor) else {
            ctx.reply.error(b"ERR invalid cursor");
            return;
        };
        ctx.core.scratch.extend_from_slice(last_key);
    }
    let snapshot = ctx.core.keyspace.snapshot();
    let start = if cursor == 0 {
        Bound::Unbounded
    } else {
        Bound::Excluded(ctx.core.scratch.as_slice())
    };
    let pattern = pattern.map(|i| ctx.argv.get(i));
    let wanted = |record: &KeyRecord<'_>| {
        strings_wanted && pattern.map_or(true, |p| glob_match(p, record.key, false))
    };
    let examined = || keyspace::range(&snapshot, start, Bound::Unbounded, false).take(count);
    let mut matches = 0;
    let mut last_key: Option<&[u8]> = None;
    for record in examined() {
        matches += usize::from(wanted(&record));
        last_key = Some(record.key);
    }
    let more = keyspace::range(&snapshot, start, Bound::Unbounded, false)
        .nth(count)
        .is_some();
    let next_cursor = match (more, last_key) {
        (true, Some(last_key)) => ctx.core.scan.save(last_key),
        _ => 0,
    };
    ctx.reply.array(2);
    ctx.reply.bulk_i64(next_cursor as i64);
    ctx.reply.array(matches);
    for record in examined().filter(|r| wanted(r)) {
        ctx.reply.bulk(record.key);
    }
}

pub fn keys(ctx: &mut Ctx<'_>) {
    let pattern = ctx.argv.get(1);
    let snapshot = ctx.core.keyspace.snapshot();
    let matching =
        || keyspace::all(&snapshot).filter(|record| glob_match(pattern, record.key, false));
    ctx.reply.array(matching().count());
    for record in matching() {
        ctx.reply.bulk(record.key);
    }
}

/// A TRANGE bound: `-`/`+` unbounded, `[key` inclusive, `(key` exclusive.
/// `None` for an invalid bound; `Some(None)` for a bound no key satisfies
/// (`+` as the start, `-` as the end).
fn parse_bound(arg: &[u8], is_start: bool) -> Option<Option<Bound<&[u8]>>> {
    match arg.split_first() {
        Some((b'-', [])) => Some(is_start.then_some(Bound::Unbounded)),
        Some((b'+', [])) => Some((!is_start).then_some(Bound::Unbounded)),
        Some((b'[', key)) => Some(Some(Bound::Included(key))),
        Some((b'(', key)) => Some(Some(Bound::Excluded(key))),
        _ => None,
    }
}

/// Whether a range between `start` and `end` can hold any key (the engine,
/// like `BTreeMap`, must not be asked for an inverted range).
fn range_nonempty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s <= e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s < e,
        _ => true,
    }
}

/// TRANGE start end [COUNT n] [REV]: this core's live records between two
/// bounds in key order (descending with REV), as `[[key, value, ...], next]`
/// where `next` is the key to continue from (inclusive; nil when done).
pub fn trange(ctx: &mut Ctx<'_>) {
    let mut count = TRANGE_COUNT_DEFAULT;
    let mut reverse = false;
    let mut i = 3;
    while i < ctx.argv.len() {
        let option = ctx.argv.get(i);
        if args::is(option, "REV") {
            reverse = true;
            i += 1;
        } else if args::is(option, "COUNT") && i + 1 < ctx.argv.len() {
            match args::int(ctx.argv.get(i + 1)) {
                Some(n) if (1..=TRANGE_COUNT_MAX as i64).contains(&n) => count = n as usize,
                Some(_) => {
                    ctx.reply.error_fmt(format_args!(
                        "ERR COUNT must be between 1 and {TRANGE_COUNT_MAX}"
                    ));
                    return;
                }
                None => {
                    ctx.err_not_integer();
                    return;
                }
            }
            i += 2;
        } else {
            ctx.err_syntax();
            return;
        }
    }
    let (Some(start), Some(end)) = (
        parse_bound(ctx.argv.get(1), true),
        parse_bound(ctx.argv.get(2), false),
    ) else {
        ctx.reply
            .error(b"ERR min or max not valid string range item");
        return;
    };
    let (Some(start), Some(end)) = (start, end) else {
        ctx.reply.array(2);
        ctx.reply.array(0);
        ctx.reply.null();
        return;
    };
    if !range_nonempty(start, end) {
        ctx.reply.array(2);
        ctx.reply.array(0);
        ctx.reply.null();
        return;
    }
    let snapshot = ctx.core.keyspace.snapshot();
    let records = || keyspace::range(&snapshot, start, end, reverse);
    let returned = records().take(count).count();
    let next = records().nth(count);
    ctx.reply.array(2);
    ctx.reply.array(2 * returned);
    for record in records().take(count) {
        ctx.reply.bulk(record.key);
        ctx.reply.bulk(record.value);
    }
    match next {
        Some(record) => ctx.reply.bulk(record.key),
        None => ctx.reply.null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(parse_bound(b"-", true), Some(Some(Bound::Unbounded)));
        assert_eq!(parse_bound(b"+", true), Some(None));
        assert_eq!(
            parse_bound(b"[a", true),
            Some(Some(Bound::Included(&b"a"[..])))
        );
        assert_eq!(
            parse_bound(b"(a", false),
            Some(Some(Bound::Excluded(&b"a"[..])))
        );
        assert_eq!(parse_bound(b"a", false), None);
        assert_eq!(parse_bound(b"", false), None);
        assert!(!range_nonempty(
            Bound::Included(b"b"),
            Bound::Included(b"a")
        ));
        assert!(!range_nonempty(
            Bound::Excluded(b"a"),
            Bound::Included(b"a")
        ));
        assert!(range_nonempty(Bound::Included(b"a"), Bound::Included(b"a")));
    }

    #[test]
    fn cursors() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"-1"), None);
        assert_eq!(parse_cursor(b"x"), None);
    }
}
