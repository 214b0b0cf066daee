"""Keys with history (docs/http-api.md): revisions, ETag and X-Craftd-Index,
?meta and ?raw, 304, PUT with a raw body, preconditions decided by the state
machine (If-Match, If-None-Match), on a 3-node cluster, each request sent
to the leader and to a follower."""
import base64
import json
import threading

from conftest import http, key_path

OCTETS = "application/octet-stream"


def index_of(r):
    """The X-Craftd-Index of a reply (asserts it is there)."""
    v = r.headers.get("x-craftd-index")
    assert v is not None and v.isdigit(), f"no X-Craftd-Index in {r.headers}"
    return int(v)


def etag_of(r):
    v = r.headers.get("etag")
    assert v is not None and v.startswith('"') and v.endswith('"'), r.headers
    return int(v[1:-1])


def put(addr, key, value, headers=None, query=""):
    return http(addr, "PUT", key_path(key) + query, body=value, headers=headers)


def get(addr, key, query="", headers=None):
    return http(addr, "GET", key_path(key) + query, headers=headers)


def meta(addr, key, level=None):
    q = "?meta" + (f"&level={level}" if level else "")
    r = get(addr, key, q)
    assert r.status == 200, r
    return r.json()


def assert_412(r, mod_index):
    assert r.status == 412, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert r.json() == {"error": "precondition failed", "mod_index": mod_index}, r
    index_of(r)


def three(cluster):
    nodes = cluster.start(3)
    leader = cluster.leader()
    follower = next(n for n in nodes if n is not leader)
    return leader, follower


def test_revisions_put_get_meta_raw_304(cluster):
    leader, follower = three(cluster)
    for via in (leader, follower):
        a, k = via.haddr, f"rev-{via.name}"
        # PUT creates: 201, {"mod_index":N}, ETag "N", X-Craftd-Index N
        r = put(a, k, "one")
        assert r.status == 201, r
        n1 = r.json()["mod_index"]
        assert r.json() == {"mod_index": n1} and n1 > 0, r
        assert etag_of(r) == n1 and index_of(r) == n1
        # PUT replaces: 200 with a later index
        r = put(a, k, "two")
        assert r.status == 200, r
        n2 = r.json()["mod_index"]
        assert n2 > n1 and etag_of(r) == n2 and index_of(r) == n2

        for reader in (leader, follower):
            # linearizable GET (the default): hraftd's body, ETag, index >= the write's
            r = get(reader.haddr, k)
            assert r.status == 200 and r.json() == {k: "two"}, (reader, r)
            assert etag_of(r) == n2, (reader, r.headers)
            assert index_of(r) >= n2, (reader, r.headers)
            m = meta(reader.haddr, k)
            assert m == {"key": k, "value": "two", "create_index": n1, "mod_index": n2,
                         "version": 2, "lease": "0"}, (reader, m)
            r = get(reader.haddr, k, "?raw")
            assert r.status == 200 and r.body == b"two", r
            assert r.headers["content-type"] == OCTETS, r.headers
            assert etag_of(r) == n2 and index_of(r) >= n2
            # If-None-Match with the current ETag: 304 without a body
            for inm in (f'"{n2}"', f'W/"{n2}"', f'"{n1}", "{n2}"', "*"):
                r = get(reader.haddr, k, headers={"If-None-Match": inm})
                assert r.status == 304, (inm, r)
                assert r.body == b"" and etag_of(r) == n2 and index_of(r) >= n2, (inm, r)
            r = get(reader.haddr, k, headers={"If-None-Match": f'"{n1}"'})
            assert r.status == 200 and r.json() == {k: "two"}, r
            r = get(reader.haddr, k, "?meta", headers={"If-None-Match": f'"{n1}"'})
            assert r.status == 200 and r.json()["mod_index"] == n2, r

        # a deleted and re-created key starts again at version 1
        r = http(a, "DELETE", key_path(k))
        assert r.status == 200 and r.body == b"", r
        nd = index_of(r)
        assert nd > n2
        r = get(a, k)
        assert r.status == 404 and index_of(r) >= nd, r
        r.error()
        r = put(a, k, "three")
        assert r.status == 201, r
        n3 = r.json()["mod_index"]
        assert meta(a, k) == {"key": k, "value": "three", "create_index": n3, "mod_index": n3,
                              "version": 1, "lease": "0"}

    # every read level answers with the revision headers
    k = f"rev-{leader.name}"
    want = meta(leader.haddr, k)["mod_index"]
    for level in ("linearizable", "weak", "none"):
        for reader in (leader, follower):
            r = get(reader.haddr, k, f"?level={level}")
            if level == "none":  # maybe stale, but consistent with itself
                assert r.status in (200, 404), r
                if r.status == 200:
                    assert etag_of(r) <= want and index_of(r) >= etag_of(r), r.headers
                continue
            assert r.status == 200 and etag_of(r) == want, (level, reader, r)
            assert index_of(r) >= want, (level, reader, r.headers)


def test_hraftd_answers_unchanged(cluster):
    leader, follower = three(cluster)
    for via in (leader, follower):
        r = http(via.haddr, "POST", "/key", body='{"k":"v"}')
        assert r.status == 200 and r.body == b"", r
        n = index_of(r)
        r = http(via.haddr, "GET", "/key/k")
        assert r.status == 200 and r.body == b'{"k":"v"}', r
        assert r.headers["content-type"] == "application/json"
        assert etag_of(r) == n and index_of(r) >= n
        assert meta(via.haddr, "k")["version"] >= 1
        r = http(via.haddr, "DELETE", "/key/k")
        assert r.status == 200 and r.body == b"", r
        r = http(via.haddr, "DELETE", "/key/never")  # missing: still 200
        assert r.status == 200 and r.body == b"", r
        # several pairs: still one atomic write, 200 empty
        r = http(via.haddr, "POST", "/key", body='{"a":"1","b":"2"}')
        assert r.status == 200 and r.body == b"", r
        n = index_of(r)
        assert meta(via.haddr, "a")["mod_index"] == meta(via.haddr, "b")["mod_index"] == n


def test_preconditions(cluster):
    leader, follower = three(cluster)
    for via in (leader, follower):
        a, k = via.haddr, f"pre-{via.name}"
        # If-Match on an absent key: 412 with mod_index 0, nothing written
        for im in ('"5"', "*", '"0"'):
            assert_412(put(a, k, "x", {"If-Match": im}), 0)
            assert_412(http(a, "DELETE", key_path(k), headers={"If-Match": im}), 0)
        assert get(a, k).status == 404
        # If-None-Match: * creates once
        r = put(a, k, "first", {"If-None-Match": "*"})
        assert r.status == 201, r
        n1 = r.json()["mod_index"]
        assert_412(put(a, k, "second", {"If-None-Match": "*"}), n1)
        assert get(a, k).json() == {k: "first"}
        # If-Match "n": compare and swap
        assert_412(put(a, k, "stale", {"If-Match": f'"{n1 - 1}"'}), n1)
        assert_412(put(a, k, "zero", {"If-Match": '"0"'}), n1)
        r = put(a, k, "second", {"If-Match": f'"{n1}"'})
        assert r.status == 200, r
        n2 = r.json()["mod_index"]
        assert etag_of(r) == n2 > n1
        assert_412(put(a, k, "third", {"If-Match": f'"{n1}"'}), n2)  # lost the race
        r = put(a, k, "third", {"If-Match": "*"})
        assert r.status == 200, r
        n3 = r.json()["mod_index"]
        assert meta(a, k)["value"] == "third" and meta(a, k)["version"] == 3
        # DELETE with a precondition
        assert_412(http(a, "DELETE", key_path(k), headers={"If-Match": f'"{n2}"'}), n3)
        assert get(a, k).json() == {k: "third"}
        assert_412(http(a, "DELETE", key_path(k), headers={"If-None-Match": "*"}), n3)
        r = http(a, "DELETE", key_path(k), headers={"If-Match": f'"{n3}"'})
        assert r.status == 200 and r.body == b"" and index_of(r) > n3, r
        assert get(a, k).status == 404
        # POST /key with one pair and a precondition
        r = http(a, "POST", "/key", body=json.dumps({k: "p"}), headers={"If-None-Match": "*"})
        assert r.status == 200 and r.body == b"", r
        n4 = index_of(r)
        assert meta(a, k)["mod_index"] == n4
        r = http(a, "POST", "/key", body=json.dumps({k: "q"}), headers={"If-None-Match": "*"})
        assert_412(r, n4)
        r = http(a, "POST", "/key", body=json.dumps({k: "q"}), headers={"If-Match": f'"{n4}"'})
        assert r.status == 200, r
        assert get(a, k).json() == {k: "q"}
        # several pairs with a precondition: 400, nothing written
        r = http(a, "POST", "/key", body=json.dumps({k: "r", k + "2": "s"}),
                 headers={"If-Match": "*"})
        assert r.status == 400 and "one key" in r.error(), r
        assert get(a, k).json() == {k: "q"} and get(a, k + "2").status == 404


def test_if_match_race_has_one_winner(cluster):
    leader, follower = three(cluster)
    k = "race"
    wins = {leader.name: 0, follower.name: 0}
    for rnd in range(12):
        r = put(leader.haddr, k, f"base{rnd}")
        assert r.status in (200, 201), r
        base = r.json()["mod_index"]
        results = {}
        start = threading.Barrier(2)

        def racer(node):
            start.wait()
            results[node.name] = put(node.haddr, k, f"{node.name}-{rnd}",
                                     {"If-Match": f'"{base}"'})
        threads = [threading.Thread(target=racer, args=(n,)) for n in (leader, follower)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        statuses = sorted(r.status for r in results.values())
        assert statuses == [200, 412], (rnd, results)
        winner = next(name for name, r in results.items() if r.status == 200)
        loser = next(r for r in results.values() if r.status == 412)
        won_at = results[winner].json()["mod_index"]
        assert_412(loser, won_at)  # the loser is told the winner's revision
        wins[winner] += 1
        m = meta(follower.haddr, k)
        assert m["value"] == f"{winner}-{rnd}" and m["mod_index"] == won_at, (rnd, m)
    assert sum(wins.values()) == 12


def test_binary_values_round_trip(cluster):
    leader, follower = three(cluster)
    values = [b"\x00", b"\xff", b"a\x00b\xffc\xfe\x80", bytes(range(256)), b"",
              "héllo\u0000wörld".encode(), b'{"not":"json"}\r\n']
    for i, v in enumerate(values):
        via = (leader, follower)[i % 2]
        k = f"bin{i}"
        r = put(via.haddr, k, v)
        assert r.status == 201, (i, r)
        n = r.json()["mod_index"]
        for reader in (leader, follower):
            r = get(reader.haddr, k, "?raw")
            assert r.status == 200 and r.body == v, (i, reader, r)
            assert r.headers["content-type"] == OCTETS and etag_of(r) == n
            m = meta(reader.haddr, k)
            try:
                text = v.decode("utf-8")
            except UnicodeDecodeError:
                assert "value" not in m, m
                assert base64.b64decode(m["value_b64"], validate=True) == v, (i, m)
            else:
                assert m["value"] == text and "value_b64" not in m, (i, m)
            assert m["key"] == k and m["mod_index"] == n
    # a key with a NUL and a non-ASCII character, set by PUT, read by GET
    k = "nul\x00é"
    r = put(follower.haddr, k, b"\x00\xff")
    assert r.status == 201, r
    m = meta(leader.haddr, k)
    assert m["key"] == k and base64.b64decode(m["value_b64"]) == b"\x00\xff", m


def test_bad_headers_and_leases(cluster):
    leader, follower = three(cluster)
    a = follower.haddr
    assert put(a, "kept", "v").status == 201
    bad = [
        ("PUT", "/key/x", {"If-Match": "5"}),
        ("PUT", "/key/x", {"If-Match": '"abc"'}),
        ("PUT", "/key/x", {"If-Match": '"1", "2"'}),
        ("PUT", "/key/x", {"If-Match": 'W/"1"'}),
        ("PUT", "/key/x", {"If-Match": ""}),
        ("PUT", "/key/x", {"If-Match": '"1"', "If-None-Match": "*"}),
        ("PUT", "/key/x", {"If-None-Match": '"1"'}),
        ("PUT", "/key/x?lease=abc", {}),
        ("PUT", "/key/x?lease=-3", {}),
        ("DELETE", "/key/kept", {"If-Match": "1"}),
        ("DELETE", "/key/kept", {"If-Match": '"-1"'}),
        ("POST", "/key", {"If-Match": "nope"}),
        ("GET", "/key/kept", {"If-None-Match": "1"}),
        ("GET", "/key/kept", {"If-None-Match": '*, "1"'}),
        ("GET", "/key/kept", {"If-Match": '"1"'}),
        ("GET", "/key/kept?meta&raw", {}),
        ("GET", "/key/kept?raw=maybe", {}),
        ("PUT", "/key/", {}),
    ]
    for method, path, headers in bad:
        body = '{"x":"1"}' if method == "POST" else ("v" if method == "PUT" else None)
        for via in (leader, follower):
            r = http(via.haddr, method, path, body=body, headers=headers)
            assert r.status == 400, (method, path, headers, r)
            assert r.headers.get("content-type", "").startswith("application/json"), r.headers
            assert len(r.error()) > 5
    assert get(a, "x").status == 404
    assert get(a, "kept").json() == {"kept": "v"}

    # no lease was granted: any non-zero lease id is unknown, nothing written
    for via in (leader, follower):
        r = put(via.haddr, "leased", "v", query="?lease=7")
        assert r.status == 404 and r.json() == {"error": "lease not found", "lease": "7"}, r
        index_of(r)
    assert get(leader.haddr, "leased").status == 404
    r = put(a, "leased", "v", query="?lease=0")  # 0: no lease
    assert r.status == 201 and meta(a, "leased")["lease"] == "0", r


def test_cluster_errors_carry_the_index(cluster):
    """Without a quorum a write and a linearizable read fail with 503, and
    still say how far the answering node had applied."""
    leader, follower = three(cluster)
    r = put(leader.haddr, "q", "v")
    assert r.status == 201, r
    n = r.json()["mod_index"]
    for node in cluster.nodes:
        if node is not leader:
            node.stop()
    r = put(leader.haddr, "q", "w", {"If-Match": f'"{n}"'})
    assert r.status == 503, r
    assert r.error() and index_of(r) >= n, r
    r = get(leader.haddr, "q")
    assert r.status in (503, 504), r
    assert r.error() and index_of(r) >= n, r
    r = get(leader.haddr, "q", "?level=none")  # its own state: still there
    assert r.status == 200 and r.json() == {"q": "v"} and etag_of(r) == n, r
