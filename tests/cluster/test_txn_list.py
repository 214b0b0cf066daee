"""POST /txn, GET /keys and DELETE /keys?prefix= on a 3-node cluster, through
the leader and through a follower (docs/http-api.md, "Transactions and
listing"): both branches, every compare target and comparison, atomicity,
limits, errors, byte-wise ordered listing with paging, keys_only,
count_only, start/end, and prefix deletes."""
import base64
import time
import urllib.parse

import pytest

from conftest import Cluster, get_key, http, kill_leader, set_keys


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    c = Cluster(str(tmp_path_factory.mktemp("txnlist")))
    try:
        nodes = c.start(3)
        leader = c.leader()
        follower = next(n for n in nodes if n is not leader)
        yield leader, follower
    finally:
        c.stop_all()


VIA = pytest.mark.parametrize("who", ["leader", "follower"])


def node_of(nodes, who):
    return nodes[0] if who == "leader" else nodes[1]


def txn(node, body, status=200):
    r = http(node.haddr, "POST", "/txn", body=body)
    assert r.status == status, r
    if status == 200:
        doc = r.json()
        assert set(doc) == {"succeeded", "index", "results"}, doc
        assert isinstance(doc["index"], int) and doc["index"] > 0, doc
        assert r.headers.get("x-craftd-index") == str(doc["index"]), r.headers
        return doc
    r.error()
    return r


def meta(node, key):
    """The ?meta object of key through a txn get, or None when absent."""
    doc = txn(node, {"success": [{"op": "get", "key": key}]})
    res = doc["results"][0]
    if res == {"found": False}:
        return None
    assert res["key"] == key, res
    return res


def key_bytes(entry, name="key"):
    if name in entry:
        return entry[name].encode("utf-8")
    return base64.b64decode(entry[name + "_b64"], validate=True)


def q(b):
    return urllib.parse.quote(b, safe="")


def list_keys(node, query, status=200):
    r = http(node.haddr, "GET", "/keys" + ("?" + query if query else ""))
    assert r.status == status, (query, r)
    if status != 200:
        r.error()
        return r
    doc = r.json()
    assert isinstance(doc["index"], int), doc
    assert int(r.headers["x-craftd-index"]) >= doc["index"] > 0, (r.headers, doc)
    return doc


def list_all(node, query, limit):
    """Every key of the query, page by page; (keys, pages)."""
    keys, after, pages = [], None, 0
    while True:
        qs = f"{query}&limit={limit}" + (f"&after={q(after)}" if after is not None else "")
        doc = list_keys(node, qs)
        pages += 1
        assert len(doc["keys"]) <= limit, doc
        keys += [key_bytes(k) for k in doc["keys"]]
        if not doc["more"]:
            return keys, pages
        after = key_bytes(doc, "next")
        assert after == keys[-1], (after, keys[-1])
        assert pages < 10000


# ---- transactions ---------------------------------------------------------

@VIA
def test_txn_branches_and_results(nodes, who):
    n = node_of(nodes, who)
    p = f"tb-{who}/"
    assert set_keys(n.haddr, {p + "a": "1", p + "tmp/x": "x", p + "tmp/y": "y"}).status == 200
    a = meta(n, p + "a")
    assert a["value"] == "1" and a["version"] == 1 and a["lease"] == "0", a
    assert a["create_index"] == a["mod_index"] > 0, a

    doc = txn(n, {
        "compare": [{"key": p + "a", "mod_index": a["mod_index"]},
                    {"key": p + "b", "exists": False}],
        "success": [{"op": "put", "key": p + "a", "value": "2", "lease": "0"},
                    {"op": "put", "key": p + "b", "value": "new"},
                    {"op": "delete_prefix", "key": p + "tmp/"},
                    {"op": "delete", "key": p + "gone"},
                    {"op": "get", "key": p + "a"},
                    {"op": "get", "key": p + "nothing"}],
        "failure": [{"op": "put", "key": p + "failed", "value": "!"}]})
    assert doc["succeeded"] is True, doc
    r = doc["results"]
    assert r[0] == {} and r[1] == {}, r
    assert r[2] == {"deleted": 2} and r[3] == {"deleted": 0}, r
    assert r[4]["value"] == "2" and r[4]["version"] == 2 and r[4]["mod_index"] == doc["index"]
    assert r[4]["create_index"] == a["create_index"], r[4]
    assert r[5] == {"found": False}, r
    assert get_key(n.haddr, p + "b") == (200, "new")
    assert get_key(n.haddr, p + "tmp/x")[0] == 404
    assert get_key(n.haddr, p + "failed")[0] == 404

    # the same compare again no longer holds: the failure branch runs, only it
    doc = txn(n, {
        "compare": [{"key": p + "a", "mod_index": a["mod_index"]}],
        "success": [{"op": "put", "key": p + "a", "value": "3"}],
        "failure": [{"op": "put", "key": p + "failed", "value": "!"},
                    {"op": "get", "key": p + "a"}]})
    assert doc["succeeded"] is False, doc
    assert doc["results"][0] == {} and doc["results"][1]["value"] == "2", doc
    assert get_key(n.haddr, p + "failed") == (200, "!")
    assert get_key(n.haddr, p + "a") == (200, "2")

    # an empty transaction is one entry too
    doc = txn(n, {})
    assert doc["succeeded"] is True and doc["results"] == [], doc


@VIA
def test_txn_every_compare(nodes, who, report):
    n = node_of(nodes, who)
    k = f"cmp-{who}"
    assert set_keys(n.haddr, {k: "v1"}).status == 200
    assert set_keys(n.haddr, {k: "v2"}).status == 200
    m = meta(n, k)
    assert m["version"] == 2 and m["create_index"] < m["mod_index"], m
    absent = f"cmp-{who}-absent"
    t0 = time.monotonic()
    ops = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b,
           "<": lambda a, b: a < b, ">": lambda a, b: a > b}
    checked = 0
    for target in ("mod_index", "version", "create_index"):
        for cmp, fn in ops.items():
            for delta in (-1, 0, 1):
                want = m[target] + delta
                for key, have in ((k, m[target]), (absent, 0)):
                    doc = txn(n, {"compare": [{"key": key, target: want, "cmp": cmp}]})
                    assert doc["succeeded"] is fn(have, want), (target, cmp, key, want, doc)
                    checked += 1
    for cmp in ("=", "!="):
        for val, same in (("v2", True), ("v1", False), ("", False)):
            doc = txn(n, {"compare": [{"key": k, "value": val, "cmp": cmp}]})
            assert doc["succeeded"] is (same if cmp == "=" else not same), (cmp, val, doc)
            # an absent key has no value: false either way
            doc = txn(n, {"compare": [{"key": absent, "value": val, "cmp": cmp}]})
            assert doc["succeeded"] is False, (cmp, val, doc)
            checked += 2
        for ex in (True, False):
            for key, present in ((k, True), (absent, False)):
                doc = txn(n, {"compare": [{"key": key, "exists": ex, "cmp": cmp}]})
                assert doc["succeeded"] is ((present == ex) == (cmp == "=")), (key, ex, cmp)
                checked += 1
    # value_b64 and key_b64 stand for value and key
    doc = txn(n, {"compare": [{"key_b64": base64.b64encode(k.encode()).decode(),
                               "value_b64": base64.b64encode(b"v2").decode()}]})
    assert doc["succeeded"] is True, doc
    checked += 1
    assert checked == 3 * 4 * 3 * 2 + 2 * 3 * 2 + 2 * 2 * 2 + 1
    report(f"POST /txn of one compare on the {who}, one client: "
           f"{(time.monotonic() - t0) / checked * 1000:.1f} ms each ({checked} txns)")


@VIA
def test_txn_atomic(nodes, who):
    n = node_of(nodes, who)
    p = f"atom-{who}/"
    assert set_keys(n.haddr, {p + "held": "1"}).status == 200
    before = list_keys(n, f"prefix={q(p.encode())}")
    # the first compare holds, the last does not: nothing of success is written
    doc = txn(n, {
        "compare": [{"key": p + "held", "exists": True}, {"key": p + "held", "value": "2"}],
        "success": [{"op": "put", "key": p + f"w{i}", "value": "x"} for i in range(100)] +
                   [{"op": "delete", "key": p + "held"}]})
    assert doc["succeeded"] is False and doc["results"] == [], doc
    after = list_keys(n, f"prefix={q(p.encode())}")
    assert after["keys"] == before["keys"], (before, after)
    # all compares hold: all 101 ops, in one entry (every key has its index)
    doc = txn(n, {
        "compare": [{"key": p + "held", "exists": True}, {"key": p + "held", "value": "1"}],
        "success": [{"op": "put", "key": p + f"w{i}", "value": "x"} for i in range(100)] +
                   [{"op": "delete", "key": p + "held"}]})
    assert doc["succeeded"] is True and len(doc["results"]) == 101, doc
    page = list_keys(n, f"prefix={q(p.encode())}")
    assert len(page["keys"]) == 100, page
    assert {k["mod_index"] for k in page["keys"]} == {doc["index"]}, page


@VIA
def test_txn_bad_requests(nodes, who):
    n = node_of(nodes, who)
    p = f"bad-{who}/"

    def body(n_cmp=0, n_ops=0, branch="success"):
        # the compares hold (p + "c" is absent) for success, fail for failure
        return {"compare": [{"key": p + "c", "exists": branch == "failure"}] * n_cmp,
                branch: [{"op": "put", "key": p + f"{branch}{i}", "value": "v"}
                         for i in range(n_ops)]}

    doc = txn(n, body(128, 128))
    assert doc["succeeded"] is True and len(doc["results"]) == 128, doc
    doc = txn(n, body(128, 128, "failure"))
    assert doc["succeeded"] is False and len(doc["results"]) == 128, doc
    for b, why in ((body(129, 1), "at most 128"), (body(1, 129), "at most 128"),
                   (body(1, 129, "failure"), "at most 128")):
        r = http(n.haddr, "POST", "/txn", body=b)
        assert r.status == 400 and why in r.error(), r
    bad = ['', '{', '{"compare":[}', '[]', '"x"', '{"success":[{"op":"put","key":"k"}]}',
           '{"success":[{"op":"frob","key":"k"}]}', '{"success":{}}', '{"compares":[]}',
           '{"compare":[{"key":"k","value":"v","cmp":"<"}]}',
           '{"compare":[{"key":"k","version":-1}]}',
           '{"compare":[{"key":"k"}]}', '{"compare":[{"key":"","exists":true}]}',
           '{"compare":[{"key_b64":"%%%","exists":true}]}',
           '{"success":[{"op":"delete_prefix","key":""}]}',
           '{"success":[{"op":"put","key":"' + "k" * 5000 + '","value":""}]}']
    for b in bad:
        r = http(n.haddr, "POST", "/txn", body=b)
        assert r.status == 400, (b, r)
        assert r.headers.get("content-type") == "application/json", r.headers
        r.error()
    # a lease that does not exist: 404, nothing written
    r = http(n.haddr, "POST", "/txn", body={"success": [
        {"op": "put", "key": p + "leased", "value": "v", "lease": "7"}]})
    assert r.status == 404 and r.error() == "lease not found", r
    assert int(r.headers["x-craftd-index"]) > 0, r.headers
    assert get_key(n.haddr, p + "leased")[0] == 404
    for m in ("GET", "PUT", "DELETE"):
        r = http(n.haddr, m, "/txn")
        assert r.status == 405 and r.headers.get("allow") == "POST", (m, r)
        r.error()
    assert list_keys(n, f"prefix={q(p.encode())}&count_only")["count"] == 128 + 128


# ---- listing ---------------------------------------------------------------

ODD_KEYS = [b"ls/\xff\x00", b"ls/\x80", b"ls/a\xff", b"ls/\x00", b"ls/\x7f", b"ls/a",
            b"ls/a\x00", b"ls/\xc3\xa9", b"ls/\xf0\x9f\x98\x80", b"ls/\xed\xa0\x80"]


@pytest.fixture(scope="module")
def listed(nodes):
    leader = nodes[0]
    plain = {f"ls/k{i:05d}": f"v{i}" for i in range(2500)}
    assert set_keys(leader.haddr, plain).status == 200
    doc = txn(leader, {"success": [
        {"op": "put", "key_b64": base64.b64encode(k).decode(),
         "value_b64": base64.b64encode(b"\xfe" + k).decode()} for k in ODD_KEYS]})
    assert doc["succeeded"], doc
    return sorted([k.encode() for k in plain] + ODD_KEYS)


@VIA
def test_listing_order_and_paging(nodes, listed, who, report):
    n = node_of(nodes, who)
    t0 = time.monotonic()
    keys, pages = list_all(n, "prefix=ls%2F", 1000)
    report(f"GET /keys on the {who}: {len(keys)} keys in {pages} linearizable pages of "
           f"1000 in {(time.monotonic() - t0) * 1000:.1f} ms")
    assert keys == listed, "not the keys in byte-wise order"
    assert pages == 3, pages
    keys, pages = list_all(n, "prefix=ls%2F&keys_only", 777)
    assert keys == listed and pages == 4
    # values come back, as strings or as base64
    doc = list_keys(n, f"start={q(b'ls/')}&end={q(b'ls/b')}")
    got = {key_bytes(k): key_bytes(k, "value") for k in doc["keys"]}
    for k in ODD_KEYS:
        if k < b"ls/b":
            assert got[k] == b"\xfe" + k, (k, got.get(k))
    assert all("mod_index" in k for k in doc["keys"])
    # keys_only has no values
    doc = list_keys(n, "prefix=ls%2F&keys_only&limit=5")
    assert len(doc["keys"]) == 5 and doc["more"] is True, doc
    assert all(set(k) in ({"key", "mod_index"}, {"key_b64", "mod_index"}) for k in doc["keys"])
    # default limit 1000
    doc = list_keys(n, "prefix=ls%2F")
    assert len(doc["keys"]) == 1000 and doc["more"] is True, len(doc["keys"])
    # start/end: half-open, byte-wise
    lo, hi = b"ls/k00100", b"ls/k00200"
    doc = list_keys(n, f"start={q(lo)}&end={q(hi)}&keys_only")
    assert [key_bytes(k) for k in doc["keys"]] == [k for k in listed if lo <= k < hi]
    assert doc["more"] is False and key_bytes(doc, "next") == b"ls/k00199"
    doc = list_keys(n, f"start={q(b'ls/a')}&end={q(b'ls/b')}&keys_only")
    assert [key_bytes(k) for k in doc["keys"]] == [b"ls/a", b"ls/a\x00", b"ls/a\xff"]
    high = b"ls/\xf0"
    doc = list_keys(n, f"start={q(high)}&keys_only")  # no end: other tests' keys follow
    got = [key_bytes(k) for k in doc["keys"]]
    want = [k for k in listed if k >= high]
    assert got[:len(want)] == want and got == sorted(got), got
    assert all(not k.startswith(b"ls/") for k in got[len(want):]), got
    doc = list_keys(n, f"start={q(b'ls/k02499')}&end={q(b'ls/k02499')}")
    assert doc["keys"] == [] and doc["more"] is False and "next" not in doc, doc
    # after: strictly after, also with a key that does not exist
    doc = list_keys(n, f"prefix=ls%2F&after={q(b'ls/k00999x')}&limit=2&keys_only")
    assert [key_bytes(k) for k in doc["keys"]] == [b"ls/k01000", b"ls/k01001"], doc


@VIA
def test_count_only(nodes, listed, who):
    n = node_of(nodes, who)
    doc = list_keys(n, "prefix=ls%2F&count_only")
    assert doc == {"index": doc["index"], "count": len(listed)}, doc
    doc = list_keys(n, f"start={q(b'ls/k01000')}&end={q(b'ls/k02000')}&count_only")
    assert doc["count"] == 1000
    # past its cap (limit= with count_only) the count says where to go on
    total, after, rounds = 0, None, 0
    while True:
        qs = "prefix=ls%2F&count_only&limit=1000" + (f"&after={q(after)}" if after else "")
        doc = list_keys(n, qs)
        total += doc["count"]
        rounds += 1
        if not doc.get("more"):
            break
        assert doc["count"] == 1000, doc
        after = key_bytes(doc, "next")
        assert after == listed[total - 1], (after, total)
    assert total == len(listed) and rounds == 3, (total, rounds)


@VIA
def test_listing_is_linearizable(nodes, who):
    leader, n = nodes[0], node_of(nodes, who)
    p = f"lin-{who}/"
    for i in range(5):
        w = txn(leader, {"success": [{"op": "put", "key": p + f"{i}", "value": "x"},
                                     {"op": "put", "key": p + "last", "value": str(i)}]})
        # linearizable by default: the write the leader just answered is seen
        doc = list_keys(n, f"prefix={q(p.encode())}")
        assert doc["index"] >= w["index"], (doc, w)
        assert len(doc["keys"]) == i + 2, (i, doc)
        last = doc["keys"][-1]
        assert last["key"] == p + "last" and last["value"] == str(i), doc
        assert last["mod_index"] == w["index"], (doc, w)
        doc = list_keys(n, f"prefix={q(p.encode())}&count_only&level=linearizable")
        assert doc["count"] == i + 2 and doc["index"] >= w["index"], doc
    # weak and none are served too (none: this node's state, maybe stale)
    assert list_keys(n, f"prefix={q(p.encode())}&count_only&level=weak")["count"] == 6
    assert list_keys(n, f"prefix={q(p.encode())}&count_only&level=none")["count"] in range(7)


def test_listing_page_capped_by_bytes(nodes):
    leader, follower = nodes
    big = "x" * 100_000
    for b in range(6):
        assert set_keys(leader.haddr, {f"big/{b}{i}": big for i in range(8)}).status == 200
    sizes, total, after = [], 0, None
    while True:
        qs = "prefix=big%2F&limit=10000" + (f"&after={q(after)}" if after else "")
        r = http(follower.haddr, "GET", "/keys?" + qs)
        assert r.status == 200, r
        doc = r.json()
        sizes.append(len(doc["keys"]))
        # a page ends after the key that takes it past 4 MiB
        assert len(r.body) < 4 * 1024 * 1024 + 2 * len(big), len(r.body)
        assert all(k["value"] == big for k in doc["keys"])
        total += len(doc["keys"])
        if not doc["more"]:
            break
        after = key_bytes(doc, "next")
    assert total == 48 and len(sizes) == 2 and 1 < sizes[0] < 48, sizes
    # without values the same keys fit one page
    doc = list_keys(follower, "prefix=big%2F&keys_only")
    assert len(doc["keys"]) == 48 and doc["more"] is False


@VIA
def test_listing_bad_requests(nodes, who):
    n = node_of(nodes, who)
    for qs in ("prefix=a&start=b", "limit=0", "limit=10001", "limit=x", "prefx=a",
               "level=strong", "keys_only=maybe", "keys_only&count_only", "prefix=%zz",
               "count_only&limit=1000001", "prefix=" + "k" * 5000):
        list_keys(n, qs, status=400)
    for m in ("POST", "PUT"):
        r = http(n.haddr, m, "/keys")
        assert r.status == 405 and r.headers.get("allow") == "GET, DELETE", (m, r)
        r.error()


# ---- DELETE /keys?prefix= ---------------------------------------------------

@VIA
def test_delete_prefix(nodes, who):
    n = node_of(nodes, who)
    p = f"dp-{who}/"
    assert set_keys(n.haddr, {p + f"{i:04d}": "v" for i in range(300)}).status == 200
    assert set_keys(n.haddr, {p[:-1]: "sibling", p[:-1] + "0": "other"}).status == 200
    r = http(n.haddr, "DELETE", "/keys?prefix=" + q(p.encode()))
    assert r.status == 200, r
    doc = r.json()
    assert set(doc) == {"deleted", "index"} and doc["deleted"] == 300, doc
    assert r.headers.get("x-craftd-index") == str(doc["index"]), r.headers
    assert list_keys(n, "prefix=" + q(p.encode()) + "&count_only")["count"] == 0
    assert get_key(n.haddr, p[:-1]) == (200, "sibling")
    assert get_key(n.haddr, p[:-1] + "0") == (200, "other")
    r = http(n.haddr, "DELETE", "/keys?prefix=" + q(p.encode()))
    assert r.status == 200 and r.json()["deleted"] == 0, r
    # the empty prefix (every key) and other parameters are refused
    for qs in ("", "?prefix=", "?start=a", "?prefix=a&limit=3"):
        r = http(n.haddr, "DELETE", "/keys" + qs)
        assert r.status == 400, (qs, r)
        r.error()
    assert get_key(n.haddr, p[:-1]) == (200, "sibling")


# ---- across a leader change -------------------------------------------------

def test_txn_and_listing_across_failover(cluster):
    nodes = cluster.start(3)
    leader = cluster.leader()
    doc = txn(leader, {"success": [{"op": "put", "key": f"fo/{i:03d}", "value": "1"}
                                   for i in range(100)]})
    assert doc["succeeded"], doc
    new, _ = kill_leader(cluster, leader)
    other = next(n for n in nodes if n is not leader and n is not new)
    # the survivors answer from the new term: what committed before is there
    for n in (new, other):
        page = list_keys(n, "prefix=fo%2F&keys_only")
        assert len(page["keys"]) == 100 and page["index"] >= doc["index"], page
    doc2 = txn(other, {"compare": [{"key": "fo/000", "version": 1}],
                       "success": [{"op": "delete_prefix", "key": "fo/0"},
                                   {"op": "put", "key": "fo/new", "value": "2"}]})
    assert doc2["succeeded"] and doc2["results"][0] == {"deleted": 100}, doc2
    assert doc2["index"] > doc["index"]
    page = list_keys(new, "prefix=fo%2F")
    assert [k["key"] for k in page["keys"]] == ["fo/new"], page
    assert page["keys"][0]["mod_index"] == doc2["index"]
