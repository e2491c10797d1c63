//! Ordered walks of one core: SCAN (integer cursors over continuation
//! keys), KEYS globs, TRANGE bounds and continuation, DBSIZE, FLUSHDB.

mod common;
use common::Client;

fn filled(n: usize) -> Client {
    let mut c = Client::new();
    let mut input = Vec::new();
    for i in 0..n {
        input.extend(common::line(&format!("SET key:{i:03} v{i}")));
    }
    c.round(&input);
    c
}

/// Parses a SCAN reply: (cursor, keys).
fn parse_scan(reply: &str) -> (String, Vec<String>) {
    let lines: Vec<&str> = reply.split("\r\n").collect();
    assert_eq!(lines[0], "*2");
    let cursor = lines[2].to_owned();
    let count: usize = lines[3][1..].parse().unwrap();
    let keys = (0..count).map(|i| lines[5 + 2 * i].to_owned()).collect();
    (cursor, keys)
}

#[test]
fn scan_visits_every_key_once() {
    let mut c = filled(25);
    let mut cursor = "0".to_owned();
    let mut seen = Vec::new();
    loop {
        let (next, keys) = parse_scan(&c.s(&format!("SCAN {cursor} COUNT 7")));
        seen.extend(keys);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    let expected: Vec<String> = (0..25).map(|i| format!("key:{i:03}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn scan_match_type_and_errors() {
    let mut c = filled(12);
    let (cursor, keys) = parse_scan(&c.s("SCAN 0 MATCH key:00? COUNT 100"));
    assert_eq!(cursor, "0");
    assert_eq!(keys.len(), 10);
    let (_, keys) = parse_scan(&c.s("SCAN 0 TYPE hash COUNT 100"));
    assert!(keys.is_empty());
    let (_, keys) = parse_scan(&c.s("SCAN 0 TYPE string COUNT 100"));
    assert_eq!(keys.len(), 12);
    assert_eq!(c.s("SCAN x"), "-ERR invalid cursor\r\n");
    assert_eq!(c.s("SCAN 12345"), "-ERR invalid cursor\r\n");
    assert_eq!(c.s("SCAN 0 COUNT 0"), "-ERR syntax error\r\n");
    assert_eq!(c.s("SCAN 0 COUNT"), "-ERR syntax error\r\n");
    assert_eq!(c.s("SCAN 0 BOGUS 1"), "-ERR syntax error\r\n");
}

#[test]
fn forgotten_cursors_are_invalid() {
    let mut c = filled(3);
    let (first, _) = parse_scan(&c.s("SCAN 0 COUNT 1"));
    assert_ne!(first, "0");
    for _ in 0..tessera::net::commands::SCAN_CURSORS_MAX {
        c.s("SCAN 0 COUNT 1");
    }
    assert_eq!(c.s(&format!("SCAN {first}")), "-ERR invalid cursor\r\n");
}

#[test]
fn keys_glob() {
    let mut c = filled(12);
    c.s("SET other x");
    let reply = c.s("KEYS key:01*");
    assert_eq!(reply, "*2\r\n$7\r\nkey:010\r\n$7\r\nkey:011\r\n");
    assert!(c.s("KEYS *").starts_with("*13\r\n"));
    assert_eq!(
        c.s("KEYS key:00[1-2]"),
        "*2\r\n$7\r\nkey:001\r\n$7\r\nkey:002\r\n"
    );
    assert_eq!(c.s("KEYS nomatch*"), "*0\r\n");
}

#[test]
fn trange_bounds_and_continuation() {
    let mut c = filled(5);
    assert_eq!(
        c.s("TRANGE [key:001 (key:003"),
        "*2\r\n*4\r\n$7\r\nkey:001\r\n$2\r\nv1\r\n$7\r\nkey:002\r\n$2\r\nv2\r\n$-1\r\n"
    );
    assert_eq!(
        c.s("TRANGE - + COUNT 2"),
        "*2\r\n*4\r\n$7\r\nkey:000\r\n$2\r\nv0\r\n$7\r\nkey:001\r\n$2\r\nv1\r\n$7\r\nkey:002\r\n"
    );
    assert_eq!(
        c.s("TRANGE [key:002 + COUNT 2 REV"),
        "*2\r\n*4\r\n$7\r\nkey:004\r\n$2\r\nv4\r\n$7\r\nkey:003\r\n$2\r\nv3\r\n$7\r\nkey:002\r\n"
    );
    assert_eq!(c.s("TRANGE + -"), "*2\r\n*0\r\n$-1\r\n");
    assert_eq!(c.s("TRANGE [b [a"), "*2\r\n*0\r\n$-1\r\n");
    assert_eq!(
        c.s("TRANGE a +"),
        "-ERR min or max not valid string range item\r\n"
    );
    assert_eq!(
        c.s("TRANGE - + COUNT 0"),
        "-ERR COUNT must be between 1 and 10000\r\n"
    );
    assert_eq!(c.s("TRANGE - + LIMIT"), "-ERR syntax error\r\n");
    // Unapplied writes of the same round are visible.
    let mut input = common::line("SET key:0025 mid");
    input.extend(common::line("TRANGE (key:002 (key:003"));
    assert_eq!(
        c.round(&input),
        b"+OK\r\n*2\r\n*2\r\n$8\r\nkey:0025\r\n$3\r\nmid\r\n$-1\r\n"
    );
    c.s("HELLO 3");
    assert_eq!(c.s("TRANGE + -"), "*2\r\n*0\r\n_\r\n");
}

#[test]
fn dbsize_and_flush() {
    let mut c = filled(7);
    assert_eq!(c.s("DBSIZE"), ":7\r\n");
    assert!(c.s("INFO keyspace").contains("db0:keys=7\r\n"));
    assert_eq!(c.s("FLUSHDB ASYNC"), "+OK\r\n");
    assert_eq!(c.s("DBSIZE"), ":0\r\n");
    c.s("SET a b");
    assert_eq!(c.s("FLUSHALL SYNC"), "+OK\r\n");
    assert_eq!(c.s("GET a"), "$-1\r\n");
    assert_eq!(c.s("FLUSHDB NOW"), "-ERR syntax error\r\n");
}
