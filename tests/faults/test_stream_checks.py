"""Self-tests of the watch, lease and lock checks (no craftd): the SSE
client and the resuming watcher against a small in-process SSE server that
cuts its streams at random and honours Last-Event-ID; check_watch and
check_lock accept valid histories and reject a gap, a duplicate, a lost
acknowledged write, a value never written, two holders at once and
overlapping beliefs; the keep-alive rule of the lease test."""
import http.server
import json
import random
import threading
import time

from streams import Resuming, WatchRefused, WatchStream, watch_path
from test_lease_faults import Session
from test_lock import check_lock
from test_watch import check_watch

EVENTS = [(i, "put" if i % 3 else "delete", f"w/k{i % 4}") for i in range(1, 201)]


def _data(eid, kind, key):
    if kind == "put":
        return {"key": key, "value": f"v{eid}", "create_index": eid, "mod_index": eid,
                "version": 1}
    return {"key": key, "mod_index": eid}


class _SSE(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        srv = self.server
        frm = self.headers.get("Last-Event-ID")
        if frm is None:
            frm = self.path.split("from=")[1] if "from=" in self.path else "0"
        frm = int(frm)
        if frm < srv.floor:
            body = json.dumps({"error": "compacted", "oldest_index": srv.floor}).encode()
            self.send_response(410)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        cut = srv.rng.randint(1, 30)
        for eid, kind, key in EVENTS:
            if eid <= frm:
                continue
            if cut == 0:
                return  # the stream breaks between two events
            cut -= 1
            self.wfile.write(f"id: {eid}\nevent: {kind}\ndata: "
                             f"{json.dumps(_data(eid, kind, key))}\n\n".encode())
            if srv.rng.random() < 0.1:
                self.wfile.write(b'event: progress\ndata: {"index":1}\n\n')
            self.wfile.flush()
        time.sleep(0.5)


class _Node:
    def __init__(self, addr):
        self.haddr = addr
        self.id = addr
        self.paused = False

    def alive(self):
        return True


class _Cluster:
    def __init__(self, nodes):
        self.nodes = nodes


def _serve(floor=0):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SSE)
    srv.rng = random.Random(7)
    srv.floor = floor
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"127.0.0.1:{srv.server_address[1]}"


def _ref():
    out = []
    for eid, kind, key in EVENTS:
        d = _data(eid, kind, key)
        rec = {"id": eid, "type": kind, "key": key, "mod_index": eid}
        if kind == "put":
            rec.update(value=d["value"], create_index=eid, version=1)
        out.append(rec)
    return out


class _Writers:
    def __init__(self, ops):
        self.ops = ops


def _final(ref):
    st = {}
    for e in ref:
        if e["type"] == "put":
            st[e["key"]] = e["value"]
        else:
            st.pop(e["key"], None)
    return st


def test_resuming_watcher_sees_every_event_once():
    servers = [_serve() for _ in range(2)]
    try:
        cl = _Cluster([_Node(a) for _, a in servers])
        w = Resuming(cl, random.Random(3), prefix="w/", frm=0).start()
        assert w.finish(lambda e: e["id"] == 200, drain=30), w.connections[-5:]
        ref = _ref()
        ops = [{"op": "put", "key": e["key"], "value": e["value"], "outcome": "unknown"}
               for e in ref if e["type"] == "put"]
        assert check_watch(ref, w, _Writers(ops), _final(ref), []) == []
        assert len(w.connections) > 3, "the server never cut a stream"
    finally:
        for s, _ in servers:
            s.shutdown()


def test_compacted_is_reported():
    srv, addr = _serve(floor=50)
    try:
        try:
            WatchStream(addr, watch_path(prefix="w/", frm=10))
            raise AssertionError("no 410")
        except WatchRefused as e:
            assert e.status == 410 and e.doc == {"error": "compacted", "oldest_index": 50}
        w = Resuming(_Cluster([_Node(addr)]), random.Random(1), prefix="w/", frm=0).start()
        assert w.finish(lambda e: e["id"] == 200, drain=30)
        assert w.compacted and w.compacted[0]["oldest_index"] == 50
        assert w.events[0]["id"] == 51
    finally:
        srv.shutdown()


class _W:
    def __init__(self, events):
        self.events = events


def test_check_watch_rejects_gaps_duplicates_and_lost_writes():
    ref = _ref()
    ops = [{"op": "put", "key": e["key"], "value": e["value"], "outcome": "ok",
            "index": e["id"]} for e in ref if e["type"] == "put"]
    ops += [{"op": "delete", "key": e["key"], "outcome": "ok", "index": e["id"],
             "watermark": e["id"] - 1} for e in ref if e["type"] == "delete"]
    final = _final(ref)
    assert check_watch(ref, _W(list(ref)), _Writers(ops), final, []) == []
    gap = ref[:10] + ref[11:]
    assert check_watch(ref, _W(gap), _Writers(ops), final, [])
    dup = ref[:10] + [ref[9]] + ref[10:]
    assert check_watch(ref, _W(dup), _Writers(ops), final, [])
    assert check_watch(ref, _W(gap), _Writers(ops), final, [(10, 11)]) == []
    lost = [e for e in ref if e["id"] != 5]  # the committed history lacks an acked put
    assert any("acknowledged put" in b
               for b in check_watch(lost, _W(lost), _Writers(ops), _final(lost), []))
    failed = [dict(o, outcome="fail") if o.get("index") == 7 else o for o in ops]
    assert any("failed" in b for b in check_watch(ref, _W(ref), _Writers(failed), final, []))
    assert any("GET /keys" in b
               for b in check_watch(ref, _W(ref), _Writers(ops), {"w/zz": "x"}, []))


class _C:
    def __init__(self, acqs):
        self.acqs = acqs


def _acq(client, index, acked, end, released=None):
    return {"client": client, "value": f"c{client}-{index}", "index": index, "acked": acked,
            "belief_end": end, "used": True, "how": "201", "released": released,
            "release_by": "if-match"}


def test_check_lock():
    hist = [{"id": 10, "type": "put", "key": "lock", "value": "c0-10", "create_index": 10,
             "mod_index": 10, "version": 1},
            {"id": 12, "type": "delete", "key": "lock", "mod_index": 12},
            {"id": 13, "type": "put", "key": "lock", "value": "c1-13", "create_index": 13,
             "mod_index": 13, "version": 1},
            {"id": 15, "type": "delete", "key": "lock", "mod_index": 15}]
    good = [_C([_acq(0, 10, 1.0, 1.2, 12)]), _C([_acq(1, 13, 1.5, 1.7, 15)])]
    assert check_lock(hist, good, (404, None))[0] == []
    assert check_lock(None, good, (404, None))[0] == []
    overlap = [_C([_acq(0, 10, 1.0, 1.6, 12)]), _C([_acq(1, 13, 1.5, 1.7, 15)])]
    assert check_lock(hist, overlap, (404, None))[0]
    two = hist[:1] + hist[2:]  # a second put while the first holder held it
    assert check_lock(two, good, (404, None))[0]
    assert check_lock(None, [_C([_acq(0, 10, 1.0, 1.2, 14)]), _C([_acq(1, 13, 1.5, 1.7)])],
                      None)[0]
    ghost = [_C([_acq(0, 11, 1.0, 1.2)])]
    assert check_lock(hist, ghost, (404, None))[0]


def test_keepalive_rule():
    s = Session(0, 1)
    s.ttl, s.grant_sent = 2, 0.0
    s.kas = [(0.6, 0.7, 200), (1.3, None, 503), (1.4, 1.5, 200), (2.1, 2.2, 200)]
    assert s.kept_alive_until(3.0)
    assert not s.kept_alive_until(4.0)
    s.kas.append((2.8, 4.5, 200))  # acknowledged 2.4 s after the previous send
    assert not s.kept_alive_until(4.6)
