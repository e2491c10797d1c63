//! A connection sending garbage gets `-ERR Protocol error...` and is closed,
//! while another connection on the same core keeps working.

mod support;

use support::{Client, Server};

#[test]
fn garbage_closes_only_that_connection() {
    let _server = Server::start(17230, "protocol-error", &[]);
    let mut good = Client::connect(17230);
    assert_eq!(good.ping(), b"+PONG\r\n");

    let mut bad = Client::connect(17230);
    bad.send(b"*2\r\n$3\r\nGET\r\n$x\r\n");
    let reply = bad.read_to_end();
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("-ERR Protocol error"), "reply: {text}");
    assert_eq!(
        text.matches("\r\n").count(),
        1,
        "one error, then close: {text}"
    );

    assert_eq!(good.ping(), b"+PONG\r\n");
    good.command(&[b"SET", b"{user1000}x", b"1"]);
    assert_eq!(good.read_line(), b"+OK\r\n");
}
