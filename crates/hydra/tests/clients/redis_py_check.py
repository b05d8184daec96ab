"""redis-py, unmodified, against a Hydra cluster: RESP2 and RESP3, pipelines, TTLs, the
Hydra extension commands, and the errors for what Hydra refuses.

Usage: python3 redis_py_check.py PORT_A PORT_B PASSWORD   (two nodes of the same cluster)
Exits non-zero with an assertion message on the first difference from what Redis users expect.
"""

import sys
import time

import redis


def check(protocol, port_a, port_b):
    tag = f"p{protocol}"
    a = redis.Redis(host="127.0.0.1", port=port_a, protocol=protocol, socket_timeout=10, password=PASSWORD)
    b = redis.Redis(host="127.0.0.1", port=port_b, protocol=protocol, socket_timeout=10, password=PASSWORD)
    assert a.ping() is True
    assert a.set(f"{tag}:k", b"v1") is True
    assert a.get(f"{tag}:k") == b"v1"
    # Written through one node, read through another (W=2, R=2 of N=3).
    assert b.get(f"{tag}:k") == b"v1"
    assert a.get(f"{tag}:missing") is None
    # Plain SET overwrites, as in Redis (the `redis` bucket is last-write-wins).
    assert a.set(f"{tag}:k", b"v2") is True
    assert b.get(f"{tag}:k") == b"v2"
    assert a.set(f"{tag}:k", b"v3", get=True) == b"v2"
    assert a.strlen(f"{tag}:k") == 2
    assert a.exists(f"{tag}:k", f"{tag}:missing") == 1
    assert a.mset({f"{tag}:a": b"1", f"{tag}:b": b"2"}) is True
    assert a.mget([f"{tag}:a", f"{tag}:missing", f"{tag}:b"]) == [b"1", None, b"2"]
    # TTLs.
    assert a.set(f"{tag}:t", b"x", ex=100) is True
    assert 98 <= a.ttl(f"{tag}:t") <= 100
    assert 97000 <= a.pttl(f"{tag}:t") <= 100000
    assert a.persist(f"{tag}:t") is True
    assert a.ttl(f"{tag}:t") == -1
    assert a.ttl(f"{tag}:missing") == -2
    assert a.expire(f"{tag}:t", 50) is True
    assert 48 <= b.ttl(f"{tag}:t") <= 50
    assert a.set(f"{tag}:short", b"x", px=300) is True
    time.sleep(0.6)
    assert a.get(f"{tag}:short") is None
    # Deletes.
    assert a.delete(f"{tag}:a", f"{tag}:b", f"{tag}:missing") == 2
    assert b.get(f"{tag}:a") is None
    assert a.getdel(f"{tag}:k") == b"v3"
    assert a.get(f"{tag}:k") is None
    # Pipelines without MULTI: many commands in one round trip, replies in order.
    pipe = a.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"{tag}:p{i}", str(i).encode())
    pipe.get(f"{tag}:p7")
    pipe.set(f"{tag}:p7", b"seven")
    pipe.get(f"{tag}:p7")
    replies = pipe.execute()
    assert replies[:200] == [True] * 200, replies[:5]
    assert replies[200:] == [b"7", True, b"seven"], replies[200:]
    pipe = b.pipeline(transaction=False)
    for i in range(200):
        pipe.get(f"{tag}:p{i}")
    got = pipe.execute()
    assert got[8:] == [str(i).encode() for i in range(8, 200)], got[:10]
    # A transaction on one key (a rate limiter) applies at once, through compare-and-set.
    pipe = a.pipeline(transaction=True)
    pipe.incr(f"{tag}:rate").expire(f"{tag}:rate", 60).ttl(f"{tag}:rate")
    assert pipe.execute() == [1, True, 60]
    assert b.get(f"{tag}:rate") == b"1"
    # On several keys it is refused whole, never half-applied.
    try:
        a.pipeline(transaction=True).set(f"{tag}:x", 1).set(f"{tag}:y", 2).execute()
        raise AssertionError("a transaction on two keys was accepted")
    except redis.exceptions.ExecAbortError as e:
        assert "2 keys" in str(e), e
    assert a.mget(f"{tag}:x", f"{tag}:y") == [None, None]
    # WATCH: optimistic locking as redis-py does it; a write from elsewhere fails the EXEC.
    with a.pipeline() as pipe:
        pipe.watch(f"{tag}:rate")
        now = int(pipe.get(f"{tag}:rate"))
        b.set(f"{tag}:rate", b"100")
        pipe.multi()
        pipe.set(f"{tag}:rate", now + 1)
        try:
            pipe.execute()
            raise AssertionError("a changed watched key did not fail EXEC")
        except redis.WatchError:
            pass
    assert a.get(f"{tag}:rate") == b"100"
    # With no change in between it applies.
    with a.pipeline() as pipe:
        pipe.watch(f"{tag}:rate")
        now = int(pipe.get(f"{tag}:rate"))
        pipe.multi()
        pipe.set(f"{tag}:rate", now + 1)
        assert pipe.execute() == [True]
    assert b.get(f"{tag}:rate") == b"101"
    # Conditional writes go through compare-and-set (Paxos).
    assert a.set(f"{tag}:nx", b"1", nx=True) in (True, b"OK", "OK")
    assert a.set(f"{tag}:nx", b"2", nx=True) is None
    assert b.setnx(f"{tag}:nx", b"3") in (False, 0)
    assert b.get(f"{tag}:nx") == b"1"
    assert a.set(f"{tag}:nx", b"4", xx=True, get=True) == b"1"
    # Sessions in hashes, through the default pipeline (MULTI/EXEC): applied as one update.
    pipe = a.pipeline()
    pipe.hset(f"{tag}:sess", mapping={"user": "ada", "visits": 1}).expire(f"{tag}:sess", 3600)
    assert pipe.execute() == [2, True]
    assert b.hgetall(f"{tag}:sess") == {b"user": b"ada", b"visits": b"1"}
    assert b.hincrby(f"{tag}:sess", "visits", 4) == 5
    assert a.hget(f"{tag}:sess", "visits") == b"5"
    assert 3590 < b.ttl(f"{tag}:sess") <= 3600
    assert a.hdel(f"{tag}:sess", "user", "nosuch") == 1
    assert b.hkeys(f"{tag}:sess") == [b"visits"]
    assert b.type(f"{tag}:sess") == b"hash"
    # A tag set.
    assert a.sadd(f"{tag}:tags", "rust", "db", "kv") == 3
    assert b.smembers(f"{tag}:tags") == {b"rust", b"db", b"kv"}
    assert a.srem(f"{tag}:tags", "kv") == 1
    assert b.sismember(f"{tag}:tags", "kv") in (False, 0)
    assert b.scard(f"{tag}:tags") == 2
    # Wrong types raise redis-py's ResponseError with Redis's text.
    try:
        a.hget(f"{tag}:tags", "x")
        raise AssertionError("HGET of a set was accepted")
    except redis.exceptions.ResponseError as e:
        assert str(e).startswith("WRONGTYPE"), e
    assert a.delete(f"{tag}:sess", f"{tag}:tags") == 2
    assert b.exists(f"{tag}:sess", f"{tag}:tags") == 0
    # Hydra's extension commands: siblings and contexts in a `siblings` bucket.
    c = redis.Redis(host="127.0.0.1", port=port_a, protocol=protocol, single_connection_client=True, password=PASSWORD)
    assert c.execute_command("HYDRA.BUCKET", "default") in (b"OK", "OK", True)
    c.set(f"{tag}:s", b"left")
    c.set(f"{tag}:s", b"right")
    got = c.execute_command("HYDRA.GETALL", f"{tag}:s")
    if isinstance(got, list):  # RESP2: a flat list of pairs
        got = dict(zip(got[::2], got[1::2]))
    values = sorted(
        (dict(zip(s[::2], s[1::2])) if isinstance(s, list) else s)[b"value"] for s in got[b"siblings"]
    )
    assert values == [b"left", b"right"], got
    # A plain GET picks one sibling, the same one on every node.
    assert c.get(f"{tag}:s") in (b"left", b"right")
    ctx = got[b"context"]
    new_ctx = c.execute_command("HYDRA.PUT", f"{tag}:s", b"merged", ctx)
    assert new_ctx, new_ctx
    assert c.get(f"{tag}:s") == b"merged"
    receipt = c.execute_command("HYDRA.RECEIPT")
    assert b'"coordinator"' in receipt, receipt
    assert c.execute_command("HYDRA.CONSISTENCY", "all", "all") in (b"OK", "OK", True)
    assert c.get(f"{tag}:s") == b"merged"
    c.close()
    info = a.info()
    assert info["redis_version"], info
    a.close()
    b.close()
    print(f"redis-py {redis.__version__} protocol {protocol}: ok")


if __name__ == "__main__":
    port_a, port_b = int(sys.argv[1]), int(sys.argv[2])
    PASSWORD = sys.argv[3]
    for protocol in (2, 3):
        check(protocol, port_a, port_b)
