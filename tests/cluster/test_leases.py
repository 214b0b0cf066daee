"""Leases on a 3-node cluster (docs/http-api.md, "Leases"): grant from any
node, keepalive, GET /lease/<id> and GET /leases, revoke deleting the keys,
expiry by the leader's clock with the keys gone on every node, the minimum
TTL, 404s and 400s, puts and txn puts naming a lease, and a leader killed
with kill -9: the new leader gives the lease its full TTL, and it still
expires later when nobody keeps it alive; a follower that knows a lease
only from a snapshot it installed expires it once it leads; GET /lease/<id>
pages its keys.

The shared cluster runs with an election timeout of 1 s (-tick-ms 50
-election-ticks 20, the defaults, given so that faster defaults do not
change this test), so that the shortest TTL granted, ceil(1.5 x 1 s) =
2 s, is above the 1 s a client may ask for; bounds below leave room for a
loaded machine."""
import re
import signal
import time

import pytest

from conftest import Cluster, get_key, http, key_path, kill_leader, set_keys, wait_until

TIMING = ["-tick-ms", "50", "-election-ticks", "20"]  # 1-2 s, see above
EXPIRY_SLACK = 3.0  # seconds past the TTL by which an expired lease's keys are gone


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    c = Cluster(str(tmp_path_factory.mktemp("leases")))
    try:
        nodes = c.start(3, extra=TIMING)
        leader = c.leader()
        followers = [n for n in nodes if n is not leader]
        yield leader, followers[0], followers[1]
    finally:
        c.stop_all()


def index_of(r):
    v = r.headers.get("x-craftd-index")
    assert v is not None and v.isdigit(), f"no X-Craftd-Index in {r.headers}"
    return int(v)


def grant(node, ttl):
    r = http(node.haddr, "POST", "/lease", body={"ttl": ttl})
    assert r.status == 201, r
    doc = r.json()
    assert set(doc) == {"id", "ttl"} and isinstance(doc["id"], str), doc
    assert doc["id"].isdigit() and int(doc["id"]) > 0, doc
    # the id is the index of the grant's entry
    assert index_of(r) == int(doc["id"]), (r.headers, doc)
    return doc["id"], doc["ttl"]


def put(node, key, value, lease=None):
    q = f"?lease={lease}" if lease is not None else ""
    return http(node.haddr, "PUT", key_path(key) + q, body=value)


def lease_info(node, lid, level=None):
    q = f"?level={level}" if level else ""
    return http(node.haddr, "GET", f"/lease/{lid}{q}")


def keepalive(node, lid):
    return http(node.haddr, "POST", f"/lease/{lid}/keepalive")


def absent_everywhere(nodes, keys):
    return all(get_key(n.haddr, k)[0] == 404 for n in nodes for k in keys)


def test_grant_get_list_revoke(nodes):
    leader, f1, f2 = nodes
    lid, ttl = grant(f1, 30)  # from a follower
    assert ttl == 30
    # keys attached from a follower and from the leader
    assert put(f1, "lease-a", "1", lid).status == 201
    assert put(leader, "lease-b", "2", lid).status == 201
    assert put(f2, "plain", "3").status == 201
    for n in nodes:
        r = http(n.haddr, "GET", key_path("lease-a") + "?meta")
        assert r.status == 200 and r.json()["lease"] == lid, (n, r)
        r = lease_info(n, lid)
        assert r.status == 200, (n, r)
        doc = r.json()
        assert set(doc) == {"id", "ttl", "remaining_ms", "keys", "more", "next"}, doc
        assert doc["id"] == lid and doc["ttl"] == 30, doc
        assert doc["keys"] == ["lease-a", "lease-b"] and doc["more"] is False, doc
        assert doc["next"] == "lease-b", doc
        assert 25000 < doc["remaining_ms"] <= 30000, doc
        index_of(r)
    # a put without the lease detaches the key
    assert put(f2, "lease-b", "again").status == 200
    wait_until("lease-b detached on every node",
               lambda: all(lease_info(n, lid).json()["keys"] == ["lease-a"] for n in nodes), 5)

    lid2, _ = grant(leader, 40)
    r = http(f2.haddr, "GET", "/leases")
    assert r.status == 200, r
    doc = r.json()
    assert set(doc) == {"index", "leases", "more"} and doc["more"] is False, doc
    assert doc["index"] == index_of(r) and doc["index"] >= int(lid2), doc
    mine = [x for x in doc["leases"] if x["id"] in (lid, lid2)]
    assert mine == [{"id": lid, "ttl": 30}, {"id": lid2, "ttl": 40}], doc
    ids = [int(x["id"]) for x in doc["leases"]]
    assert ids == sorted(ids), doc
    r = http(f2.haddr, "GET", f"/leases?after={lid}&limit=1")
    assert r.status == 200 and r.json()["leases"][0]["id"] != lid, r

    # craftd_leases counts them on every node
    def gauge(n):
        text = http(n.haddr, "GET", "/metrics").body.decode()
        m = re.search(r"^craftd_leases (\d+)$", text, re.M)
        return int(m.group(1)) if m else None
    count = len(doc["leases"])
    for n in nodes:
        wait_until(f"craftd_leases on {n.name}", lambda n=n: gauge(n) == count, 5)

    # revoke from the other follower: the keys go in the same entry
    assert put(leader, "lease-c", "4", lid).status == 201
    r = http(f2.haddr, "DELETE", f"/lease/{lid}")
    assert r.status == 200 and r.json() == {"deleted": 2}, r
    gone = index_of(r)
    for n in nodes:
        wait_until(f"revoked keys gone on {n.name}",
                   lambda n=n: get_key(n.haddr, "lease-a")[0] == 404
                   and get_key(n.haddr, "lease-c")[0] == 404, 5)
        assert get_key(n.haddr, "lease-b") == (200, "again")
        assert get_key(n.haddr, "plain") == (200, "3")
        r = lease_info(n, lid)
        assert r.status == 404 and r.json() == {"error": "lease not found"}, r
        assert index_of(r) >= gone
    r = http(f1.haddr, "DELETE", f"/lease/{lid}")
    assert r.status == 404 and r.json() == {"error": "lease not found"}, r
    r = keepalive(leader, lid)
    assert r.status == 404 and r.json() == {"error": "lease not found"}, r
    assert http(leader.haddr, "DELETE", f"/lease/{lid2}").json() == {"deleted": 0}


def test_minimum_ttl_and_bad_requests(nodes):
    leader, f1, _ = nodes
    # ceil(1.5 x the 1 s election timeout) = 2 s
    lid, ttl = grant(f1, 1)
    assert ttl == 2
    r = lease_info(leader, lid)
    assert r.json()["ttl"] == 2 and r.json()["remaining_ms"] <= 2000, r
    assert http(leader.haddr, "DELETE", f"/lease/{lid}").status == 200
    bad = [
        ("POST", "/lease", "nope"),
        ("POST", "/lease", ""),
        ("POST", "/lease", '{"ttl":0}'),
        ("POST", "/lease", '{"ttl":-1}'),
        ("POST", "/lease", '{"ttl":"5"}'),
        ("POST", "/lease", '{"ttl":2.5}'),
        ("POST", "/lease", '{"ttl":1000000001}'),
        ("POST", "/lease", '{"ttl":5,"extra":1}'),
        ("GET", "/lease/abc", None),
        ("GET", "/lease/0", None),
        ("DELETE", "/lease/-4", None),
        ("POST", "/lease/x/keepalive", None),
        ("POST", "/lease/5/keepalives", None),
        ("GET", "/lease/5?level=fast", None),
        ("GET", "/lease/5?limit=0", None),
        ("GET", "/lease/5?limit=10001", None),
        ("GET", "/lease/5?prefix=a", None),
        ("GET", "/leases?limit=0", None),
        ("GET", "/leases?bogus=1", None),
        ("PUT", key_path("k") + "?lease=abc", "v"),
    ]
    for via in (leader, f1):
        for method, path, body in bad:
            r = http(via.haddr, method, path, body=body)
            assert r.status == 400, (method, path, body, r)
            assert r.headers.get("content-type", "").startswith("application/json"), r.headers
            assert len(r.error()) > 5, r
    assert http(leader.haddr, "GET", "/lease").status == 405
    assert http(leader.haddr, "PUT", "/lease/5").status == 405
    assert http(leader.haddr, "POST", "/leases").status == 405
    for via in (leader, f1):
        for method, path in (("GET", "/lease/987654321"), ("DELETE", "/lease/987654321"),
                             ("POST", "/lease/987654321/keepalive")):
            r = http(via.haddr, method, path)
            assert r.status == 404 and r.json() == {"error": "lease not found"}, (path, r)
            index_of(r)


def test_unknown_lease_writes_nothing_and_txn_put(nodes):
    leader, f1, f2 = nodes
    for via in (leader, f1):
        r = put(via, "orphan", "v", 987654321)
        assert r.status == 404, r
        assert r.json() == {"error": "lease not found", "lease": "987654321"}, r
        index_of(r)
        r = http(via.haddr, "POST", "/txn", body={"success": [
            {"op": "put", "key": "orphan-t1", "value": "1"},
            {"op": "put", "key": "orphan-t2", "value": "2", "lease": "987654321"}]})
        assert r.status == 404, r
        assert r.json() == {"error": "lease not found", "lease": "987654321"}, r
    for n in nodes:
        for k in ("orphan", "orphan-t1", "orphan-t2"):
            assert get_key(n.haddr, k)[0] == 404, (n, k)
    # lease=0 means none
    assert put(f1, "no-lease", "v", 0).status == 201

    lid, _ = grant(f2, 60)
    r = http(f1.haddr, "POST", "/txn", body={"success": [
        {"op": "put", "key": "txn-l1", "value": "1", "lease": lid},
        {"op": "put", "key": "txn-l2", "value": "2", "lease": int(lid)},
        {"op": "put", "key": "txn-free", "value": "3"}]})
    assert r.status == 200 and r.json()["succeeded"] is True, r
    assert lease_info(leader, lid).json()["keys"] == ["txn-l1", "txn-l2"]
    r = http(leader.haddr, "DELETE", f"/lease/{lid}")
    assert r.json() == {"deleted": 2}, r
    for n in nodes:
        wait_until(f"txn keys of the revoked lease gone on {n.name}",
                   lambda n=n: absent_everywhere([n], ["txn-l1", "txn-l2"]), 5)
        assert get_key(n.haddr, "txn-free") == (200, "3")


def test_lease_keys_page_with_limit_and_after(nodes):
    """GET /lease/<id> pages its keys as GET /keys does: limit (default
    1000, at most 10000), after=<key>, "more" and "next" (the page's last
    key)."""
    leader, f1, _ = nodes
    lid, _ = grant(leader, 60)
    keys = [f"pg/{i:05d}" for i in range(1030)]
    for i in range(0, len(keys), 128):
        r = http(leader.haddr, "POST", "/txn", body={"success": [
            {"op": "put", "key": k, "value": "v", "lease": lid} for k in keys[i:i + 128]]})
        assert r.status == 200 and r.json()["succeeded"] is True, r
    # the default page: 1000 keys, then more from after=next
    doc = lease_info(f1, lid).json()
    assert doc["keys"] == keys[:1000] and doc["more"] is True and doc["next"] == keys[999], \
        (len(doc["keys"]), doc["more"], doc.get("next"))
    r = http(f1.haddr, "GET", f"/lease/{lid}?after=pg%2F00999")
    assert r.status == 200, r
    doc = r.json()
    assert doc["keys"] == keys[1000:] and doc["more"] is False and doc["next"] == keys[-1], doc
    # small pages walk every key once, in order
    seen, after = [], None
    for _ in range(20):
        q = f"?limit=100&level=none" + (f"&after={after}" if after else "")
        doc = http(leader.haddr, "GET", f"/lease/{lid}{q}").json()
        seen += doc["keys"]
        if not doc["more"]:
            break
        after = doc["next"]
    assert seen == keys, (len(seen), seen[:3], seen[-3:])
    # after= need not be one of its keys; past the last: an empty page without next
    doc = http(f1.haddr, "GET", f"/lease/{lid}?after=pg%2F00099x&limit=2").json()
    assert doc["keys"] == ["pg/00100", "pg/00101"] and doc["more"] is True, doc
    doc = http(f1.haddr, "GET", f"/lease/{lid}?after=pg%2F99999").json()
    assert doc["keys"] == [] and doc["more"] is False and "next" not in doc, doc
    doc = http(f1.haddr, "GET", f"/lease/{lid}?limit=10000").json()
    assert doc["keys"] == keys and doc["more"] is False, len(doc["keys"])
    r = http(leader.haddr, "DELETE", f"/lease/{lid}")
    assert r.status == 200 and r.json() == {"deleted": len(keys)}, r


def test_keepalive_keeps_and_silence_expires(nodes):
    leader, f1, f2 = nodes
    kept, ttl = grant(f1, 2)
    t0 = time.monotonic()
    dropped, _ = grant(leader, 2)
    assert put(f2, "kept-key", "v", kept).status == 201
    assert put(f2, "dropped-key1", "v", dropped).status == 201
    assert put(f1, "dropped-key2", "v", dropped).status == 201
    vias = [leader, f1, f2]
    gone_at = None
    i = 0
    # kept alive through three TTLs, from every node in turn
    while time.monotonic() - t0 < 3 * ttl + 0.5:
        r = keepalive(vias[i % 3], kept)
        i += 1
        assert r.status == 200 and r.json() == {"id": kept, "ttl": ttl}, r
        if gone_at is None and get_key(f1.haddr, "dropped-key1")[0] == 404:
            gone_at = time.monotonic()
        time.sleep(0.3)
    for n in nodes:
        assert get_key(n.haddr, "kept-key") == (200, "v"), n
        assert lease_info(n, kept).status == 200
    # the other expired: never before its TTL, within the slack after it
    assert gone_at is not None, "a lease without keepalives did not expire in 3 TTLs"
    assert ttl <= gone_at - t0 <= ttl + EXPIRY_SLACK, gone_at - t0
    for n in nodes:
        wait_until(f"expired keys gone on {n.name}",
                   lambda n=n: absent_everywhere([n], ["dropped-key1", "dropped-key2"]), 5)
        r = lease_info(n, dropped)
        assert r.status == 404 and r.json() == {"error": "lease not found"}, r
    # then silence: the kept one expires too
    t1 = time.monotonic()
    wait_until("the kept lease expires once nobody keeps it alive",
               lambda: absent_everywhere(nodes, ["kept-key"]), ttl + EXPIRY_SLACK + 2)
    assert time.monotonic() - t1 >= ttl - 0.5


def test_leader_kill_gives_full_ttl_then_expires(tmp_path):
    c = Cluster(str(tmp_path))
    try:
        nodes = c.start(3)
        leader = c.leader()
        f1 = next(n for n in nodes if n is not leader)
        lid, ttl = grant(f1, 4)
        assert put(f1, "survivor", "v", lid).status == 201
        r = keepalive(f1, lid)
        assert r.status == 200, r
        t_kept = time.monotonic()
        time.sleep(2.0)
        new, took = kill_leader(c, leader)
        t_new = time.monotonic()
        survivors = [n for n in nodes if n is not leader]
        # the new leader counts the whole TTL from when it began to lead
        r = wait_until("GET /lease on the new leader",
                       lambda: (lambda x: x if x.status == 200 else None)(
                           lease_info(new, lid, level="none")), 5)
        assert r.json()["remaining_ms"] > ttl * 1000 - 1500, (r, took)
        # alive past the deadline the old leader had set (t_kept + ttl)
        while time.monotonic() < max(t_kept + ttl + 1.0, t_new + ttl - 1.0):
            for n in survivors:
                assert get_key(n.haddr, "survivor", level="none") == (200, "v"), n
            time.sleep(0.25)
        # and still expires, nobody keeping it alive
        wait_until("the lease expires under the new leader",
                   lambda: absent_everywhere(survivors, ["survivor"]),
                   ttl + EXPIRY_SLACK)
        for n in survivors:
            assert lease_info(n, lid).status == 404
    finally:
        c.stop_all()


def test_lease_from_an_installed_snapshot_expires_under_that_node(tmp_path):
    """A follower learns of a lease only from a snapshot it installs (it was
    stopped when the grant committed and the leader's log moved past it);
    once it leads, its lease clock (rebuilt from that snapshot) expires the
    abandoned lease: not before the TTL from the last keepalive, within the
    TTL plus the slack from when it began to lead."""
    c = Cluster(str(tmp_path))
    try:
        # a snapshot every 20 entries or 2000 bytes, 11 entries kept behind
        nodes = c.start(3, extra=["-snapshot-threshold", "20", "-snapshot-log-bytes", "2000"])
        leader = c.leader()
        f = next(n for n in nodes if n is not leader)
        for attempt in range(3):
            f.signal(signal.SIGSTOP)
            try:
                # past the 64 appends the leader sends a stopped follower,
                # then the grant (its last lease command), then enough
                # writes for snapshots beyond it: f applies no lease
                # command, it knows the lease from the snapshot alone
                for i in range(250):
                    assert set_keys(leader.haddr, {f"fill/{attempt}/{i}": "x" * 100},
                                    timeout=3).status == 200
                    if i == 100:
                        t_kept = time.monotonic()
                        lid, ttl = grant(leader, 5)  # room for the catch-up and transfer
                        r = put(leader, "snap-leased", "v", lid)
                        assert r.status == 201, r
                        put_index = index_of(r)
            finally:
                f.signal(signal.SIGCONT)
            last = f"fill/{attempt}/249"
            wait_until(f"{f.name} caught up", lambda: get_key(
                f.haddr, last, level="none") == (200, "x" * 100), 10)
            restored = [int(m.group(1)) for m in re.finditer(
                r"state restored from snapshot (\d+)", f.log_text())]
            # the snapshot it installed holds the grant and the put
            if restored and restored[-1] >= put_index:
                break
            # f caught up from the log (its socket took the whole round):
            # it applied the grant; again with another lease
            assert http(leader.haddr, "DELETE", f"/lease/{lid}").status == 200
        else:
            pytest.fail(f"{f.name} installed no snapshot past the grant in 3 rounds")
        r = lease_info(f, lid, level="none")
        assert r.status == 200 and r.json()["keys"] == ["snap-leased"], \
            (r, "expired under the old leader before the transfer?", time.monotonic() - t_kept)
        # f leads, and nobody keeps the lease alive
        r = http(leader.haddr, "POST", "/transfer", body={"id": f.id})
        assert r.status == 200, r
        wait_until(f"{f.name} leads", f.is_leader, 10)
        t_lead = time.monotonic()
        gone = wait_until("the lease expires under the node that installed the snapshot",
                          lambda: get_key(f.haddr, "snap-leased", level="none")[0] == 404
                          and time.monotonic(), ttl + EXPIRY_SLACK + 2, interval=0.05)
        assert f.is_leader(), "leadership moved on: the expiry may not be its clock's"
        assert gone - t_kept >= ttl, ("expired early", gone - t_kept)
        # a new leader gives every lease its full TTL from when it leads
        assert gone - t_lead >= ttl - 0.5, ("not the full TTL under f", gone - t_lead)
        assert gone - t_lead <= ttl + EXPIRY_SLACK, ("expired late", gone - t_lead)
        for n in nodes:
            wait_until(f"lease gone on {n.name}",
                       lambda n=n: lease_info(n, lid, level="none").status == 404, 5)
    finally:
        c.stop_all()


def test_restart_keeps_leases(tmp_path):
    """Every node stopped and started again: the lease comes back from the
    log (and snapshot) with its keys, gets its full TTL from the restart,
    and still expires when nobody keeps it alive."""
    c = Cluster(str(tmp_path))
    try:
        nodes = c.start(3)
        lid, ttl = grant(nodes[1], 3)
        assert put(nodes[2], "restarted", "v", lid).status == 201
        for n in nodes:
            assert n.stop() == 0, n
        t_stopped = time.monotonic()
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready()
        for n in nodes:
            r = wait_until(f"the lease back on {n.name}",
                           lambda n=n: (lambda x: x if x.status == 200 else None)(
                               lease_info(n, lid, level="none")), 10)
            assert r.json()["keys"] == ["restarted"], r
            assert get_key(n.haddr, "restarted", level="none") == (200, "v"), n
        wait_until("the lease expires after the restart",
                   lambda: absent_everywhere(nodes, ["restarted"]), ttl + EXPIRY_SLACK + 5)
        assert time.monotonic() - t_stopped >= ttl
        for n in nodes:
            assert lease_info(n, lid).status == 404
    finally:
        c.stop_all()
