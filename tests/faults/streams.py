"""Clients of the watch and lease API for the fault tests (test_watch.py,
test_lease_faults.py, test_lock.py; docs/faults.md, docs/locks.md).

- WatchStream: one GET /watch (Server-Sent Events) connection, read event by
  event; Resuming: a watcher that reconnects to a random node after every
  disconnect or error with Last-Event-ID = the last id it saw.
- read_history(): a full watch of a prefix or key from a given index on one
  node, read until a given event shows up: the committed history.
- LeaderLog: a thread noting when a new leader (term) is first seen, so
  that lease expiry bounds can start from the last leader change.
- lease helpers: grant, keepalive, revoke.

Every request has a timeout; no call blocks forever. Times are
time.monotonic(), the same clock the daemons use on this machine.
"""
import http.client as httpclient
import json
import threading
import time
import urllib.parse

from harness import request, request_raw

WATCH_READ_TIMEOUT = 3.0  # no byte for this long: the node is paused or gone


class NotAvailable(Exception):
    """The endpoint answered 404 or 501: the feature is not built."""


class WatchRefused(Exception):
    def __init__(self, status, doc):
        super().__init__(f"{status} {doc}")
        self.status = status
        self.doc = doc if isinstance(doc, dict) else {}


def watch_path(prefix=None, key=None, frm=None):
    q = {"prefix": prefix} if key is None else {"key": key}
    if frm is not None:
        q["from"] = str(frm)
    return "/watch?" + urllib.parse.urlencode(q)


class WatchStream:
    """One watch connection. events() yields (id, kind, data) for put and
    delete events; progress events only keep the stream alive; an error
    event raises WatchRefused(200, data); the end of the stream or a read
    timeout raises OSError."""

    def __init__(self, addr, path, last_id=None, timeout=WATCH_READ_TIMEOUT):
        host, _, port = addr.rpartition(":")
        self.conn = httpclient.HTTPConnection(host, int(port), timeout=timeout)
        hdrs = {"Accept": "text/event-stream"}
        if last_id is not None:
            hdrs["Last-Event-ID"] = str(last_id)
        try:
            self.conn.request("GET", path, headers=hdrs)
            self.resp = self.conn.getresponse()
        except httpclient.HTTPException as e:
            self.conn.close()
            raise ConnectionResetError(f"GET {addr}{path}: {e!r}") from e
        except OSError:
            self.conn.close()
            raise
        if self.resp.status != 200:
            raw = self.resp.read()
            self.conn.close()
            try:
                doc = json.loads(raw.decode()) if raw else None
            except ValueError:
                doc = {"error": f"unparsable body {raw[:100]!r}"}
            if self.resp.status in (404, 501) and not (isinstance(doc, dict)
                                                       and doc.get("error") == "compacted"):
                raise NotAvailable(f"GET {path}: {self.resp.status} {doc}")
            raise WatchRefused(self.resp.status, doc)
        ctype = self.resp.getheader("Content-Type", "")
        if not ctype.startswith("text/event-stream"):
            self.conn.close()
            raise AssertionError(f"GET {path}: Content-Type {ctype!r}, not text/event-stream")
        self.progress = None  # the index of the last progress event

    def _line(self):
        try:
            raw = self.resp.readline(1 << 20)
        except httpclient.HTTPException as e:
            raise ConnectionResetError(repr(e)) from e
        if not raw:
            raise ConnectionResetError("the stream ended")
        return raw.decode("utf-8").rstrip("\r\n")

    def events(self):
        fields = {}
        while True:
            line = self._line()
            if line.startswith(":"):
                continue
            if line:
                name, _, val = line.partition(":")
                fields[name] = fields.get(name, "") + (val[1:] if val.startswith(" ") else val)
                continue
            if not fields:
                continue
            kind = fields.get("event", "message")
            data = json.loads(fields["data"]) if "data" in fields else None
            eid = fields.get("id")
            fields = {}
            if kind == "progress":
                self.progress = data.get("index")
                yield None, "progress", data
            elif kind == "error":
                raise WatchRefused(200, data)
            else:
                if eid is None or not eid.isdigit():
                    raise AssertionError(f"{kind} event without a numeric id: {data}")
                yield int(eid), kind, data

    def close(self):
        self.conn.close()


def event_record(eid, kind, data):
    """The comparable form of an event."""
    rec = {"id": eid, "type": kind, "key": data.get("key")}
    if kind == "put":
        rec.update({"value": data.get("value"), "create_index": data.get("create_index"),
                    "mod_index": data.get("mod_index"), "version": data.get("version")})
    else:
        rec["mod_index"] = data.get("mod_index")
    return rec


def probe_watch(addr):
    """None if GET /watch is served here, else why not (404/501)."""
    try:
        s = WatchStream(addr, watch_path(prefix="__probe__/"), timeout=2.0)
    except NotAvailable as e:
        return f"watch not built: {e}"
    s.close()
    return None


def probe_leases(addr):
    """None if the lease routes are served, else why not (404/501)."""
    st, doc = request(addr, "GET", "/leases")
    if st in (404, 501):
        return f"leases not built: GET /leases answered {st} {doc}"
    return None


class Resuming:
    """A watcher on a prefix (or key) that reads from a random node and, on
    every disconnect, error or read timeout, reconnects to another random
    node with Last-Event-ID = the last id it saw (the first connection with
    from=frm). Runs in its own thread until stop() and then until `until`
    (an event predicate) matched or the drain time ran out."""

    def __init__(self, cluster, rng, prefix=None, key=None, frm=0, log=print):
        self.cluster = cluster
        self.rng = rng
        self.prefix, self.key, self.frm = prefix, key, frm
        self.log = log
        self.events = []       # event records in the order received
        self.connections = []  # (node id, Last-Event-ID sent, how it ended)
        self.compacted = []    # 410s: (node, last id, oldest_index)
        self.too_slow = []
        self.resets = []       # "history reset" error events: (node, index)
        self.last_id = None
        self.node = None       # the node of the current connection
        self.error = None
        self.stop_ev = threading.Event()
        self.until = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._guard, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def finish(self, until, drain=20.0):
        """Stops once an event matching until(rec) arrived (or drain
        seconds passed); returns True when it matched."""
        self.until = until
        if any(until(e) for e in self.events):
            self.done.set()
        self.stop_ev.set()
        matched = self.done.wait(drain)
        self.done.set()
        self.thread.join(timeout=WATCH_READ_TIMEOUT + 5)
        if self.error:
            raise AssertionError(f"watcher thread crashed: {self.error}")
        return matched

    def _guard(self):
        try:
            self._loop()
        except Exception as e:  # reported by finish()
            self.error = repr(e)

    def _loop(self):
        while not self.done.is_set():
            nodes = [n for n in self.cluster.nodes if n.alive()] or self.cluster.nodes
            if self.stop_ev.is_set():  # draining: a node that answers
                nodes = [n for n in nodes if not n.paused] or nodes
            node = self.rng.choice(nodes)
            frm = self.frm if self.last_id is None else None
            path = watch_path(self.prefix, self.key, frm)
            how = "?"
            try:
                s = WatchStream(node.haddr, path, last_id=self.last_id)
            except WatchRefused as e:
                if e.status == 410 and e.doc.get("error") == "compacted":
                    self.compacted.append({"node": node.id, "last_id": self.last_id,
                                           "oldest_index": e.doc.get("oldest_index")})
                    self.last_id = e.doc.get("oldest_index")  # go on from the floor
                    self.connections.append((node.id, self.last_id, f"410 {e.doc}"))
                    continue
                self.connections.append((node.id, self.last_id, f"refused {e}"))
                time.sleep(0.1)
                continue
            except OSError as e:
                self.connections.append((node.id, self.last_id, f"connect: {e!r}"[:120]))
                time.sleep(0.1)
                continue
            try:
                self.node = node
                for eid, kind, data in s.events():
                    if kind == "progress":
                        if self.rng.random() < 0.3:  # idle, every entry sent: leave now and then
                            how = "client closed at a progress event"
                            break
                        continue
                    rec = event_record(eid, kind, data)
                    rec["node"] = node.id
                    self.events.append(rec)
                    self.last_id = eid
                    if self.until is not None and self.until(rec):
                        self.done.set()
                        how = "done"
                        break
            except WatchRefused as e:
                how = f"error event {e.doc}"
                if e.doc.get("error") == "too slow":
                    self.too_slow.append({"node": node.id, **e.doc})
                elif e.doc.get("error") == "history reset":
                    self.resets.append({"node": node.id, **e.doc})
            except (OSError, ValueError) as e:
                how = f"{e!r}"[:120]
            finally:
                s.close()
            self.connections.append((node.id, self.last_id, how))


def read_history(addr, prefix=None, key=None, frm=0, until=None, timeout=30.0):
    """The events of a prefix or key with an index > frm from one node, read
    until until(rec) matched: (events, None), or (events, the 410 body) when
    frm is below the node's history."""
    deadline = time.monotonic() + timeout
    s = WatchStream(addr, watch_path(prefix, key, frm), timeout=timeout)
    out = []
    try:
        for eid, kind, data in s.events():
            if kind != "progress":
                rec = event_record(eid, kind, data)
                out.append(rec)
                if until is not None and until(rec):
                    return out
            if time.monotonic() > deadline:
                raise AssertionError(f"history read from {addr}: no end marker after "
                                     f"{timeout}s ({len(out)} events)")
    finally:
        s.close()


def committed_history(cluster, prefix=None, key=None, until=None, timeout=30.0):
    """read_history from the leader (a healthy node after the run). A 410
    answer is returned as the second value: the caller restarts from it."""
    ld = cluster.leader_node() or cluster.nodes[0]
    try:
        return read_history(ld.haddr, prefix, key, 0, until, timeout), None, ld
    except WatchRefused as e:
        if e.status != 410:
            raise
        floor = e.doc.get("oldest_index")
        return read_history(ld.haddr, prefix, key, floor, until, timeout), e.doc, ld


class LeaderLog:
    """Polls /status of every live node every `every` seconds and notes the
    first time each (term, leader) is seen."""

    def __init__(self, cluster, every=0.1):
        self.cluster = cluster
        self.every = every
        self.changes = []  # (monotonic time first seen, term, leader id)
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_ev.set()
        self.thread.join(timeout=5)

    def _loop(self):
        seen = set()
        while not self.stop_ev.is_set():
            for n in list(self.cluster.nodes):
                if not n.alive() or n.paused:
                    continue
                st = n.status(timeout=0.3)
                if st and st.get("role") == "leader":
                    k = (st.get("term"), n.id)
                    if k not in seen:
                        seen.add(k)
                        self.changes.append((time.monotonic(), st.get("term"), n.id))
            self.stop_ev.wait(self.every)

    def last_change_before(self, t):
        """The time the last new leader seen at or before t was first seen."""
        ts = [c[0] for c in self.changes if c[0] <= t]
        return ts[-1] if ts else None


# ---- leases -------------------------------------------------------------------

def grant(addr, ttl, timeout=2.0):
    """(status, doc) of POST /lease {"ttl": ttl}."""
    return request(addr, "POST", "/lease", {"ttl": ttl}, timeout=timeout)


def keepalive(addr, lid, timeout=2.0):
    return request(addr, "POST", f"/lease/{lid}/keepalive", timeout=timeout)


def revoke(addr, lid, timeout=2.0):
    return request(addr, "DELETE", f"/lease/{lid}", timeout=timeout)


def put_raw(addr, key, value, lease=None, headers=None, timeout=2.0):
    """PUT /key/<k>[?lease=] with the raw value: (status, doc, headers)."""
    p = "/key/" + urllib.parse.quote(key, safe="")
    if lease is not None:
        p += f"?lease={lease}"
    return request_raw(addr, "PUT", p, value.encode(), headers or {}, timeout=timeout)


def delete_raw(addr, key, headers=None, timeout=2.0):
    p = "/key/" + urllib.parse.quote(key, safe="")
    return request_raw(addr, "DELETE", p, None, headers or {}, timeout=timeout)


def header_index(hdrs):
    v = (hdrs or {}).get("x-craftd-index")
    return int(v) if v and v.isdigit() else None
