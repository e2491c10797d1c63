//! Expiry driven by the store clock: EX/PX/EXAT/PXAT/KEEPTTL, GETEX,
//! EXPIRE family with NX/XX/GT/LT, TTL/PTTL, PERSIST.

mod common;
use common::Client;

const T0_MS: u64 = 1_700_000_000_000;

fn client() -> Client {
    let mut c = Client::new();
    c.shard.set_clock_ms(T0_MS);
    c
}

#[test]
fn keys_vanish_when_the_clock_passes() {
    let mut c = client();
    assert_eq!(c.s("SET k v EX 10"), "+OK\r\n");
    assert_eq!(c.s("TTL k"), ":10\r\n");
    assert_eq!(c.s("PTTL k"), ":10000\r\n");
    c.shard.set_clock_ms(T0_MS + 9_999);
    assert_eq!(c.s("GET k"), "$1\r\nv\r\n");
    assert_eq!(c.s("PTTL k"), ":1\r\n");
    c.shard.set_clock_ms(T0_MS + 10_000);
    assert_eq!(c.s("GET k"), "$-1\r\n");
    assert_eq!(c.s("TTL k"), ":-2\r\n");
    assert_eq!(c.s("EXISTS k"), ":0\r\n");
}

#[test]
fn absolute_expiry_and_keepttl() {
    let mut c = client();
    let at_s = T0_MS / 1000 + 100;
    assert_eq!(c.s(&format!("SET a v EXAT {at_s}")), "+OK\r\n");
    assert_eq!(c.s("TTL a"), ":100\r\n");
    assert_eq!(c.s("EXPIRETIME a"), format!(":{at_s}\r\n"));
    assert_eq!(c.s(&format!("SET b v PXAT {}", T0_MS + 500)), "+OK\r\n");
    assert_eq!(c.s("PEXPIRETIME b"), format!(":{}\r\n", T0_MS + 500));
    assert_eq!(c.s("SET a w KEEPTTL"), "+OK\r\n");
    assert_eq!(c.s("TTL a"), ":100\r\n");
    assert_eq!(c.s("SET a x"), "+OK\r\n");
    assert_eq!(c.s("TTL a"), ":-1\r\n");
    assert_eq!(c.s("EXPIRETIME a"), ":-1\r\n");
    // A deadline already past deletes the key.
    assert_eq!(c.s(&format!("SET p v PXAT {}", T0_MS - 1)), "+OK\r\n");
    assert_eq!(c.s("EXISTS p"), ":0\r\n");
    // INCR keeps the TTL.
    c.s("SET n 1 EX 50");
    assert_eq!(c.s("INCR n"), ":2\r\n");
    assert_eq!(c.s("TTL n"), ":50\r\n");
}

#[test]
fn getex_options() {
    let mut c = client();
    c.s("SET k v");
    assert_eq!(c.s("GETEX k EX 20"), "$1\r\nv\r\n");
    assert_eq!(c.s("TTL k"), ":20\r\n");
    assert_eq!(c.s("GETEX k PERSIST"), "$1\r\nv\r\n");
    assert_eq!(c.s("TTL k"), ":-1\r\n");
    assert_eq!(c.s("GETEX k PX 1500"), "$1\r\nv\r\n");
    assert_eq!(c.s("PTTL k"), ":1500\r\n");
    assert_eq!(c.s("GETEX k"), "$1\r\nv\r\n");
    assert_eq!(
        c.s("GETEX k EX 0"),
        "-ERR invalid expire time in 'getex' command\r\n"
    );
    assert_eq!(c.s("GETEX k EX 1 PERSIST"), "-ERR syntax error\r\n");
    assert_eq!(c.s("GETEX k EX"), "-ERR syntax error\r\n");
    assert_eq!(c.s("GETEX nope EX 5"), "$-1\r\n");
    assert_eq!(c.s(&format!("GETEX k PXAT {}", T0_MS - 5)), "$1\r\nv\r\n");
    assert_eq!(c.s("EXISTS k"), ":0\r\n");
}

#[test]
fn expire_family_with_conditions() {
    let mut c = client();
    assert_eq!(c.s("EXPIRE nope 10"), ":0\r\n");
    c.s("SET k v");
    assert_eq!(c.s("EXPIRE k 100 XX"), ":0\r\n");
    assert_eq!(c.s("EXPIRE k 100 GT"), ":0\r\n");
    assert_eq!(c.s("EXPIRE k 100 NX"), ":1\r\n");
    assert_eq!(c.s("EXPIRE k 200 NX"), ":0\r\n");
    assert_eq!(c.s("EXPIRE k 50 GT"), ":0\r\n");
    assert_eq!(c.s("EXPIRE k 150 GT"), ":1\r\n");
    assert_eq!(c.s("EXPIRE k 160 LT"), ":0\r\n");
    assert_eq!(c.s("PEXPIRE k 5000 LT"), ":1\r\n");
    assert_eq!(c.s("PTTL k"), ":5000\r\n");
    assert_eq!(c.s("EXPIRE k 10 XX GT"), ":1\r\n");
    assert_eq!(c.s("TTL k"), ":10\r\n");
    assert_eq!(
        c.s("EXPIRE k 10 NX XX"),
        "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
    );
    assert_eq!(
        c.s("EXPIRE k 10 GT LT"),
        "-ERR GT and LT options at the same time are not compatible\r\n"
    );
    assert_eq!(c.s("EXPIRE k 10 FOO"), "-ERR Unsupported option FOO\r\n");
    assert_eq!(
        c.s("EXPIRE k ten"),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        c.s("EXPIRE k 9223372036854775807"),
        "-ERR invalid expire time in 'expire' command\r\n"
    );
    assert_eq!(c.s(&format!("EXPIREAT k {}", T0_MS / 1000 + 30)), ":1\r\n");
    assert_eq!(c.s("TTL k"), ":30\r\n");
    assert_eq!(c.s(&format!("PEXPIREAT k {}", T0_MS + 700)), ":1\r\n");
    assert_eq!(c.s("PTTL k"), ":700\r\n");
    assert_eq!(c.s("PERSIST k"), ":1\r\n");
    assert_eq!(c.s("PERSIST k"), ":0\r\n");
    assert_eq!(c.s("TTL k"), ":-1\r\n");
    assert_eq!(c.s("EXPIRE k -1"), ":1\r\n");
    assert_eq!(c.s("EXISTS k"), ":0\r\n");
}
