//! `--max-clients` (per core): the connection over the limit gets
//! `-ERR max number of clients reached` and is closed; the others keep
//! working, and a slot freed by a disconnect is usable again.

mod support;

use std::time::Duration;
use support::{Client, Server};

#[test]
fn over_the_limit_is_refused_others_unaffected() {
    let _server = Server::start(17220, "max-clients", &["--max-clients", "2"]);
    // The start-up probe's connections close asynchronously; wait until
    // their slots are free.
    let mut first = connect_admitted(17220);
    let mut second = connect_admitted(17220);

    let mut third = Client::connect(17220);
    assert_eq!(
        third.read_to_end(),
        b"-ERR max number of clients reached\r\n"
    );

    assert_eq!(first.ping(), b"+PONG\r\n");
    assert_eq!(second.ping(), b"+PONG\r\n");
    // The other core has its own table.
    assert_eq!(Client::connect(17221).ping(), b"+PONG\r\n");

    drop(first);
    let mut again = connect_admitted(17220);
    assert_eq!(again.ping(), b"+PONG\r\n");
    assert_eq!(second.ping(), b"+PONG\r\n");
}

/// Connects until admitted: a close reaches the server asynchronously, so a
/// just-freed slot may still be taken for a moment.
fn connect_admitted(port: u16) -> Client {
    for _ in 0..250 {
        let mut client = Client::connect(port);
        client.command(&[b"PING"]);
        // A refused connection gets the error line, then EOF.
        let reply = client.read_line();
        if reply == b"+PONG\r\n" {
            return client;
        }
        assert_eq!(reply, b"-ERR max number of clients reached\r\n");
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never admitted on port {port}");
}
