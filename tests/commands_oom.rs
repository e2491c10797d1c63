//! The memory limit: writes beyond it get -OOM, every write acknowledged
//! +OK is readable afterwards, and deletes still work on a full store.

mod common;
use common::{config, encode, parse_reply, Client, Value};

const LIMIT_BYTES: usize = 2 << 20;
const VALUE_LEN: usize = 8 * 1024;

fn value_of(i: usize) -> Vec<u8> {
    vec![b'a' + (i % 26) as u8; VALUE_LEN]
}

#[test]
fn no_acknowledged_write_is_lost_at_the_limit() {
    let mut c = Client::with_config(config(1, 0, None, LIMIT_BYTES));
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut next = 0usize;
    // Pipelined rounds of 16 SETs until the limit refuses several.
    while refused < 20 {
        assert!(next < 10_000, "the limit never refused a write");
        let mut input = Vec::new();
        let keys: Vec<usize> = (next..next + 16).collect();
        next += 16;
        for &i in &keys {
            input.extend(encode(&[b"SET", format!("k{i}").as_bytes(), &value_of(i)]));
        }
        let out = c.round(&input);
        let mut pos = 0;
        for &i in &keys {
            let (reply, used) = parse_reply(&out[pos..]);
            pos += used;
            match reply {
                Value::Simple(ok) if ok == "OK" => acknowledged.push(i),
                Value::Error(e) => {
                    assert_eq!(e, "OOM command not allowed when used memory > 'maxmemory'.");
                    refused += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(pos, out.len());
    }
    assert!(acknowledged.len() > 50, "{} writes fit", acknowledged.len());
    for &i in &acknowledged {
        let got = c.args(&[b"GET", format!("k{i}").as_bytes()]);
        let mut expected = format!("${VALUE_LEN}\r\n").into_bytes();
        expected.extend(value_of(i));
        expected.extend(b"\r\n");
        assert!(got == expected, "acknowledged key k{i} lost");
    }
    // Deleting works on a full store (deletes may use a small reserve).
    for &i in &acknowledged {
        assert_eq!(c.args(&[b"DEL", format!("k{i}").as_bytes()]), b":1\r\n");
    }
    assert_eq!(c.s("DBSIZE"), ":0\r\n");
    // Emptying the store gives the memory back at once.
    assert_eq!(c.s("FLUSHDB"), "+OK\r\n");
    assert_eq!(c.args(&[b"SET", b"again", &value_of(0)]), b"+OK\r\n");
}
