//! Property tests of framing: any split of a valid pipeline into reads gives
//! the same replies as one read, and arbitrary bytes never panic a shard.

mod common;
use common::{encode, Client};
use proptest::prelude::*;

const CLOCK_MS: u64 = 1_700_000_000_000;

fn client() -> Client {
    let mut c = Client::new();
    c.shard.set_clock_ms(CLOCK_MS);
    c
}

/// One request's bytes: multibulk commands over a few keys, plus inline ones.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec!["a", "b", "{t}c", "{t}d"]);
    let value = prop::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        (key.clone(), value.clone()).prop_map(|(k, v)| encode(&[b"SET", k.as_bytes(), &v])),
        key.clone().prop_map(|k| encode(&[b"GET", k.as_bytes()])),
        key.clone().prop_map(|k| encode(&[b"INCR", k.as_bytes()])),
        key.clone().prop_map(|k| encode(&[b"DEL", k.as_bytes()])),
        (key.clone(), value.clone()).prop_map(|(k, v)| encode(&[b"APPEND", k.as_bytes(), &v])),
        (key.clone(), 1..1000i64).prop_map(|(k, s)| encode(&[
            b"EXPIRE",
            k.as_bytes(),
            s.to_string().as_bytes()
        ])),
        key.clone().prop_map(|k| encode(&[b"TTL", k.as_bytes()])),
        Just(encode(&[b"MGET", b"{t}c", b"{t}d"])),
        Just(encode(&[b"NOSUCH", b"x"])),
        Just(b"PING\r\n".to_vec()),
        key.prop_map(|k| format!("STRLEN {k}\r\n").into_bytes()),
        Just(b"*0\r\n".to_vec()),
        Just(encode(&[b"HELLO", b"3"])),
    ]
}

fn run_in_reads(pipeline: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut c = client();
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        out.extend(c.round(&pipeline[from..cut]));
        from = cut;
    }
    out.extend(c.round(&pipeline[from..]));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_split_gives_the_same_replies(
        requests in prop::collection::vec(request(), 1..24),
        cut_seeds in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let pipeline: Vec<u8> = requests.concat();
        let whole = run_in_reads(&pipeline, &[]);
        let mut cuts: Vec<usize> = cut_seeds.iter().map(|i| i.index(pipeline.len() + 1)).collect();
        cuts.sort_unstable();
        let split = run_in_reads(&pipeline, &cuts);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn garbage_never_panics(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..8),
        prefix in prop::sample::select(vec![&b""[..], b"*", b"*2\r\n$", b"*1\r\n$3\r\n", b"\"", b"SET '"]),
    ) {
        let mut c = client();
        let mut first = prefix.to_vec();
        first.extend_from_slice(&chunks[0]);
        c.round(&first);
        for chunk in &chunks[1..] {
            if c.closed {
                break;
            }
            c.round(chunk);
        }
    }
}
