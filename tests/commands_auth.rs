//! `--requirepass`: NOAUTH before AUTH, WRONGPASS, AUTH with and without a
//! user name, HELLO AUTH, and the tighter protocol limits before auth.

mod common;
use common::{config, Client, MEMORY_LIMIT_BYTES};

fn protected() -> Client {
    Client::with_config(config(1, 0, Some("s3cret"), MEMORY_LIMIT_BYTES))
}

#[test]
fn commands_need_auth() {
    let mut c = protected();
    assert_eq!(c.s("GET k"), "-NOAUTH Authentication required.\r\n");
    assert_eq!(c.s("PING"), "-NOAUTH Authentication required.\r\n");
    // Unknown commands and arity are checked first, as Redis does.
    assert!(c.s("NOPE").starts_with("-ERR unknown command"));
    assert_eq!(
        c.s("AUTH wrong"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        c.s("AUTH someone s3cret"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.s("AUTH default s3cret"), "+OK\r\n");
    assert_eq!(c.s("PING"), "+PONG\r\n");
}

#[test]
fn auth_with_password_only() {
    let mut c = protected();
    assert_eq!(c.s("AUTH s3cret"), "+OK\r\n");
    assert_eq!(c.s("SET k v"), "+OK\r\n");
}

#[test]
fn hello_with_auth() {
    let mut c = protected();
    assert!(c.s("HELLO 3").starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(
        c.s("HELLO 3 AUTH default nope"),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert!(c.s("HELLO 3 AUTH default s3cret").starts_with("%7\r\n"));
    assert_eq!(c.s("GET k"), "_\r\n");
}

#[test]
fn quit_is_allowed_before_auth() {
    let mut c = protected();
    assert_eq!(c.s("QUIT"), "+OK\r\n");
    assert!(c.closed);
}

#[test]
fn auth_without_configured_password() {
    let mut c = Client::new();
    assert!(c
        .s("AUTH x")
        .starts_with("-ERR AUTH <password> called without any password configured"));
    assert_eq!(c.s("AUTH default anything"), "+OK\r\n");
}

#[test]
fn unauthenticated_requests_are_small() {
    let mut c = protected();
    let reply = c.round(b"*11\r\n");
    assert_eq!(reply, b"-ERR Protocol error: invalid multibulk length\r\n");
    assert!(c.closed);
    let mut c = protected();
    let reply = c.round(b"*2\r\n$3\r\nGET\r\n$20000\r\n");
    assert_eq!(reply, b"-ERR Protocol error: invalid bulk length\r\n");
    assert!(c.closed);
}
