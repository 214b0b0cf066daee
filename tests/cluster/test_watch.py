"""GET /watch (docs/http-api.md, "Watch"): Server-Sent Events of key changes
on real processes. Events in index order with their ids, the events of one
entry sharing its id, deletes, key and prefix filters, binary keys, resume
with from= or Last-Event-ID on another node (no gap, no duplicate), 410 for
a from older than the history, a client too slow for the history cut off
with an error event, a follower's watchers told "history reset" when it
installs a snapshot, progress events while idle, the watcher limit, the
craftd_watchers gauge, curl -N, and every watcher ended cleanly when its
node stops."""
import base64
import json
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

from conftest import http, set_keys, split_addr, wait_until


class Watch:
    """One GET /watch on a raw socket: the status, headers, and the SSE
    events of its chunked body, parsed as they come."""

    def __init__(self, addr, query, headers=None, rcvbuf=None, timeout=10.0):
        host, port = split_addr(addr)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET /watch?{query} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        self.raw = b""      # bytes read, not yet parsed
        self.body = b""     # de-chunked body, not yet split into events
        self.ended = False  # the last chunk (or EOF) came
        while b"\r\n\r\n" not in self.raw:
            self._recv()
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if self.status != 200:
            n = int(self.headers.get("content-length", "0"))
            while len(self.raw) < n:
                self._recv()
            self.json = json.loads(self.raw[:n])
            self.close()

    def _recv(self):
        b = self.sock.recv(65536)
        if not b:
            self.ended = True
            raise EOFError("connection closed")
        self.raw += b

    def _dechunk(self):
        while True:
            if b"\r\n" not in self.raw:
                return
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self.ended = True
                self.raw = b""
                return
            if len(rest) < size + 2:
                return
            self.body += rest[:size]
            self.raw = rest[size + 2:]

    def next_event(self, timeout=10.0):
        """The next event as a dict {"id", "event", "data"} (data decoded),
        or None once the stream has ended."""
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self.body:
            if self.ended:
                return None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no event in {timeout}s; body so far {self.body[:200]!r}")
            try:
                self._recv()
            except EOFError:
                return None
            self._dechunk()
        text, self.body = self.body.split(b"\n\n", 1)
        ev = {}
        for ln in text.decode().split("\n"):
            k, _, v = ln.partition(": ")
            ev[k] = json.loads(v) if k == "data" else v
        return ev

    def events(self, n, timeout=10.0, skip_progress=True):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ev = self.next_event(max(0.0, deadline - time.monotonic()))
            assert ev is not None, f"stream ended after {out}"
            if skip_progress and ev.get("event") == "progress":
                continue
            out.append(ev)
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def q(**kw):
    return urllib.parse.urlencode(kw, quote_via=urllib.parse.quote, safe="")


def put(addr, key, value):
    r = http(addr, "PUT", "/key/" + urllib.parse.quote(key, safe=""), body=value)
    assert r.status in (200, 201), r
    return r.json()["mod_index"]


def txn(addr, ops):
    r = http(addr, "POST", "/txn", body=json.dumps({"success": ops}))
    assert r.status == 200 and r.json()["succeeded"], r
    return r.json()["index"]


def delete(addr, key):
    r = http(addr, "DELETE", "/key/" + urllib.parse.quote(key, safe=""))
    assert r.status == 200, r
    return int(r.headers["x-craftd-index"])


def scrape_watchers(addr):
    r = http(addr, "GET", "/metrics")
    assert r.status == 200, r
    for ln in r.body.decode().splitlines():
        if ln.startswith("craftd_watchers "):
            return int(float(ln.split()[1]))
    raise AssertionError("no craftd_watchers in /metrics")


def test_watch_events_filters_resume(cluster):
    nodes = cluster.start(3, extra=["-watch-progress-ms", "300"])
    leader = cluster.leader()
    f1, f2 = [n for n in nodes if n is not leader]
    all_w = Watch(f1.haddr, q(prefix="w/"))
    assert all_w.status == 200, all_w.json
    assert all_w.headers["content-type"] == "text/event-stream"
    assert all_w.headers["cache-control"] == "no-cache"
    assert all_w.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in all_w.headers
    one = Watch(leader.haddr, q(key="w/k1"))
    everything = Watch(f2.haddr, "prefix=")
    binary = Watch(leader.haddr, "key=%FF%00b")
    assert one.status == everything.status == binary.status == 200

    i1 = put(leader.haddr, "w/k1", "v1")
    i2 = txn(f1.haddr, [{"op": "put", "key": "w/a", "value": "1"},
                        {"op": "put", "key": "w/b",
                         "value_b64": base64.b64encode(b"\xff").decode()},
                        {"op": "put", "key": "other", "value": "x"}])
    i3 = put(f2.haddr, "w/k1", "v2")
    i4 = delete(leader.haddr, "w/k1")
    i5 = txn(leader.haddr, [{"op": "put", "key_b64": base64.b64encode(b"\xff\x00b").decode(),
                             "value": "bin"}])
    assert i1 < i2 < i3 < i4 < i5

    got = all_w.events(5)
    assert [(e["id"], e["event"]) for e in got] == [
        (str(i1), "put"), (str(i2), "put"), (str(i2), "put"), (str(i3), "put"),
        (str(i4), "delete")]
    assert got[0]["data"] == {"key": "w/k1", "value": "v1", "create_index": i1,
                              "mod_index": i1, "version": 1}
    assert got[1]["data"]["key"] == "w/a" and got[1]["data"]["value"] == "1"
    assert got[2]["data"]["key"] == "w/b" and got[2]["data"]["value_b64"] == "/w=="
    assert "value" not in got[2]["data"]
    assert got[3]["data"] == {"key": "w/k1", "value": "v2", "create_index": i1,
                              "mod_index": i3, "version": 2}
    assert got[4]["data"] == {"key": "w/k1", "mod_index": i4}

    # key= sees that key only; prefix= everything, "other" included.
    assert [(e["id"], e["event"]) for e in one.events(3)] == [
        (str(i1), "put"), (str(i3), "put"), (str(i4), "delete")]
    ev = everything.events(7)
    assert [e["data"].get("key", e["data"].get("key_b64")) for e in ev] == [
        "w/k1", "w/a", "w/b", "other", "w/k1", "w/k1", base64.b64encode(b"\xff\x00b").decode()]
    b = binary.events(1)[0]
    assert b["id"] == str(i5) and b["data"]["key_b64"] == "/wBi" and b["data"]["value"] == "bin"

    # Progress while idle: no id, the applied index.
    p = all_w.next_event(5)
    assert p["event"] == "progress" and "id" not in p and p["data"]["index"] >= i5, p

    # Resume after the first event of the shared entry's predecessor, on
    # other nodes: with Last-Event-ID, with from=, both (equal) — the same
    # events as the first stream, no gap, no duplicate.
    for node, kw in ((f2, {"headers": {"Last-Event-ID": str(i1)}}),
                     (leader, {"query": q(prefix="w/", **{"from": i1})}),
                     (f1, {"headers": {"Last-Event-ID": str(i1)},
                           "query": q(prefix="w/", **{"from": i1})})):
        w = Watch(node.haddr, kw.get("query", q(prefix="w/")), headers=kw.get("headers"))
        assert w.status == 200, (node.name, w.json)
        again = w.events(4)
        assert [(e["id"], e["data"]) for e in again] == [(e["id"], e["data"]) for e in got[1:]]
        # Nothing else: the next event is a progress one.
        assert w.next_event(5)["event"] == "progress"
        w.close()
    # Disagreeing from and Last-Event-ID; bad requests.
    w = Watch(f1.haddr, q(prefix="w/", **{"from": i1}), headers={"Last-Event-ID": str(i2)})
    assert w.status == 400 and "disagree" in w.json["error"], w.json
    for bad in ("", "key=", "key=a&prefix=b", "prefix=&from=x", "prefix=&limit=3"):
        w = Watch(f1.haddr, bad)
        assert w.status == 400 and w.json["error"], (bad, w.json)
    r = http(f1.haddr, "POST", "/watch?prefix=")
    assert r.status == 405 and r.error(), r

    # one and binary (the resumed one closed is gone at its next write).
    wait_until("the leader counts 2 watchers", lambda: scrape_watchers(leader.haddr) == 2, 10)
    for w in (all_w, one, everything, binary):
        w.close()
    # Closed clients are found at the next progress write.
    for n in nodes:
        wait_until(f"{n.name} counts no watcher",
                   lambda n=n: scrape_watchers(n.haddr) == 0, 10)


def test_watch_stop_ends_streams_and_curl(cluster):
    nodes = cluster.start(3)
    leader = cluster.leader()
    follower = next(n for n in nodes if n is not leader)
    if shutil.which("curl"):
        curl = subprocess.Popen(["curl", "-sN", "--max-time", "3",
                                 f"http://{follower.haddr}/watch?prefix=c/"],
                                stdout=subprocess.PIPE)
        wait_until("curl's watcher", lambda: scrape_watchers(follower.haddr) == 1, 5)
        i1 = put(leader.haddr, "c/1", "one")
        text = curl.communicate(timeout=20)[0].decode()
        assert f"id: {i1}\nevent: put\ndata: " in text, text
        assert '"key":"c/1","value":"one"' in text, text
    w = Watch(follower.haddr, q(prefix="c/"))
    assert w.status == 200
    i2 = put(leader.haddr, "c/2", "two")
    assert w.events(1)[0]["id"] == str(i2)
    t0 = time.monotonic()
    assert follower.stop() == 0
    # The stream ends with its last chunk, not a reset, at once.
    assert w.next_event(5) is None and w.ended
    assert time.monotonic() - t0 < 5
    w.close()


def test_watch_compacted_slow_limit(cluster):
    (node,) = cluster.start(1, extra=["-watch-history-events", "20", "-watch-max", "3",
                                      "-watch-progress-ms", "500"])
    a = node.haddr
    first = put(a, "h/0", "x")
    for i in range(1, 40):
        put(a, f"h/{i}", "x")
    w = Watch(a, q(prefix="h/", **{"from": first - 1}))
    assert w.status == 410, w.json
    floor = w.json["oldest_index"]
    assert w.json["error"] == "compacted" and floor > first, w.json
    w = Watch(a, q(prefix="h/", **{"from": floor}))
    assert w.status == 200
    assert int(w.events(1)[0]["id"]) == floor + 1
    w.close()
    # a closed client is noticed at its stream's next write (a progress event)
    wait_until("the closed watcher is gone", lambda: scrape_watchers(a) == 0, 10)

    # The limit: 3 open, the 4th refused, one freed again once closed.
    ws = [Watch(a, "prefix=") for _ in range(3)]
    assert all(x.status == 200 for x in ws)
    extra = Watch(a, "prefix=")
    assert extra.status == 503 and extra.json == {"error": "too many watchers"}
    assert scrape_watchers(a) == 3
    ws[0].close()
    wait_until("a watcher slot is free", lambda: scrape_watchers(a) == 2, 10)
    again = Watch(a, "prefix=")
    assert again.status == 200
    for x in ws[1:] + [again]:
        x.close()
    wait_until("no watcher", lambda: scrape_watchers(a) == 0, 10)

    # Too slow: a client that reads nothing while far more than the history
    # (and the socket buffers) is written gets, once it reads again, what
    # was sent and then the too-slow error, and the stream ends.
    slow = Watch(a, q(prefix="s/"), rcvbuf=4096)
    assert slow.status == 200
    big = "v" * 60000
    last = 0
    for i in range(200):
        last = put(a, f"s/{i}", big)
    seen = []
    while True:
        ev = slow.next_event(15)
        if ev is None:
            break
        seen.append(ev)
    assert seen, "nothing came"
    err = seen[-1]
    assert err["event"] == "error" and err["data"]["error"] == "too slow", err
    puts = [e for e in seen if e["event"] == "put"]
    assert len(puts) < 200
    # The error's index: everything up to it was sent, in order, no gap.
    ids = [int(e["id"]) for e in puts]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert err["data"]["index"] == (ids[-1] if ids else err["data"]["index"]) < last
    slow.close()
    # Resuming from there is refused: those events are gone.
    w = Watch(a, q(prefix="s/", **{"from": err["data"]["index"]}))
    assert w.status == 410 and w.json["error"] == "compacted", w.json


def snapshot_restores(node):
    """The indexes of the "state restored from snapshot N" lines of its log."""
    return [int(m.group(1)) for m in
            re.finditer(r"state restored from snapshot (\d+)", node.log_text())]


def test_snapshot_install_ends_watchers_with_history_reset(cluster):
    """A follower cut off (SIGSTOP) while the leader compacts its log past
    it catches up by a snapshot; its open watcher gets `event: error`
    {"error":"history reset","index":N}, N the snapshot's index, and the
    stream ends. A client goes on from a listing at N or later: the
    follower's history starts there (from=N is served, from=N-1 is not)."""
    # a snapshot every 20 entries (or 2000 bytes of log), 11 entries kept
    # behind it. The leader has at most 64 appends in flight to the stopped
    # follower (its socket takes them all): 200 writes of 100 bytes compact
    # the log past what it sent.
    nodes = cluster.start(3, extra=["-snapshot-threshold", "20", "-snapshot-log-bytes", "2000"])
    leader = cluster.leader()
    f = next(n for n in nodes if n is not leader)
    first = put(leader.haddr, "r/0", "x")
    wait_until(f"{f.name} has r/0", lambda: http(
        f.haddr, "GET", "/key/r%2F0?level=none").status == 200, 5)
    w = Watch(f.haddr, q(prefix="r/", **{"from": first}))
    assert w.status == 200
    assert w.next_event()["event"] == "progress"  # the stream's first piece
    seen, n = [], 0
    # Usually one round does it; when the leader did get the whole round
    # to f before compacting (f then catches up from the log and its
    # watcher sees every put), another round.
    for _ in range(4):
        f.signal(signal.SIGSTOP)
        try:
            for _ in range(200):
                n += 1
                assert set_keys(leader.haddr, {f"r/{n}": "x" * 100}, timeout=3).status == 200
        finally:
            f.signal(signal.SIGCONT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ev = w.next_event(15)
            if ev is None or ev["event"] == "error":
                break
            seen.append(ev)
            if ev["event"] == "put" and ev["data"]["key"] == f"r/{n}":
                break  # caught up from the log: no snapshot this round
        if ev is None or ev["event"] == "error":
            break
    if ev is not None:
        seen.append(ev)
        assert w.next_event(5) is None, "the stream goes on after its error"
    assert w.ended, f"the stream did not end: {seen[-3:]}\n" + f.log_tail(20)
    w.close()
    assert seen and seen[-1]["event"] == "error", seen[-3:]
    err = seen[-1]["data"]
    assert err["error"] == "history reset", err
    # f may install more than one snapshot (the leader may have sent a
    # newer one behind the first): once it has caught up, its history
    # starts at the last one
    wait_until(f"{f.name} caught up", lambda: http(
        f.haddr, "GET", f"/key/r%2F{n}?level=none").status == 200, 10)
    restores = snapshot_restores(f)
    assert restores, f"{f.name} installed no snapshot:\n" + f.log_tail(30)
    assert err["index"] in restores, (err, restores)
    # what came before the error: in order, each entry at most once
    ids = [int(e["id"]) for e in seen if e["event"] == "put"]
    assert ids == sorted(set(ids)) and all(first < i < err["index"] for i in ids), ids
    # going on: the follower's history starts at its last snapshot
    n_idx = restores[-1]
    r = http(f.haddr, "GET", "/keys?prefix=r%2F&level=none&keys_only")
    assert r.status == 200 and r.json()["index"] >= n_idx, r
    w = Watch(f.haddr, q(prefix="r/", **{"from": n_idx - 1}))
    assert w.status == 410 and w.json == {"error": "compacted", "oldest_index": n_idx}, w.json
    w = Watch(f.haddr, q(prefix="r/", **{"from": n_idx}))
    assert w.status == 200
    mod = put(leader.haddr, "r/next", "y")
    evs = []  # the entries it applied after the snapshot, then r/next
    while not evs or evs[-1]["data"]["key"] != "r/next":
        evs += w.events(1)
    w.close()
    ids = [int(e["id"]) for e in evs]
    assert ids == sorted(set(ids)) and ids[0] > n_idx and ids[-1] == mod, ids
