//! String commands: GET, SET and its variants, counters, APPEND, ranges.
//!
//! GET and SET are the hot path: no allocation, one lookup, one staged op.
//! Read-modify-write commands copy the old value into the core's scratch
//! buffer first, because the old value may live in the very batch the new
//! one is staged into.

use super::args::{self, MILLISECONDS, SECONDS};
use super::keyspace::{Record, VALUE_LEN_MAX};
use super::Ctx;
use crate::resp::{format_f64, format_i64, DOUBLE_TEXT_LEN_MAX};

fn err_too_big(ctx: &mut Ctx<'_>) {
    ctx.reply
        .error(b"ERR string exceeds maximum allowed size (proto-max-bulk-len)");
}

fn err_invalid_expire(ctx: &mut Ctx<'_>, command: &str) {
    ctx.reply.error_fmt(format_args!(
        "ERR invalid expire time in '{command}' command"
    ));
}

pub fn get(ctx: &mut Ctx<'_>) {
    let key = ctx.argv.get(1);
    match ctx.core.keyspace.lookup(key) {
        Some(record) => {
            ctx.core.stats.keyspace_hits += 1;
            ctx.reply.bulk(record.value);
        }
        None => {
            ctx.core.stats.keyspace_misses += 1;
            ctx.reply.null();
        }
    }
}

/// Stages `key = value` expiring at `deadline_ms` (a past deadline deletes
/// the key, as Redis does). Writes the error reply and returns false when
/// the write is refused.
fn store(ctx: &mut Ctx<'_>, key: &[u8], value: &[u8], deadline_ms: Option<i64>) -> bool {
    let now_ms = ctx.core.now_ms();
    let staged = match deadline_ms {
        Some(at_ms) if at_ms <= now_ms as i64 => ctx.core.keyspace.delete(key),
        Some(at_ms) => ctx.core.keyspace.set(key, value, Some(at_ms as u64)),
        None => ctx.core.keyspace.set(key, value, None),
    };
    match staged {
        Ok(()) => true,
        Err(error) => {
            ctx.err_write(error);
            false
        }
    }
}

/// Copies `record`'s value into the scratch buffer and returns its expiry.
fn copy_to_scratch(ctx: &mut Ctx<'_>, key: &[u8]) -> Option<Option<u64>> {
    let record = ctx.core.keyspace.lookup(key)?;
    ctx.core.scratch.clear();
    ctx.core.scratch.extend_from_slice(record.value);
    Some(record.expire_at_ms)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition {
    Always,
    IfAbsent,
    IfPresent,
}

/// An expiry option: `EX`/`PX` relative, `EXAT`/`PXAT` absolute.
#[derive(Clone, Copy)]
struct ExpiryArg {
    unit_ms: i64,
    absolute: bool,
    index: usize,
}

fn expiry_option(option: &[u8]) -> Option<(i64, bool)> {
    if args::is(option, "EX") {
        Some((SECONDS, false))
    } else if args::is(option, "PX") {
        Some((MILLISECONDS, false))
    } else if args::is(option, "EXAT") {
        Some((SECONDS, true))
    } else if args::is(option, "PXAT") {
        Some((MILLISECONDS, true))
    } else {
        None
    }
}

/// Reads the expiry option at `argv[i]` for SET and GETEX, which share one
/// grammar. `None`: `argv[i]` is no expiry word. `Some(None)`: it is one, but
/// it may not stand here (`excluded` by an earlier option, or no amount
/// follows); the caller replies with a syntax error.
fn expiry_at(ctx: &Ctx<'_>, i: usize, excluded: bool) -> Option<Option<ExpiryArg>> {
    let (unit_ms, absolute) = expiry_option(ctx.argv.get(i))?;
    if excluded || i + 1 >= ctx.argv.len() {
        return Some(None);
    }
    Some(Some(ExpiryArg {
        unit_ms,
        absolute,
        index: i + 1,
    }))
}

/// Resolves an optional expiry to an optional deadline; `Err` means the error
/// reply is already written.
fn resolve_optional_expiry(
    ctx: &mut Ctx<'_>,
    expiry: Option<ExpiryArg>,
    command: &str,
) -> Result<Option<i64>, ()> {
    match expiry {
        None => Ok(None),
        Some(expiry) => resolve_expiry(ctx, expiry, command).map(Some).ok_or(()),
    }
}

/// Resolves an expiry argument to an absolute deadline; writes the error.
/// Non-positive amounts are invalid for SET/GETEX (Redis's rule).
fn resolve_expiry(ctx: &mut Ctx<'_>, expiry: ExpiryArg, command: &str) -> Option<i64> {
    let Some(amount) = args::int(ctx.argv.get(expiry.index)) else {
        ctx.err_not_integer();
        return None;
    };
    let now_ms = ctx.core.now_ms();
    let relative_to = (!expiry.absolute).then_some(now_ms);
    match args::deadline_ms(amount, expiry.unit_ms, relative_to) {
        Some(deadline) if amount > 0 => Some(deadline),
        _ => {
            err_invalid_expire(ctx, command);
            None
        }
    }
}

/// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts-ms|KEEPTTL]
pub fn set(ctx: &mut Ctx<'_>) {
    let mut condition = Condition::Always;
    let mut get = false;
    let mut keepttl = false;
    let mut expiry: Option<ExpiryArg> = None;
    let mut i = 3;
    while i < ctx.argv.len() {
        let option = ctx.argv.get(i);
        if args::is(option, "NX") && condition != Condition::IfPresent {
            condition = Condition::IfAbsent;
        } else if args::is(option, "XX") && condition != Condition::IfAbsent {
            condition = Condition::IfPresent;
        } else if args::is(option, "GET") {
            get = true;
        } else if args::is(option, "KEEPTTL") && expiry.is_none() {
            keepttl = true;
        } else if let Some(parsed) = expiry_at(ctx, i, keepttl || expiry.is_some()) {
            let Some(parsed) = parsed else {
                ctx.err_syntax();
                return;
            };
            expiry = Some(parsed);
            i += 1;
        } else {
            ctx.err_syntax();
            return;
        }
        i += 1;
    }
    let Ok(deadline_ms) = resolve_optional_expiry(ctx, expiry, "set") else {
        return;
    };
    let (key, value) = (ctx.argv.get(1), ctx.argv.get(2));
    if condition == Condition::Always && !get && !keepttl {
        // The hot path: no lookup.
        if store(ctx, key, value, deadline_ms) {
            ctx.reply.ok();
        }
        return;
    }
    let old_expiry = if get {
        copy_to_scratch(ctx, key)
    } else {
        ctx.core.keyspace.lookup(key).map(|r| r.expire_at_ms)
    };
    let exists = old_expiry.is_some();
    let proceed = match condition {
        Condition::Always => true,
        Condition::IfAbsent => !exists,
        Condition::IfPresent => exists,
    };
    if proceed {
        let deadline_ms = if keepttl {
            old_expiry.flatten().map(|at| at as i64)
        } else {
            deadline_ms
        };
        if !store(ctx, key, value, deadline_ms) {
            return;
        }
    }
    match (get, exists, proceed) {
        (true, true, _) => ctx.reply.bulk(&ctx.core.scratch),
        (true, false, _) | (false, _, false) => ctx.reply.null(),
        (false, _, true) => ctx.reply.ok(),
    }
}

fn set_with_expiry(ctx: &mut Ctx<'_>, unit_ms: i64, command: &str) {
    let expiry = ExpiryArg {
        unit_ms,
        absolute: false,
        index: 2,
    };
    let Some(deadline_ms) = resolve_expiry(ctx, expiry, command) else {
        return;
    };
    let (key, value) = (ctx.argv.get(1), ctx.argv.get(3));
    if store(ctx, key, value, Some(deadline_ms)) {
        ctx.reply.ok();
    }
}

pub fn setex(ctx: &mut Ctx<'_>) {
    set_with_expiry(ctx, SECONDS, "setex");
}

pub fn psetex(ctx: &mut Ctx<'_>) {
    set_with_expiry(ctx, MILLISECONDS, "psetex");
}

pub fn setnx(ctx: &mut Ctx<'_>) {
    let (key, value) = (ctx.argv.get(1), ctx.argv.get(2));
    if ctx.core.keyspace.exists(key) {
        ctx.reply.int(0);
    } else if store(ctx, key, value, None) {
        ctx.reply.int(1);
    }
}

/// GETEX key [EX s|PX ms|EXAT ts|PXAT ts-ms|PERSIST]
pub fn getex(ctx: &mut Ctx<'_>) {
    let mut expiry: Option<ExpiryArg> = None;
    let mut persist = false;
    let mut i = 2;
    while i < ctx.argv.len() {
        let option = ctx.argv.get(i);
        if args::is(option, "PERSIST") && expiry.is_none() && !persist {
            persist = true;
        } else if let Some(parsed) = expiry_at(ctx, i, persist || expiry.is_some()) {
            let Some(parsed) = parsed else {
                ctx.err_syntax();
                return;
            };
            expiry = Some(parsed);
            i += 1;
        } else {
            ctx.err_syntax();
            return;
        }
        i += 1;
    }
    let Ok(deadline_ms) = resolve_optional_expiry(ctx, expiry, "getex") else {
        return;
    };
    let key = ctx.argv.get(1);
    if deadline_ms.is_none() && !persist {
        get(ctx);
        return;
    }
    let Some(old_expiry) = copy_to_scratch(ctx, key) else {
        ctx.reply.null();
        return;
    };
    if deadline_ms.is_some() || old_expiry.is_some() {
        let value = std::mem::take(&mut ctx.core.scratch);
        let stored = store(ctx, key, &value, deadline_ms);
        ctx.core.scratch = value;
        if !stored {
            return;
        }
    }
    ctx.reply.bulk(&ctx.core.scratch);
}

pub fn getdel(ctx: &mut Ctx<'_>) {
    let key = ctx.argv.get(1);
    if copy_to_scratch(ctx, key).is_none() {
        ctx.reply.null();
        return;
    }
    match ctx.core.keyspace.delete(key) {
        Ok(()) => ctx.reply.bulk(&ctx.core.scratch),
        Err(error) => ctx.err_write(error),
    }
}

pub fn mget(ctx: &mut Ctx<'_>) {
    ctx.reply.array(ctx.argv.len() - 1);
    for i in 1..ctx.argv.len() {
        match ctx.core.keyspace.lookup(ctx.argv.get(i)) {
            Some(record) => {
                ctx.core.stats.keyspace_hits += 1;
                ctx.reply.bulk(record.value);
            }
            None => {
                ctx.core.stats.keyspace_misses += 1;
                ctx.reply.null();
            }
        }
    }
}

/// Stages every pair of an MSET or MSETNX after admitting them all at once,
/// so either every pair is staged or none is.
fn stage_pairs(ctx: &mut Ctx<'_>, command: &str) -> bool {
    if ctx.argv.len() % 2 == 0 {
        ctx.reply.error_fmt(format_args!(
            "ERR wrong number of arguments for '{command}' command"
        ));
        return false;
    }
    let pairs = (1..ctx.argv.len())
        .step_by(2)
        .map(|i| (ctx.argv.get(i), ctx.argv.get(i + 1)));
    if let Err(error) = ctx.core.keyspace.admit(pairs) {
        ctx.err_write(error);
        return false;
    }
    for i in (1..ctx.argv.len()).step_by(2) {
        let (key, value) = (ctx.argv.get(i), ctx.argv.get(i + 1));
        let staged = ctx.core.keyspace.set(key, value, None);
        assert!(staged.is_ok(), "an admitted pair was refused: {staged:?}");
    }
    true
}

pub fn mset(ctx: &mut Ctx<'_>) {
    if stage_pairs(ctx, "mset") {
        ctx.reply.ok();
    }
}

pub fn msetnx(ctx: &mut Ctx<'_>) {
    if ctx.argv.len() % 2 == 0 {
        ctx.reply
            .error(b"ERR wrong number of arguments for 'msetnx' command");
        return;
    }
    let any_exists = (1..ctx.argv.len())
        .step_by(2)
        .any(|i| ctx.core.keyspace.exists(ctx.argv.get(i)));
    if any_exists {
        ctx.reply.int(0);
    } else if stage_pairs(ctx, "msetnx") {
        ctx.reply.int(1);
    }
}

/// Longest value that can hold an i64 in decimal.
const I64_TEXT_LEN_MAX: usize = 20;

fn parse_stored_i64(record: Option<Record<'_>>) -> Result<(i64, Option<u64>), ()> {
    match record {
        None => Ok((0, None)),
        Some(record) if record.value.len() <= I64_TEXT_LEN_MAX => args::int(record.value)
            .map(|n| (n, record.expire_at_ms))
            .ok_or(()),
        Some(_) => Err(()),
    }
}

fn incr_by(ctx: &mut Ctx<'_>, delta: i64) {
    let key = ctx.argv.get(1);
    let Ok((old, expire_at_ms)) = parse_stored_i64(ctx.core.keyspace.lookup(key)) else {
        ctx.err_not_integer();
        return;
    };
    let Some(new) = old.checked_add(delta) else {
        ctx.reply
            .error(b"ERR increment or decrement would overflow");
        return;
    };
    let mut buf = [0u8; I64_TEXT_LEN_MAX];
    let digits = format_i64(new, &mut buf);
    match ctx.core.keyspace.set(key, digits, expire_at_ms) {
        Ok(()) => ctx.reply.int(new),
        Err(error) => ctx.err_write(error),
    }
}

pub fn incr(ctx: &mut Ctx<'_>) {
    incr_by(ctx, 1);
}

pub fn decr(ctx: &mut Ctx<'_>) {
    incr_by(ctx, -1);
}

pub fn incrby(ctx: &mut Ctx<'_>) {
    match args::int(ctx.argv.get(2)) {
        Some(delta) => incr_by(ctx, delta),
        None => ctx.err_not_integer(),
    }
}

pub fn decrby(ctx: &mut Ctx<'_>) {
    match args::int(ctx.argv.get(2)) {
        Some(i64::MIN) => ctx.reply.error(b"ERR decrement would overflow"),
        Some(delta) => incr_by(ctx, -delta),
        None => ctx.err_not_integer(),
    }
}

pub fn incrbyfloat(ctx: &mut Ctx<'_>) {
    let Some(delta) = args::float(ctx.argv.get(2)) else {
        ctx.reply.error(b"ERR value is not a valid float");
        return;
    };
    let key = ctx.argv.get(1);
    let (old, expire_at_ms) = match ctx.core.keyspace.lookup(key) {
        None => (0.0, None),
        Some(record) => match args::float(record.value) {
            Some(old) => (old, record.expire_at_ms),
            None => {
                ctx.reply.error(b"ERR value is not a valid float");
                return;
            }
        },
    };
    let new = old + delta;
    if !new.is_finite() {
        ctx.reply
            .error(b"ERR increment would produce NaN or Infinity");
        return;
    }
    let mut buf = [0u8; DOUBLE_TEXT_LEN_MAX];
    let text = format_f64(new, &mut buf);
    match ctx.core.keyspace.set(key, text, expire_at_ms) {
        // A bulk string in both protocols, like Redis.
        Ok(()) => ctx.reply.bulk(text),
        Err(error) => ctx.err_write(error),
    }
}

pub fn append(ctx: &mut Ctx<'_>) {
    let (key, suffix) = (ctx.argv.get(1), ctx.argv.get(2));
    let expire_at_ms = copy_to_scratch(ctx, key);
    if expire_at_ms.is_none() {
        ctx.core.scratch.clear();
    }
    let old_len = ctx.core.scratch.len();
    let new_len = old_len + suffix.len();
    if new_len > VALUE_LEN_MAX {
        err_too_big(ctx);
        return;
    }
    let old = &ctx.core.scratch;
    let staged = ctx
        .core
        .keyspace
        .set_with(key, new_len, expire_at_ms.flatten(), |buf| {
            buf[..old_len].copy_from_slice(old);
            buf[old_len..].copy_from_slice(suffix);
        });
    match staged {
        Ok(()) => ctx.reply.int(new_len as i64),
        Err(error) => ctx.err_write(error),
    }
}

pub fn strlen(ctx: &mut Ctx<'_>) {
    let len = ctx
        .core
        .keyspace
        .lookup(ctx.argv.get(1))
        .map_or(0, |record| record.value.len());
    ctx.reply.int(len as i64);
}

/// Redis's GETRANGE index rules: negative indexes count from the end, both
/// ends inclusive and clamped.
fn substring_bounds(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return None;
    }
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 {
        (len + end).max(0)
    } else {
        end.min(len - 1)
    };
    (start <= end).then_some((start as usize, end as usize + 1))
}

pub fn getrange(ctx: &mut Ctx<'_>) {
    let (Some(start), Some(end)) = (args::int(ctx.argv.get(2)), args::int(ctx.argv.get(3))) else {
        ctx.err_not_integer();
        return;
    };
    let value = ctx
        .core
        .keyspace
        .lookup(ctx.argv.get(1))
        .map_or(&b""[..], |record| record.value);
    match substring_bounds(value.len(), start, end) {
        Some((from, to)) => ctx.reply.bulk(&value[from..to]),
        None => ctx.reply.bulk(b""),
    }
}

pub fn setrange(ctx: &mut Ctx<'_>) {
    let Some(offset) = args::int(ctx.argv.get(2)) else {
        ctx.err_not_integer();
        return;
    };
    if offset < 0 {
        ctx.reply.error(b"ERR offset is out of range");
        return;
    }
    let (key, patch) = (ctx.argv.get(1), ctx.argv.get(3));
    let expire_at_ms = copy_to_scratch(ctx, key);
    if expire_at_ms.is_none() {
        ctx.core.scratch.clear();
    }
    let old_len = ctx.core.scratch.len();
    if patch.is_empty() {
        // Nothing to write: Redis neither creates the key nor checks size.
        ctx.reply.int(old_len as i64);
        return;
    }
    let offset = offset as u64;
    if offset + patch.len() as u64 > VALUE_LEN_MAX as u64 {
        err_too_big(ctx);
        return;
    }
    let offset = offset as usize;
    let new_len = old_len.max(offset + patch.len());
    let old = &ctx.core.scratch;
    let staged = ctx
        .core
        .keyspace
        .set_with(key, new_len, expire_at_ms.flatten(), |buf| {
            buf[..old_len].copy_from_slice(old);
            buf[old_len..].fill(0);
            buf[offset..offset + patch.len()].copy_from_slice(patch);
        });
    match staged {
        Ok(()) => ctx.reply.int(new_len as i64),
        Err(error) => ctx.err_write(error),
    }
}

#[cfg(test)]
mod tests {
    use super::substring_bounds;

    #[test]
    fn getrange_bounds_follow_redis() {
        // "This is a string"
        let len = 16;
        assert_eq!(substring_bounds(len, 0, 3), Some((0, 4)));
        assert_eq!(substring_bounds(len, -3, -1), Some((13, 16)));
        assert_eq!(substring_bounds(len, 0, -1), Some((0, 16)));
        assert_eq!(substring_bounds(len, 10, 100), Some((10, 16)));
        assert_eq!(substring_bounds(len, 5, 3), None);
        assert_eq!(substring_bounds(len, -1, -5), None);
        assert_eq!(substring_bounds(0, 0, -1), None);
        assert_eq!(substring_bounds(len, -100, 2), Some((0, 3)));
    }
}
