//! `--max-clients` (per core): the connection over the limit gets
//! `-ERR max number of clients reached` and is closed; the others keep
//! working, and a slot freed by a disconnect is usable again.

mod support;

use std::time::Duration;
use support::{Client, Server};

#[test]
fn over_the_limit_is_refused_others_unaffected() {
    let _server = Server::start(17220, "max-clients", &["--max-clients", "2"]);
    let mut first = Client::connect(17220);
    let mut second = Client::connect(17220);
    assert_eq!(first.ping(), b"+PONG\r\n");
    assert_eq!(second.ping(), b"+PONG\r\n");

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
    // The close reaches the server asynchronously; retry briefly.
    let mut admitted = false;
    for _ in 0..100 {
        let mut again = Client::connect(17220);
        again.command(&[b"PING"]);
        // A refused connection gets the error line, then EOF.
        let reply = again.read_line();
        if reply == b"+PONG\r\n" {
            admitted = true;
            break;
        }
        assert_eq!(reply, b"-ERR max number of clients reached\r\n");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(admitted, "a freed slot is reused");
    assert_eq!(second.ping(), b"+PONG\r\n");
}
