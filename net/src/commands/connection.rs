//! Connection commands: HELLO, AUTH, PING, ECHO, QUIT, SELECT, CLIENT.

use std::io::Write as _;

use super::args;
use super::conn::CLIENT_NAME_LEN_MAX;
use super::table::{subcommand, Command};
use super::Ctx;
use crate::resp::Protocol;

/// The Redis version we report: the command set and replies follow 7.2.
pub const REDIS_VERSION: &str = "7.2.0";

/// Whether `user`/`pass` are the configured credentials. Only the `default`
/// user exists. Compares in time independent of where the bytes differ.
fn credentials_ok(ctx: &Ctx<'_>, user: &[u8], pass: &[u8]) -> bool {
    if user != b"default" {
        return false;
    }
    match &ctx.core.requirepass {
        // The default user has no password: any password is accepted.
        None => true,
        Some(expected) => {
            if expected.len() != pass.len() {
                return false;
            }
            let diff = expected
                .iter()
                .zip(pass)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            diff == 0
        }
    }
}

fn wrongpass(ctx: &mut Ctx<'_>) {
    ctx.reply
        .error(b"WRONGPASS invalid username-password pair or user is disabled.");
}

pub fn auth(ctx: &mut Ctx<'_>) {
    let (user, pass) = match ctx.argv.len() {
        2 => (&b"default"[..], ctx.argv.get(1)),
        3 => (ctx.argv.get(1), ctx.argv.get(2)),
        _ => {
            ctx.err_syntax();
            return;
        }
    };
    if ctx.argv.len() == 2 && ctx.core.requirepass.is_none() {
        ctx.reply.error(
            b"ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
        return;
    }
    if credentials_ok(ctx, user, pass) {
        ctx.conn.authenticated = true;
        ctx.reply.ok();
    } else {
        wrongpass(ctx);
    }
}

fn valid_client_name(name: &[u8]) -> bool {
    name.len() <= CLIENT_NAME_LEN_MAX && name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

fn err_client_name(ctx: &mut Ctx<'_>) {
    ctx.reply
        .error(b"ERR Client names cannot contain spaces, newlines or special characters.");
}

pub fn hello(ctx: &mut Ctx<'_>) {
    let mut proto = ctx.conn.proto;
    let mut i = 1;
    if ctx.argv.len() >= 2 {
        let Some(version) = args::int(ctx.argv.get(1)) else {
            ctx.reply
                .error(b"ERR Protocol version is not an integer or out of range");
            return;
        };
        proto = match version {
            2 => Protocol::Resp2,
            3 => Protocol::Resp3,
            _ => {
                ctx.reply.error(b"NOPROTO unsupported protocol version");
                return;
            }
        };
        i = 2;
    }
    let mut credentials: Option<(usize, usize)> = None;
    let mut setname: Option<usize> = None;
    while i < ctx.argv.len() {
        let option = ctx.argv.get(i);
        let left = ctx.argv.len() - i - 1;
        if args::is(option, "AUTH") && left >= 2 {
            credentials = Some((i + 1, i + 2));
            i += 3;
        } else if args::is(option, "SETNAME") && left >= 1 {
            setname = Some(i + 1);
            i += 2;
        } else {
            let option = &option[..option.len().min(128)];
            ctx.reply.error_fmt(format_args!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(option)
            ));
            return;
        }
    }
    if let Some((user, pass)) = credentials {
        if !credentials_ok(ctx, ctx.argv.get(user), ctx.argv.get(pass)) {
            wrongpass(ctx);
            return;
        }
        ctx.conn.authenticated = true;
    }
    if !ctx.conn.authenticated {
        ctx.reply.error(b"NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
        return;
    }
    if let Some(name) = setname {
        let name = ctx.argv.get(name);
        if !valid_client_name(name) {
            err_client_name(ctx);
            return;
        }
        ctx.conn.name.clear();
        ctx.conn.name.extend_from_slice(name);
    }
    ctx.conn.proto = proto;
    ctx.reply.proto = proto;
    let reply = &mut ctx.reply;
    reply.map(7);
    reply.bulk(b"server");
    reply.bulk(b"tessera");
    reply.bulk(b"version");
    reply.bulk(REDIS_VERSION.as_bytes());
    reply.bulk(b"proto");
    reply.int(proto.version());
    reply.bulk(b"id");
    reply.int(i64::try_from(ctx.conn.id).unwrap_or(i64::MAX));
    reply.bulk(b"mode");
    reply.bulk(b"cluster");
    reply.bulk(b"role");
    reply.bulk(b"master");
    reply.bulk(b"modules");
    reply.array(0);
}

pub fn ping(ctx: &mut Ctx<'_>) {
    match ctx.argv.len() {
        1 => ctx.reply.simple(b"PONG"),
        2 => {
            let message = ctx.argv.get(1);
            ctx.reply.bulk(message);
        }
        _ => ctx
            .reply
            .error(b"ERR wrong number of arguments for 'ping' command"),
    }
}

pub fn echo(ctx: &mut Ctx<'_>) {
    let message = ctx.argv.get(1);
    ctx.reply.bulk(message);
}

pub fn quit(ctx: &mut Ctx<'_>) {
    ctx.reply.ok();
    ctx.close = true;
}

pub fn select(ctx: &mut Ctx<'_>) {
    match args::int(ctx.argv.get(1)) {
        None => ctx.err_not_integer(),
        Some(0) => ctx.reply.ok(),
        Some(_) => ctx.reply.error(b"ERR DB index is out of range"),
    }
}

pub static CLIENT_SUBCOMMANDS: &[Command] = &[
    subcommand(
        "getname",
        2,
        &["noscript", "loading", "stale"],
        "Returns the name of the connection.",
        client_getname,
    ),
    subcommand(
        "help",
        2,
        &["loading", "stale"],
        "Returns helpful text about the different subcommands.",
        client_help,
    ),
    subcommand(
        "id",
        2,
        &["noscript", "loading", "stale"],
        "Returns the unique client ID of the connection.",
        client_id,
    ),
    subcommand(
        "info",
        2,
        &["noscript", "loading", "stale"],
        "Returns information about the connection.",
        client_info,
    ),
    subcommand(
        "setinfo",
        4,
        &["noscript", "loading", "stale"],
        "Sets information specific to the client or connection.",
        client_setinfo,
    ),
    subcommand(
        "setname",
        3,
        &["noscript", "loading", "stale"],
        "Sets the connection name.",
        client_setname,
    ),
];

fn client_getname(ctx: &mut Ctx<'_>) {
    if ctx.conn.name.is_empty() {
        ctx.reply.null();
    } else {
        ctx.reply.bulk(&ctx.conn.name);
    }
}

fn client_setname(ctx: &mut Ctx<'_>) {
    let name = ctx.argv.get(2);
    if !valid_client_name(name) {
        err_client_name(ctx);
        return;
    }
    ctx.conn.name.clear();
    ctx.conn.name.extend_from_slice(name);
    ctx.reply.ok();
}

fn client_setinfo(ctx: &mut Ctx<'_>) {
    let (attribute, value) = (ctx.argv.get(2), ctx.argv.get(3));
    let target = if args::is(attribute, "LIB-NAME") {
        &mut ctx.conn.lib_name
    } else if args::is(attribute, "LIB-VER") {
        &mut ctx.conn.lib_ver
    } else {
        let shown = &attribute[..attribute.len().min(128)];
        ctx.reply.error_fmt(format_args!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(shown)
        ));
        return;
    };
    if !valid_client_name(value) {
        ctx.reply.error_fmt(format_args!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            if args::is(attribute, "LIB-NAME") {
                "lib-name"
            } else {
                "lib-ver"
            }
        ));
        return;
    }
    target.clear();
    target.extend_from_slice(value);
    ctx.reply.ok();
}

fn client_id(ctx: &mut Ctx<'_>) {
    ctx.reply
        .int(i64::try_from(ctx.conn.id).unwrap_or(i64::MAX));
}

fn client_info(ctx: &mut Ctx<'_>) {
    let scratch = &mut ctx.core.scratch;
    scratch.clear();
    write!(scratch, "id={} addr=? laddr=", ctx.conn.id).expect("Vec write");
    ctx.core.node.write_addr(scratch, ctx.core.node.core);
    scratch.extend_from_slice(b" name=");
    scratch.extend_from_slice(&ctx.conn.name);
    write!(
        scratch,
        " db=0 flags={} resp={} lib-name=",
        if ctx.conn.readonly { "r" } else { "N" },
        ctx.conn.proto.version()
    )
    .expect("Vec write");
    scratch.extend_from_slice(&ctx.conn.lib_name);
    scratch.extend_from_slice(b" lib-ver=");
    scratch.extend_from_slice(&ctx.conn.lib_ver);
    scratch.push(b'\n');
    ctx.reply.bulk(&ctx.core.scratch);
}

fn client_help(ctx: &mut Ctx<'_>) {
    super::server::help_reply(ctx, "CLIENT", CLIENT_SUBCOMMANDS);
}
