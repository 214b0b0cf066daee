"""Blocking queries (docs/http-api.md, "Blocking queries"): GET /key/<k> and
GET /keys?prefix= with index=N&wait=D answer once what they read changed
after N, or when the wait runs out with the unchanged answer; any node
serves them from its applied state."""
import threading
import time

from conftest import http, key_path, wait_until


def index_of(r):
    v = r.headers.get("x-craftd-index")
    assert v is not None and v.isdigit(), r.headers
    return int(v)


def put(addr, key, value):
    r = http(addr, "PUT", key_path(key), body=value)
    assert r.status in (200, 201), r
    return r.json()["mod_index"]


class Later:
    """A request run in a thread: its reply and how long it took."""

    def __init__(self, addr, path, timeout=30.0):
        self.reply, self.took = None, None

        def run():
            t = time.monotonic()
            self.reply = http(addr, "GET", path, timeout=timeout)
            self.took = time.monotonic() - t
        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def result(self, timeout=30.0):
        self.t.join(timeout)
        assert not self.t.is_alive(), "the blocking query never answered"
        return self.reply


def test_key_wakes_on_a_write_through_another_node(cluster):
    nodes = cluster.start(3)
    leader = cluster.leader()
    followers = [n for n in nodes if n is not leader]
    mod = put(leader.haddr, "cfg", "v1")
    r = http(followers[0].haddr, "GET", key_path("cfg") + "?level=none")
    deadline = time.monotonic() + 5
    while (r.status != 200 or index_of(r) < mod) and time.monotonic() < deadline:
        r = http(followers[0].haddr, "GET", key_path("cfg") + "?level=none")
    idx = index_of(r)
    # an index below the key's mod_index: answered at once
    t = time.monotonic()
    r = http(followers[0].haddr, "GET", key_path("cfg") + f"?index={mod - 1}&wait=20s")
    assert r.status == 200 and r.json() == {"cfg": "v1"} and time.monotonic() - t < 2, r
    # waiting past the current index: the write through the other follower wakes it
    w = Later(followers[0].haddr, key_path("cfg") + f"?index={idx}&wait=20s")
    time.sleep(0.5)
    assert w.reply is None, "answered before any change"
    mod2 = put(followers[1].haddr, "cfg", "v2")
    r = w.result()
    assert r.status == 200 and r.json() == {"cfg": "v2"}, r
    assert index_of(r) >= mod2 and w.took < 10, (index_of(r), w.took)
    # ?meta and the ETag come with it as with any read
    w = Later(leader.haddr, key_path("cfg") + f"?meta&index={mod2}&wait=20s")
    time.sleep(0.3)
    mod3 = put(leader.haddr, "cfg", "v3")
    r = w.result()
    assert r.status == 200 and r.json()["mod_index"] == mod3, r
    assert r.headers.get("etag") == f'"{mod3}"'
    # a write to another key does not wake it
    w = Later(leader.haddr, key_path("cfg") + f"?index={mod3}&wait=1500ms")
    put(leader.haddr, "other", "x")
    r = w.result()
    assert r.status == 200 and r.json() == {"cfg": "v3"}, r
    assert 1.3 < w.took < 5, w.took


def test_wait_runs_out_with_the_unchanged_answer_and_deletes_wake_with_404(cluster):
    nodes = cluster.start(3)
    addr = nodes[2].haddr
    mod = put(cluster.leader().haddr, "k", "v")
    time.sleep(0.3)
    t = time.monotonic()
    r = http(addr, "GET", key_path("k") + f"?index={mod}&wait=1s")
    took = time.monotonic() - t
    assert r.status == 200 and r.json() == {"k": "v"} and 0.9 < took < 4, (r, took)
    assert index_of(r) >= mod
    # wait=0 answers at once; a missing key with an index waits too
    r = http(addr, "GET", key_path("k") + f"?index={mod}&wait=0")
    assert r.status == 200
    w = Later(addr, key_path("k") + f"?index={mod}&wait=20s")
    time.sleep(0.3)
    r = http(cluster.leader().haddr, "DELETE", key_path("k"))
    assert r.status == 200, r
    r = w.result()
    assert r.status == 404 and r.json() == {"error": "key not found"}, r
    deleted_at = index_of(r)
    assert deleted_at > mod
    # asking past the delete waits for the re-creation
    w = Later(addr, key_path("k") + f"?index={deleted_at}&wait=20s")
    time.sleep(0.3)
    assert w.reply is None
    put(cluster.leader().haddr, "k", "again")
    r = w.result()
    assert r.status == 200 and r.json() == {"k": "again"}, r
    # an index below the history's reach (0) is answered at once
    r = http(addr, "GET", key_path("k") + "?index=0&wait=20s")
    assert r.status == 200


def test_prefix_listing_blocks(cluster):
    nodes = cluster.start(3)
    addr = nodes[1].haddr
    put(cluster.leader().haddr, "svc/a", "1")
    # the follower answers level=none from what it has applied: wait until
    # it holds svc/a, else its index is below the put's and the put itself
    # wakes the query
    r = wait_until("svc/a applied on the follower",
                   lambda: (lambda r: r if b'"svc/a"' in r.body else None)(
                       http(addr, "GET", "/keys?prefix=svc/&level=none")), 10)
    idx = index_of(r)
    w = Later(addr, f"/keys?prefix=svc/&index={idx}&wait=20s")
    time.sleep(0.3)
    put(cluster.leader().haddr, "other/x", "1")  # outside the prefix
    time.sleep(0.5)
    assert w.reply is None, "woken by a key outside the prefix"
    put(cluster.leader().haddr, "svc/b", "2")
    r = w.result()
    assert r.status == 200, r
    assert [k["key"] for k in r.json()["keys"]] == ["svc/a", "svc/b"], r.json()
    # the empty prefix is every key
    idx = index_of(r)
    w = Later(addr, f"/keys?index={idx}&wait=20s&keys_only")
    time.sleep(0.3)
    put(cluster.leader().haddr, "zzz", "1")
    r = w.result()
    assert r.status == 200 and "zzz" in [k["key"] for k in r.json()["keys"]], r.json()


def test_bad_blocking_parameters(cluster):
    nodes = cluster.start(1)
    addr = nodes[0].haddr
    put(addr, "k", "v")
    for q, why in [("?index=x", "index"), ("?index=-1", "index"),
                   ("?index=5&wait=601s", "600s"), ("?index=5&wait=10h", "duration"),
                   ("?index=5&wait=", "duration"), ("?wait=5s", "needs index")]:
        r = http(addr, "GET", key_path("k") + q)
        assert r.status == 400 and why in r.json()["error"], (q, r)
    r = http(addr, "GET", "/keys?start=a&end=b&index=3")
    assert r.status == 400 and "prefix" in r.json()["error"], r
    r = http(addr, "GET", "/keys?prefix=a&index=3&wait=2x")
    assert r.status == 400, r
    for ok in ("?index=1&wait=1500ms", "?index=1&wait=10", "?index=1&wait=1m"):
        r = http(addr, "GET", key_path("k") + ok)
        assert r.status == 200, (ok, r)


def test_client_gone_and_stop_end_waiters(cluster):
    """A client that goes away frees its waiter; stopping the node answers
    the waiting ones (503) and stops cleanly."""
    import socket
    nodes = cluster.start(1)
    n = nodes[0]
    mod = put(n.haddr, "k", "v")
    host, port = n.haddr.rsplit(":", 1)
    for _ in range(50):  # waiters whose clients leave
        s = socket.create_connection((host, int(port)))
        s.sendall(f"GET /key/k?index={mod}&wait=600s HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        s.close()
    waiting = [Later(n.haddr, key_path("k") + f"?index={mod}&wait=600s", timeout=30)
               for _ in range(5)]
    time.sleep(0.5)
    r = http(n.haddr, "GET", "/metrics")
    assert r.status == 200
    n.stop()
    for w in waiting:
        r = w.result(timeout=20)
        assert r is None or r.status == 503, r


def test_blocking_max_flag_caps_waiters(cluster):
    """-blocking-max N: N queries wait, the next one is answered 503 with a
    JSON error at once; a slot freed is taken again."""
    n = cluster.add("node0", extra=["-blocking-max", "2"]).start()
    n.wait_ready()
    mod = put(n.haddr, "k", "v")
    waiting = [Later(n.haddr, key_path("k") + f"?index={mod}&wait=20s") for _ in range(2)]
    time.sleep(0.5)
    assert all(w.reply is None for w in waiting), "answered before any change"
    t = time.monotonic()
    r = http(n.haddr, "GET", key_path("k") + f"?index={mod}&wait=20s")
    assert r.status == 503 and "-blocking-max 2" in r.error(), r
    assert time.monotonic() - t < 2
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    # a query answered at once takes no slot
    r = http(n.haddr, "GET", "/keys?prefix=k&index=0&wait=20s")
    assert r.status == 200, r
    # the change answers both waiters; then there is room again
    mod2 = put(n.haddr, "k", "v2")
    for w in waiting:
        r = w.result()
        assert r.status == 200 and r.json() == {"k": "v2"}, r
    w = Later(n.haddr, key_path("k") + f"?index={mod2}&wait=700ms")
    r = w.result()
    assert r.status == 200 and w.took > 0.5, (r, w.took)
    # bad values are refused at start
    r = cluster.add("bad", extra=["-blocking-max", "0"])
    r.start()
    assert r.proc.wait(timeout=10) == 2
