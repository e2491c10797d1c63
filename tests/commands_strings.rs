//! String commands and their Redis errors: SET options, counters, APPEND,
//! ranges, MSET/MSETNX, size limits.

mod common;
use common::Client;

#[test]
fn set_and_get_with_options() {
    let mut c = Client::new();
    assert_eq!(c.s("GET k"), "$-1\r\n");
    assert_eq!(c.s("SET k v1"), "+OK\r\n");
    assert_eq!(c.s("GET k"), "$2\r\nv1\r\n");
    assert_eq!(c.s("SET k v2 NX"), "$-1\r\n");
    assert_eq!(c.s("SET k v2 XX"), "+OK\r\n");
    assert_eq!(c.s("SET other v XX"), "$-1\r\n");
    assert_eq!(c.s("SET k v3 GET"), "$2\r\nv2\r\n");
    assert_eq!(c.s("SET fresh v GET"), "$-1\r\n");
    assert_eq!(c.s("GET fresh"), "$1\r\nv\r\n");
    assert_eq!(c.s("SET k v4 NX GET"), "$2\r\nv3\r\n");
    assert_eq!(c.s("GET k"), "$2\r\nv3\r\n");
    assert_eq!(c.s("SET k v NX XX"), "-ERR syntax error\r\n");
    assert_eq!(c.s("SET k v EX 10 PX 10"), "-ERR syntax error\r\n");
    assert_eq!(c.s("SET k v EX 10 KEEPTTL"), "-ERR syntax error\r\n");
    assert_eq!(c.s("SET k v EX"), "-ERR syntax error\r\n");
    assert_eq!(c.s("SET k v BOGUS"), "-ERR syntax error\r\n");
    assert_eq!(
        c.s("SET k v EX ten"),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        c.s("SET k v EX 0"),
        "-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(
        c.s("SET k v PX -5"),
        "-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(
        c.s("SET k v EX 9223372036854775807"),
        "-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(
        c.s("SET k"),
        "-ERR wrong number of arguments for 'set' command\r\n"
    );
    assert_eq!(c.s("GET k"), "$2\r\nv3\r\n");
}

#[test]
fn setnx_setex_getdel() {
    let mut c = Client::new();
    assert_eq!(c.s("SETNX {t}a 1"), ":1\r\n");
    assert_eq!(c.s("SETNX {t}a 2"), ":0\r\n");
    assert_eq!(c.s("SETEX {t}b 100 x"), "+OK\r\n");
    assert_eq!(
        c.s("SETEX {t}b 0 x"),
        "-ERR invalid expire time in 'setex' command\r\n"
    );
    assert_eq!(
        c.s("PSETEX {t}b -1 x"),
        "-ERR invalid expire time in 'psetex' command\r\n"
    );
    assert_eq!(c.s("PSETEX {t}c 100000 y"), "+OK\r\n");
    assert_eq!(c.s("GETDEL {t}a"), "$1\r\n1\r\n");
    assert_eq!(c.s("GETDEL {t}a"), "$-1\r\n");
    assert_eq!(c.s("EXISTS {t}a {t}b {t}c {t}nope"), ":2\r\n");
    assert_eq!(c.s("DEL {t}b {t}c {t}nope"), ":2\r\n");
    assert_eq!(c.s("UNLINK {t}b"), ":0\r\n");
    assert_eq!(c.s("TYPE {t}b"), "+none\r\n");
    c.s("SET s v");
    assert_eq!(c.s("TYPE s"), "+string\r\n");
}

#[test]
fn counters() {
    let mut c = Client::new();
    assert_eq!(c.s("INCR n"), ":1\r\n");
    assert_eq!(c.s("INCRBY n 41"), ":42\r\n");
    assert_eq!(c.s("DECR n"), ":41\r\n");
    assert_eq!(c.s("DECRBY n 50"), ":-9\r\n");
    assert_eq!(c.s("GET n"), "$2\r\n-9\r\n");
    assert_eq!(
        c.s("INCRBY n x"),
        "-ERR value is not an integer or out of range\r\n"
    );
    c.s("SET s abc");
    assert_eq!(
        c.s("INCR s"),
        "-ERR value is not an integer or out of range\r\n"
    );
    c.s("SET big 9223372036854775807");
    assert_eq!(
        c.s("INCR big"),
        "-ERR increment or decrement would overflow\r\n"
    );
    assert_eq!(
        c.s("DECRBY n -9223372036854775808"),
        "-ERR decrement would overflow\r\n"
    );
    c.s("SET lead 007");
    assert_eq!(
        c.s("INCR lead"),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(c.s("INCRBYFLOAT f 10.5"), "$4\r\n10.5\r\n");
    assert_eq!(c.s("INCRBYFLOAT f 0.1"), "$4\r\n10.6\r\n");
    assert_eq!(c.s("INCRBYFLOAT f -5.6"), "$1\r\n5\r\n");
    assert_eq!(c.s("INCRBYFLOAT f 5.0e3"), "$4\r\n5005\r\n");
    assert_eq!(
        c.s("INCRBYFLOAT f abc"),
        "-ERR value is not a valid float\r\n"
    );
    assert_eq!(
        c.s("INCRBYFLOAT s 1"),
        "-ERR value is not a valid float\r\n"
    );
    c.s("SET huge 1e308");
    assert_eq!(
        c.s("INCRBYFLOAT huge 1e308"),
        "-ERR increment would produce NaN or Infinity\r\n"
    );
    c.s("HELLO 3");
    assert_eq!(c.s("INCRBYFLOAT f 1"), "$4\r\n5006\r\n");
}

#[test]
fn append_and_ranges() {
    let mut c = Client::new();
    assert_eq!(c.s("APPEND s Hello"), ":5\r\n");
    assert_eq!(c.s("APPEND s _World"), ":11\r\n");
    assert_eq!(c.s("STRLEN s"), ":11\r\n");
    assert_eq!(c.s("STRLEN nope"), ":0\r\n");
    assert_eq!(c.s("GETRANGE s 0 4"), "$5\r\nHello\r\n");
    assert_eq!(c.s("GETRANGE s -5 -1"), "$5\r\nWorld\r\n");
    assert_eq!(c.s("GETRANGE s 5 1"), "$0\r\n\r\n");
    assert_eq!(c.s("GETRANGE nope 0 -1"), "$0\r\n\r\n");
    assert_eq!(
        c.s("GETRANGE s a 1"),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(c.s("SETRANGE s 6 Redis"), ":11\r\n");
    assert_eq!(c.s("GET s"), "$11\r\nHello_Redis\r\n");
    assert_eq!(c.s("SETRANGE pad 3 ab"), ":5\r\n");
    assert_eq!(c.cmd("GET pad"), b"$5\r\n\0\0\0ab\r\n");
    assert_eq!(c.s("SETRANGE s -1 x"), "-ERR offset is out of range\r\n");
    assert_eq!(
        c.s("SETRANGE s 268435456 x"),
        "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
    );
    assert_eq!(c.args(&[b"SETRANGE", b"empty", b"5", b""]), b":0\r\n");
    assert_eq!(c.s("EXISTS empty"), ":0\r\n");
}

#[test]
fn mset_msetnx_mget() {
    let mut c = Client::new();
    assert_eq!(c.s("MSET {t}a 1 {t}b 2"), "+OK\r\n");
    assert_eq!(
        c.s("MSET {t}a 1 {t}b"),
        "-ERR wrong number of arguments for 'mset' command\r\n"
    );
    assert_eq!(
        c.s("MGET {t}a {t}b {t}c"),
        "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n"
    );
    assert_eq!(c.s("MSETNX {t}c 3 {t}a 9"), ":0\r\n");
    assert_eq!(c.s("EXISTS {t}c"), ":0\r\n");
    assert_eq!(c.s("MSETNX {t}c 3 {t}d 4"), ":1\r\n");
    assert_eq!(
        c.s("MGET {t}a {t}c {t}d"),
        "*3\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n4\r\n"
    );
    c.s("HELLO 3");
    assert_eq!(c.s("MGET {t}a {t}zz"), "*2\r\n$1\r\n1\r\n_\r\n");
}

#[test]
fn oversized_keys_are_refused() {
    let mut c = Client::new();
    let key = vec![b'k'; 65 * 1024];
    assert_eq!(
        c.args(&[b"SET", &key, b"v"]),
        b"-ERR key too long (66560 bytes, max 65536)\r\n"
    );
    assert_eq!(c.args(&[b"GET", &key]), b"$-1\r\n");
    let ok_key = vec![b'k'; 64 * 1024];
    assert_eq!(c.args(&[b"SET", &ok_key, b"v"]), b"+OK\r\n");
    assert_eq!(c.args(&[b"STRLEN", &ok_key]), b":1\r\n");
}
