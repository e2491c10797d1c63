//! Connection commands over RESP2 and RESP3: PING, ECHO, HELLO, SELECT,
//! CLIENT, QUIT, and the generic errors (unknown command, arity).

mod common;
use common::Client;

#[test]
fn ping_echo_select() {
    let mut c = Client::new();
    assert_eq!(c.s("PING"), "+PONG\r\n");
    assert_eq!(c.s("ping hello"), "$5\r\nhello\r\n");
    assert_eq!(
        c.s("PING a b"),
        "-ERR wrong number of arguments for 'ping' command\r\n"
    );
    assert_eq!(c.s("ECHO hi"), "$2\r\nhi\r\n");
    assert_eq!(
        c.s("ECHO"),
        "-ERR wrong number of arguments for 'echo' command\r\n"
    );
    assert_eq!(c.s("SELECT 0"), "+OK\r\n");
    assert_eq!(c.s("SELECT 1"), "-ERR DB index is out of range\r\n");
    assert_eq!(
        c.s("SELECT x"),
        "-ERR value is not an integer or out of range\r\n"
    );
}

#[test]
fn unknown_command_echoes_its_arguments() {
    let mut c = Client::new();
    assert_eq!(
        c.s("FOO a b"),
        "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"
    );
    assert_eq!(
        c.s("LPUSH"),
        "-ERR unknown command 'LPUSH', with args beginning with: \r\n"
    );
    let long = "x".repeat(300);
    let reply = c.s(&format!("NOPE {long}"));
    assert!(reply.len() < 300, "{reply}");
    assert_eq!(
        c.s("CLUSTER nosuch"),
        "-ERR unknown subcommand 'nosuch'. Try CLUSTER HELP.\r\n"
    );
    assert_eq!(
        c.s("CLUSTER KEYSLOT"),
        "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n"
    );
    assert_eq!(
        c.s("CLUSTER"),
        "-ERR wrong number of arguments for 'cluster' command\r\n"
    );
}

#[test]
fn hello_switches_protocol() {
    let mut c = Client::new();
    let hello2 = c.s("HELLO 2");
    assert!(hello2.starts_with("*14\r\n$6\r\nserver\r\n$7\r\ntessera\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:1\r\n"), "{hello2}");
    assert!(hello2.ends_with(
        "$4\r\nmode\r\n$7\r\ncluster\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    ));
    let hello3 = c.s("HELLO 3 SETNAME app");
    assert!(hello3.starts_with("%7\r\n"), "{hello3}");
    assert!(hello3.contains("$5\r\nproto\r\n:3\r\n"));
    assert_eq!(c.s("GET missing"), "_\r\n");
    assert_eq!(c.s("CLIENT GETNAME"), "$3\r\napp\r\n");
    assert_eq!(c.s("HELLO 4"), "-NOPROTO unsupported protocol version\r\n");
    assert_eq!(
        c.s("HELLO x"),
        "-ERR Protocol version is not an integer or out of range\r\n"
    );
    assert_eq!(
        c.s("HELLO 3 BOGUS"),
        "-ERR Syntax error in HELLO option 'BOGUS'\r\n"
    );
    // Still RESP3 after the failed attempts.
    assert_eq!(c.s("GET missing"), "_\r\n");
    c.s("HELLO 2");
    assert_eq!(c.s("GET missing"), "$-1\r\n");
}

#[test]
fn client_subcommands() {
    let mut c = Client::new();
    assert_eq!(c.s("CLIENT GETNAME"), "$-1\r\n");
    assert_eq!(c.s("CLIENT SETNAME worker-1"), "+OK\r\n");
    assert_eq!(c.s("CLIENT GETNAME"), "$8\r\nworker-1\r\n");
    assert_eq!(
        c.args(&[b"CLIENT", b"SETNAME", b"a b"]),
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    assert_eq!(c.s("CLIENT SETINFO LIB-NAME redis-py"), "+OK\r\n");
    assert_eq!(c.s("CLIENT SETINFO lib-ver 5.0.1"), "+OK\r\n");
    assert_eq!(
        c.s("CLIENT SETINFO color red"),
        "-ERR Unrecognized option 'color'\r\n"
    );
    assert_eq!(c.s("CLIENT ID"), ":1\r\n");
    let info = c.s("CLIENT INFO");
    assert!(info.contains("id=1 "), "{info}");
    assert!(info.contains("name=worker-1 "), "{info}");
    assert!(info.contains("lib-name=redis-py lib-ver=5.0.1\n"), "{info}");
}

#[test]
fn quit_closes_after_ok() {
    let mut c = Client::new();
    let mut pipeline = common::line("QUIT");
    pipeline.extend_from_slice(&common::line("PING"));
    assert_eq!(c.round(&pipeline), b"+OK\r\n");
    assert!(c.closed);
}
