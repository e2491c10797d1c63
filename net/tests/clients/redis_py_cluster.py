"""Drive a Tessera node with redis-py's RedisCluster, as a user would.

Usage: python3 redis_py_cluster.py HOST PORT PROTOCOL(2|3)

Every key carries the protocol in its name, so a RESP2 and a RESP3 run can
share one server without seeing each other's keys. Exits non-zero with a
message on the first mismatch; a missing `redis` module exits 3 with the
install hint, so the Rust test that runs this script fails loudly.
"""
import sys
import time

try:
    import redis
    from redis.cluster import RedisCluster
except ImportError as err:
    print(f"python3 module `redis` (>= 5) is required: pip install 'redis>=5' "
          f"(.ci/run installs it): {err}", file=sys.stderr)
    sys.exit(3)

# How many plain keys are spread over the cores: enough that every core owns
# some whatever the slot split.
KEY_COUNT = 500
PIPELINE_LEN = 50


def check(condition, message):
    """An assert that survives `python3 -O`."""
    if not condition:
        raise AssertionError(message)


def main() -> None:
    host, port, protocol = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    check(protocol in (2, 3), f"protocol must be 2 or 3, got {protocol}")
    major = int(redis.__version__.split(".")[0])
    check(major >= 5, f"redis-py >= 5 is required (RESP3), found {redis.__version__}")
    rc = RedisCluster(host=host, port=port, protocol=protocol, decode_responses=True,
                      socket_timeout=5)
    prefix = f"py{protocol}"
    nodes = rc.get_primaries()
    check(len(nodes) >= 2, f"expected one primary per core, got {nodes}")

    # The handshake really negotiated the protocol asked for.
    for node in nodes:
        hello = rc.execute_command("HELLO", protocol, target_nodes=node)
        if isinstance(hello, list):  # RESP2: a flat list of pairs
            hello = dict(zip(hello[::2], hello[1::2]))
        check(hello["proto"] == protocol and hello["mode"] == "cluster", hello)

    # Keys spread over every core: redis-py hashes each to its node.
    keys = [f"{prefix}:key:{i}" for i in range(KEY_COUNT)]
    for i, key in enumerate(keys):
        check(rc.set(key, f"value-{i}") is True, key)
    for i, key in enumerate(keys):
        got = rc.get(key)
        check(got == f"value-{i}", f"{key}: {got!r}")
    owners = {rc.get_node_from_key(k).port for k in keys}
    check(owners == {n.port for n in nodes}, f"keys landed on {owners}, nodes {nodes}")
    check(rc.get(f"{prefix}:missing") is None, "missing key reads as None")

    # Expiry: a TTL is reported, removed, and a short one really expires.
    ttl_key = f"{prefix}:ttl"
    check(rc.set(ttl_key, "x", ex=100) is True, ttl_key)
    ttl = rc.ttl(ttl_key)
    check(0 < ttl <= 100, f"ttl {ttl}")
    check(rc.persist(ttl_key) is True, "persist")
    check(rc.ttl(ttl_key) == -1, "no ttl after persist")
    check(rc.ttl(f"{prefix}:missing") == -2, "ttl of a missing key")
    short_key = f"{prefix}:short"
    check(rc.set(short_key, "x", px=150) is True, short_key)
    check(0 < rc.pttl(short_key) <= 150, "pttl")
    time.sleep(0.4)
    check(rc.get(short_key) is None, "expired key still readable")
    check(rc.exists(short_key) == 0, "expired key still exists")

    # Counters.
    counter = f"{prefix}:counter"
    check(rc.incr(counter) == 1, "incr")
    check(rc.incrby(counter, 41) == 42, "incrby")
    check(rc.decr(counter) == 41, "decr")
    check(rc.decrby(counter, 1) == 40, "decrby")
    check(abs(rc.incrbyfloat(counter, 2.5) - 42.5) < 1e-9, "incrbyfloat")
    check(rc.delete(counter) == 1, "delete counter")
    check(rc.get(counter) is None, "deleted counter")

    # Multi-key commands inside one hash tag go to one core.
    tag = "{" + prefix + ":user1}"
    check(rc.mset({f"{tag}:a": "1", f"{tag}:b": "2"}) is True, "mset")
    check(rc.mget([f"{tag}:a", f"{tag}:b", f"{tag}:c"]) == ["1", "2", None], "mget in tag")
    check(rc.msetnx({f"{tag}:a": "9", f"{tag}:c": "3"}) is False, "msetnx with one existing")
    check(rc.get(f"{tag}:c") is None, "msetnx wrote nothing")

    # Across slots: the cluster client splits MGET per slot and reassembles
    # the values in order; the plain MGET stays refused.
    spread = keys[:40] + [f"{prefix}:missing"]
    expected = [f"value-{i}" for i in range(40)] + [None]
    check(rc.mget_nonatomic(spread) == expected, "mget_nonatomic across slots")
    try:
        rc.mget(spread)
        check(False, "cross-slot MGET was accepted")
    except redis.exceptions.RedisClusterException:
        pass
    # Sent to one node as is, the server itself answers -CROSSSLOT.
    plain = redis.Redis(host=host, port=port, protocol=protocol, decode_responses=True,
                        socket_timeout=5)
    try:
        plain.execute_command("MGET", *spread)
        check(False, "server accepted a cross-slot MGET")
    except redis.exceptions.ResponseError as err:
        check("slot" in str(err), f"cross-slot error: {err}")
    plain.close()

    # A pipeline is split per node by the client.
    pipe = rc.pipeline()
    for i in range(PIPELINE_LEN):
        pipe.set(f"{prefix}:pipe:{i}", i)
    for i in range(PIPELINE_LEN):
        pipe.incr(f"{prefix}:pipe:{i}")
    for i in range(PIPELINE_LEN):
        pipe.get(f"{prefix}:pipe:{i}")
    results = pipe.execute()
    check(results[:PIPELINE_LEN] == [True] * PIPELINE_LEN, results[:PIPELINE_LEN])
    check(results[PIPELINE_LEN:2 * PIPELINE_LEN] == [i + 1 for i in range(PIPELINE_LEN)],
          "pipelined incr")
    check(results[2 * PIPELINE_LEN:] == [str(i + 1) for i in range(PIPELINE_LEN)],
          "pipelined get")

    # SCAN through the cluster client visits every node and finds each key
    # exactly once.
    scanned = list(rc.scan_iter(match=f"{prefix}:key:*", count=64))
    check(len(scanned) == len(set(scanned)), "scan returned a key twice")
    check(set(scanned) == set(keys), f"scan found {len(scanned)} of {len(keys)} keys")

    # Every key is visible through the node it lives on.
    per_node = [rc.dbsize(target_nodes=node) for node in nodes]
    check(all(size > 0 for size in per_node), f"dbsize per node {per_node}")

    # Bad input surfaces as redis.ResponseError and costs no data.
    text_key = f"{prefix}:text"
    check(rc.set(text_key, "not a number") is True, text_key)
    for bad in (lambda: rc.incr(text_key),
                lambda: rc.incrbyfloat(text_key, 1.0),
                lambda: rc.set(text_key, "x", ex=0),
                lambda: rc.expire(text_key, "soon")):
        try:
            bad()
            check(False, "bad input was accepted")
        except redis.ResponseError:
            pass
    check(rc.get(text_key) == "not a number", "bad input changed the value")
    check(rc.ttl(text_key) == -1, "bad input set a ttl")

    # DEL across slots: split per slot by the client, counts summed.
    check(rc.delete(*keys) == len(keys), "delete across slots")
    check(rc.mget_nonatomic(keys[:10]) == [None] * 10, "deleted keys still readable")
    check(not list(rc.scan_iter(match=f"{prefix}:key:*", count=64)), "scan after delete")
    rc.close()
    print(f"redis-py {redis.__version__} RedisCluster RESP{protocol}: ok")


if __name__ == "__main__":
    try:
        main()
    except (redis.RedisError, AssertionError) as err:
        print(f"redis-py RedisCluster failed: {err!r}", file=sys.stderr)
        sys.exit(1)
