"""The HTTP API as hraftd-compat.md describes it: forwarding from followers,
read levels, atomic multi-key writes, and every bad-input row."""
import json
import subprocess
import time

import pytest

from conftest import CRAFTD, get_key, http, key_path, set_keys, wait_until


def test_follower_writes_joins_and_read_levels(cluster, report):
    n0 = cluster.add("node0").start()
    n0.wait_ready()
    n1 = cluster.add("node1", join=n0.haddr).start()
    n1.wait_ready()
    cluster.wait_members([n0, n1])
    follower = n1 if cluster.leader() is n0 else n0
    # a join sent to a follower is forwarded to the leader
    n2 = cluster.add("node2", join=follower.haddr).start()
    n2.wait_ready()
    nodes = [n0, n1, n2]
    cluster.wait_members(nodes)
    leader = cluster.leader()
    followers = [n for n in nodes if n is not leader]

    # writes sent to followers succeed
    for f in followers:
        r = set_keys(f.haddr, {f"from-{f.name}": f.name})
        assert r.status == 200, (f, r)
        assert get_key(leader.haddr, f"from-{f.name}") == (200, f.name)
    r = http(followers[0].haddr, "DELETE", key_path(f"from-{followers[0].name}"))
    assert r.status == 200, r
    assert get_key(leader.haddr, f"from-{followers[0].name}")[0] == 404

    # a linearizable read on a follower sees a write the leader just acknowledged
    t0, reads = time.monotonic(), 0
    for i in range(5):
        assert set_keys(leader.haddr, {"lin": str(i)}).status == 200
        for f in followers:
            assert get_key(f.haddr, "lin", level="linearizable") == (200, str(i)), (f, i)
            assert get_key(f.haddr, "lin") == (200, str(i)), (f, i)  # the default
            reads += 2
    report(f"linearizable read on a follower right after a write: "
           f"{(time.monotonic() - t0) / reads * 1000:.1f} ms per read (write included)")

    # level=weak works everywhere (followers forward it); level=none, maybe stale, converges
    for n in nodes:
        assert get_key(n.haddr, "lin", level="weak") == (200, "4"), n
        wait_until(f"level=none on {n.name}",
                   lambda n=n: get_key(n.haddr, "lin", level="none") == (200, "4"), timeout=5)
        assert get_key(n.haddr, "lin", level="LINEARIZABLE") == (200, "4"), n
        assert get_key(n.haddr, "nope", level="none")[0] == 404
        assert get_key(n.haddr, "nope", level="weak")[0] == 404

    # unknown levels: 400 with a JSON error
    for bad in ("bogus", "", "stale", "strong"):
        for n in (leader, followers[0]):
            r = http(n.haddr, "GET", "/key/lin?level=" + bad)
            assert r.status == 400, (n, bad, r)
            r.error()

    # a join of an existing member with the same id+addr, sent to a follower: 200
    r = http(followers[0].haddr, "POST", "/join", body={"id": n2.id, "addr": n2.raddr})
    assert r.status == 200, r
    cluster.wait_members(nodes)


def test_multi_key_post_is_atomic(cluster):
    (n,) = cluster.start(1)
    a = n.haddr
    r = http(a, "POST", "/key", body='{"a":"1","b":"2"}')
    assert r.status == 200, r
    assert get_key(a, "a") == (200, "1")
    assert get_key(a, "b") == (200, "2")

    # bad bodies change nothing, not even their valid pairs
    for body in ('{"a":"x","b":2}', '{"b":"y","c":"3","d":null}', '{"a":"x","c":["3"]}',
                 '{"a":"x","c":"3"} trailing', '{"a":"x","c":"3"', '{"a":"x","":"3"}'):
        r = http(a, "POST", "/key", body=body)
        assert r.status == 400, (body, r)
        r.error()
        assert get_key(a, "a") == (200, "1"), body
        assert get_key(a, "b") == (200, "2"), body
        assert get_key(a, "c")[0] == 404, body

    # a bigger batch lands whole
    batch = {f"k{i}": f"v{i}" for i in range(100)}
    assert set_keys(a, batch).status == 200
    for k, v in batch.items():
        assert get_key(a, k) == (200, v)


def test_bad_inputs(cluster):
    (n,) = cluster.start(1)
    a = n.haddr

    def call(method, path, body=None):
        return http(a, method, path, body=body)

    def json_error(r, status):
        assert r.status == status, r
        assert r.headers.get("content-type", "").startswith("application/json"), r.headers
        return r.error()

    # GET of a missing key: 404 with a JSON error (hraftd: 200 {"k":""})
    json_error(call("GET", "/key/missing"), 404)
    # /key, /key/, /key/a/b: 400 with a JSON error
    for p in ("/key", "/key/", "/key/a/b"):
        json_error(call("GET", p), 400)
    json_error(call("DELETE", "/key/"), 400)

    # POST bodies: bad JSON, [], non-string values, empty body, trailing bytes
    for body in ("{", "not json", "[]", '["a","b"]', '"str"', "1", "true",
                 '{"a":1}', '{"a":true}', '{"a":null}', '{"a":{"b":"c"}}', '{"a":["b"]}',
                 "", '{"a":"1"} x', '{"a":"1"}{"b":"2"}', '{"a":"1"}]'):
        msg = json_error(call("POST", "/key", body), 400)
        assert len(msg) > 3, (body, msg)
    assert get_key(a, "a")[0] == 404  # none of them wrote anything
    # the empty body's message says what is wrong
    assert "empty" in call("POST", "/key", "").error().lower()

    # {} and null: 200, nothing done; trailing whitespace is fine
    for body in ("{}", "null", " {} ", '{"w":"1"}\n'):
        r = call("POST", "/key", body)
        assert r.status == 200, (body, r)
    assert get_key(a, "w") == (200, "1")

    # duplicate keys: the last wins
    assert call("POST", "/key", '{"d":"1","d":"2"}').status == 200
    assert get_key(a, "d") == (200, "2")

    # keys with %2F and other escapes: the key is the decoded path segment
    odd = {"a/b": "slash", "x y": "space", "é€": "utf8", "q?&=#": "query", "%41": "pct",
           "<tag>": "<html> & \"quotes\""}
    assert set_keys(a, odd).status == 200
    for k, v in odd.items():
        assert get_key(a, k) == (200, v), k
    r = call("GET", "/key/a%2Fb")
    assert r.status == 200 and r.json() == {"a/b": "slash"}, r
    r = call("GET", "/key/a%2fb")
    assert r.status == 200 and r.json() == {"a/b": "slash"}, r

    # /keyfoo is not /key, and /keysx or /keys/a is not /keys (POST /keys itself
    # is a 405: test_txn_list.py)
    for method, path in (("GET", "/keyfoo/a"), ("GET", "/keyfoo"), ("POST", "/keysx"),
                         ("GET", "/keys/a")):
        json_error(call(method, path, "{}" if method == "POST" else None), 404)

    # other methods on /key: 405 with Allow (PUT /key/<k> is a write, see
    # test_revisions.py; PUT /key lacks the key)
    for method in ("PATCH", "OPTIONS"):
        for p in ("/key", "/key/a"):
            r = call(method, p, "{}" if method != "OPTIONS" else None)
            assert r.status == 405, (method, p, r)
            assert "allow" in r.headers, (method, p, r.headers)
            allowed = {m.strip() for m in r.headers["allow"].split(",")}
            assert {"GET", "PUT", "POST", "DELETE"} <= allowed, r.headers["allow"]
    json_error(call("PUT", "/key", "{}"), 400)
    # HEAD is GET without the body: same status and length, same ETag
    assert set_keys(a, {"hd": "hello"}).status == 200
    g, h = call("GET", "/key/hd"), call("HEAD", "/key/hd")
    assert h.status == g.status == 200 and h.body == b"", h
    assert h.headers["content-length"] == g.headers["content-length"], (g.headers, h.headers)
    assert h.headers.get("etag") == g.headers.get("etag"), (g.headers, h.headers)
    assert call("HEAD", "/key/none-such").status == 404

    # /status: non-GET is 405 with Allow and a JSON error (hraftd: no body)
    for method in ("POST", "PUT", "DELETE"):
        r = json_error(call(method, "/status", "{}" if method != "DELETE" else None), 405)

    # anything else: 404 with a JSON error
    for p in ("/", "/nope", "/status/x", "/joinx", "/KEY/a"):
        json_error(call("GET", p), 404)

    # DELETE: 200, also for a missing key
    assert call("DELETE", "/key/never-there").status == 200
    assert call("DELETE", "/key/d").status == 200
    assert get_key(a, "d")[0] == 404

    # /join validation: exactly two non-empty string fields id and addr
    for body in ("", "{", "[]", "{}", '{"id":"x"}', '{"addr":"h:1"}', '{"id":1,"addr":"h:1"}',
                 '{"id":"x","addr":2}', '{"id":"","addr":"h:1"}', '{"id":"x","addr":""}',
                 '{"id":null,"addr":"h:1"}', '{"id":"x","addr":"h:1"} x'):
        json_error(call("POST", "/join", body), 400)

    # the node still works and the members did not change
    st = n.status()
    members = st.get("members")
    if members is not None:
        assert [m["id"] for m in members] == [n.id], members
    assert set_keys(a, {"still": "ok"}).status == 200


def test_status_document(cluster):
    nodes = cluster.start(3)
    leader = cluster.leader()
    for n in nodes:
        st = n.status()
        assert st["me"]["id"] == n.id
        assert st["me"]["address"] == n.raddr
        assert st["leader"] == {**st["leader"], "id": leader.id, "address": leader.raddr}
        assert isinstance(st.get("followers"), list)
        for field in ("role", "term", "commit_index", "applied_index", "members",
                      "version", "uptime_s", "cluster_id"):
            if field not in st:
                pytest.fail(f"/status of {n.name} lacks {field!r}: {json.dumps(st)}")
        version = subprocess.run([CRAFTD, "-version"], capture_output=True, text=True).stdout
        assert version == f"craftd {st['version']}\n", (version, st["version"])
        assert isinstance(st["uptime_s"], int) and 0 <= st["uptime_s"] < 600, st
        assert len(st["cluster_id"]) == 16, st
        ids = sorted(m["id"] for m in st["members"])
        assert ids == sorted(x.id for x in nodes), st["members"]
        for m in st["members"]:
            x = cluster.by_id(m["id"])
            assert m["raft_addr"] == x.raddr, m
            assert m["http_addr"] == x.haddr, m
            assert m["voter"] is True, m
    assert leader.status()["role"].lower() == "leader"


def test_body_limit(cluster):
    n = cluster.add("small", extra=["-max-body", "1000"]).start()
    n.wait_ready()
    ok = json.dumps({"k": "x" * 900})
    assert http(n.haddr, "POST", "/key", body=ok).status == 200
    big = json.dumps({"big": "x" * 2000})
    r = http(n.haddr, "POST", "/key", body=big)
    assert r.status == 413, r
    r.error()
    assert get_key(n.haddr, "big")[0] == 404
    assert get_key(n.haddr, "k") == (200, "x" * 900)


def test_oversized_bodies_get_a_readable_413(cluster):
    """A client that sends a whole body over -max-body (2 MiB and 20 MiB
    against the 1 MiB default) before reading, as most do, reads the 413
    and its JSON error instead of a reset (the server drains the rest of
    the body before it closes); the node goes on serving."""
    n = cluster.add("big").start()
    n.wait_ready()
    for size in (2 << 20, 20 << 20, 2 << 20):
        body = json.dumps({"big": "x" * size})
        r = http(n.haddr, "POST", "/key", body=body, timeout=20.0)
        assert r.status == 413, r
        assert "limit is 1048576 bytes" in r.error(), r
        assert r.headers.get("connection") == "close", r.headers
        assert http(n.haddr, "POST", "/key", body={"after": str(size)}).status == 200
    assert get_key(n.haddr, "big")[0] == 404
    assert get_key(n.haddr, "after") == (200, str(2 << 20))


def test_no_quorum_is_503_within_timeout(cluster, report):
    nodes = cluster.start(3, extra=["-request-timeout-ms", "1000"])
    leader = cluster.leader()
    others = [x for x in nodes if x is not leader]
    for x in others:
        assert x.stop() == 0
    for target in (leader,):
        t0 = time.monotonic()
        r = set_keys(target.haddr, {"lost": "maybe"}, timeout=10)
        took = time.monotonic() - t0
        report(f"write without quorum: {r.status} after {took:.2f} s")
        assert r.status == 503, r
        r.error()
        assert took <= 3.0, f"answered after {took:.2f}s with -request-timeout-ms 1000"
    # a linearizable read cannot be served either; level=none still can
    r = http(leader.haddr, "GET", key_path("lost"), timeout=10)
    assert r.status in (503, 504), r
    r.error()
    assert get_key(leader.haddr, "nope", level="none")[0] == 404
