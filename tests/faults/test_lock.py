"""The lock recipe of docs/locks.md under faults: N clients contend for one
key while the leader is killed and paused.

Each client holds a lease (kept alive every ttl/3 by its own thread) and
loops: PUT /key/lock?lease=<id> with If-None-Match: * (201: it holds the
lock; 412: wait for the holder's delete with GET /watch?key=lock&from=<the
412's mod_index>, then try again), holds it a little, and releases it with
DELETE /key/lock If-Match: "<its mod_index>" or DELETE /lease/<id>. A client
believes it holds the lock from its 201 until it sends the release, and
never past ttl - MARGIN after the last acknowledged keepalive's send.

At the end the committed history of the key (a watch from=0 on the leader;
without watch, the clients' own records and a last ?meta read) must show:
- every put created the key (If-None-Match: *): version 1, and puts and
  deletes alternate, so at most one holder at any index;
- every 201 is one interval of that history (its put, with the client's
  value, at the mod_index it was answered), no interval claimed twice;
- a release answered 200 ended its interval no later than its index;
- the intervals clients believed in do not overlap in time: a client's
  belief ended before the next holder's 201 arrived;
- the lock ends free once the clients are gone (their leases expire).
A release answered 412/404 is counted, not refused: the lease may run out
between the release's send and its apply, after the belief ended.
"""
import os
import random
import threading
import time

import pytest

from faultrun import LONG, random_faults, soak_run
from harness import request, request_raw
from streams import (NotAvailable, WatchRefused, WatchStream, delete_raw, event_record,
                     grant, header_index, keepalive, probe_leases, probe_watch, put_raw,
                     watch_path)
from test_faults import settle
from workload import classify_write

LOCK = "lock"
TTL = 2
MARGIN = 0.3


class Client:
    def __init__(self, cid, cluster, use_watch, stop_ev, errors):
        self.cid = cid
        self.cluster = cluster
        self.use_watch = use_watch
        self.stop_ev = stop_ev
        self.errors = errors
        self.rng = random.Random()
        self.mu = threading.Lock()
        self.lease = None        # (id, ttl)
        self.last_ka_sent = None  # send time of the last acknowledged keepalive (or grant)
        self.lease_lost = False
        self.acqs = []           # what this client believed
        self.waits = {"watch": 0, "poll": 0}
        self.n = 0

    def node(self, answering=False):
        ns = [n for n in self.cluster.nodes if n.alive() and not (answering and n.paused)]
        return self.rng.choice(ns or self.cluster.nodes)

    def run(self):
        ka = threading.Thread(target=self._keepalives, daemon=True)
        ka.start()
        try:
            while not self.stop_ev.is_set():
                if self.lease is None or self.lease_lost:
                    self._new_lease()
                    continue
                acq = self._acquire()
                if acq is None:
                    continue
                self._hold_release(acq)
        except Exception as e:
            self.errors.append(f"client {self.cid}: {e!r}")
        finally:
            ka.join(timeout=5)

    # ---- the lease ----

    def _new_lease(self):
        t = time.monotonic()
        try:
            st, doc = grant(self.node().haddr, TTL, timeout=1.0)
        except OSError:
            time.sleep(0.05)
            return
        if st == 201:
            with self.mu:
                self.lease, self.last_ka_sent, self.lease_lost = (doc["id"], doc["ttl"]), t, False
        elif 400 <= st < 500:
            raise AssertionError(f"POST /lease: {st} {doc}")
        else:
            time.sleep(0.05)

    def _keepalives(self):
        while not self.stop_ev.is_set():
            with self.mu:
                lease, lost = self.lease, self.lease_lost
            if lease is None or lost:
                time.sleep(0.05)
                continue
            lid, ttl = lease
            time.sleep(ttl / 3)
            while not self.stop_ev.is_set():
                t = time.monotonic()
                try:
                    st, doc = keepalive(self.node().haddr, lid, timeout=ttl / 4)
                except OSError:
                    time.sleep(0.02)
                    continue
                with self.mu:
                    if self.lease is None or self.lease[0] != lid:
                        break
                    if st == 200:
                        self.last_ka_sent = max(self.last_ka_sent, t)
                        break
                    if st == 404:
                        self.lease_lost = True
                        break
                time.sleep(0.02)

    def valid_until(self):
        with self.mu:
            if self.lease is None or self.lease_lost:
                return 0.0
            return self.last_ka_sent + self.lease[1] - MARGIN

    # ---- the recipe ----

    def _acquire(self):
        self.n += 1
        lid, _ = self.lease
        value = f"c{self.cid}-{self.n}"
        node = self.node()
        t = time.monotonic()
        try:
            st, doc, _ = put_raw(node.haddr, LOCK, value, lease=lid,
                                 headers={"If-None-Match": "*"}, timeout=2.5)
        except ConnectionRefusedError:
            time.sleep(0.05)
            return None
        except OSError:
            st, doc, _ = None, None, {}
        now = time.monotonic()
        if st == 201:
            return self._believe(value, doc["mod_index"], t, now, lid, "201")
        if st == 412:
            self._wait(doc.get("mod_index", 0))
            return None
        if st == 404:
            with self.mu:
                self.lease_lost = True
            return None
        if st is not None and classify_write(st, doc) == "fail":
            time.sleep(0.05)
            return None
        # unknown: did it apply? Read the key linearizably.
        for _ in range(10):
            try:
                rs, rd = request(self.node(answering=True).haddr, "GET", f"/key/{LOCK}?meta")
            except OSError:
                continue
            if rs == 200 and rd.get("value") == value:
                return self._believe(value, rd["mod_index"], t, time.monotonic(), lid,
                                     "unknown, then read")
            if rs in (200, 404):
                return None
            time.sleep(0.1)
        return None

    def _believe(self, value, index, sent, acked, lid, how):
        if acked >= self.valid_until():
            # the lease may have run out meanwhile: do not use the lock, release it
            acq = {"client": self.cid, "value": value, "index": index, "sent": sent,
                   "acked": acked, "lease": lid, "how": how, "used": False,
                   "belief_end": acked}
        else:
            acq = {"client": self.cid, "value": value, "index": index, "sent": sent,
                   "acked": acked, "lease": lid, "how": how, "used": True}
        self.acqs.append(acq)
        return acq

    def _wait(self, holder_index):
        """Until the key changes after holder_index (or 2 s)."""
        if self.use_watch:
            try:
                s = WatchStream(self.node(answering=True).haddr,
                                watch_path(key=LOCK, frm=holder_index), timeout=2.0)
            except (NotAvailable, WatchRefused, OSError):
                time.sleep(0.05)
                return
            self.waits["watch"] += 1
            try:
                for eid, kind, data in s.events():
                    if kind == "delete":
                        return
            except (WatchRefused, OSError, ValueError):
                return
            finally:
                s.close()
        self.waits["poll"] += 1
        time.sleep(self.rng.uniform(0.02, 0.15))

    def _hold_release(self, acq):
        if acq["used"]:
            hold_until = min(time.monotonic() + self.rng.uniform(0.05, 0.3), self.valid_until())
            while time.monotonic() < hold_until:
                time.sleep(0.01)
            acq["belief_end"] = min(time.monotonic(), self.valid_until())
        by_lease = self.rng.random() < 0.3
        acq["release_by"] = "lease" if by_lease else "if-match"
        acq["release_sent"] = time.monotonic()
        for _ in range(40):
            if self.stop_ev.is_set() and _ > 20:
                break
            node = self.node()
            try:
                if by_lease:
                    st, doc, h = request_raw(node.haddr, "DELETE", f"/lease/{acq['lease']}",
                                             timeout=2.0)
                else:
                    st, doc, h = delete_raw(node.haddr, LOCK, {"If-Match": f'"{acq["index"]}"'})
            except OSError:
                time.sleep(0.05)
                continue
            if st == 200:
                acq["released"] = header_index(h)
                break
            if st in (404, 412):  # the lease (or the lock) was gone already
                acq["release_refused"] = {"status": st, "doc": doc, "at": time.monotonic()}
                break
            time.sleep(0.05)
        if by_lease:
            with self.mu:
                self.lease = None


def check_lock(hist, clients, final_meta):
    bad = []
    acqs = sorted((a for c in clients for a in c.acqs), key=lambda a: a["index"])
    intervals = []
    if hist is not None:
        for e in hist:
            if e["type"] == "put":
                if intervals and intervals[-1]["end"] is None:
                    bad.append(f"put at {e['id']} while {intervals[-1]} still held the lock")
                if e["version"] != 1 or e["create_index"] != e["id"]:
                    bad.append(f"put at {e['id']} did not create the key: {e}")
                intervals.append({"start": e["id"], "value": e["value"], "end": None})
            else:
                if not intervals or intervals[-1]["end"] is not None:
                    bad.append(f"delete at {e['id']} of a key not held")
                else:
                    intervals[-1]["end"] = e["id"]
    else:  # the clients' records: starts from the 201s, ends from the releases
        for a in acqs:
            intervals.append({"start": a["index"], "value": a["value"], "end": a.get("released")})
        for a, b in zip(intervals, intervals[1:]):
            if a["end"] is not None and not a["end"] < b["start"]:
                bad.append(f"lock taken at {b['start']} before its release at {a['end']}")
            if not a["start"] < b["start"]:
                bad.append(f"two acquisitions at {a['start']}")
    by_start = {iv["start"]: iv for iv in intervals}
    claimed = set()
    for a in acqs:
        iv = by_start.get(a["index"])
        if iv is None or iv["value"] != a["value"]:
            bad.append(f"client {a['client']} got {a['how']} at {a['index']} ({a['value']}), "
                       f"not in the history (there: {iv})")
            continue
        if a["index"] in claimed:
            bad.append(f"interval at {a['index']} claimed twice")
        claimed.add(a["index"])
        if a.get("released") is not None and iv["end"] is not None and iv["end"] > a["released"]:
            bad.append(f"client {a['client']} released at {a['released']} but the lock was "
                       f"deleted at {iv['end']}")
    used = [a for a in acqs if a["used"]]
    for a, b in zip(used, used[1:]):
        if not a["belief_end"] < b["acked"]:
            bad.append(f"client {a['client']} believed it held the lock (from {a['index']}) "
                       f"until +{a['belief_end']:.3f}, after client {b['client']}'s 201 at "
                       f"{b['index']} came (+{b['acked']:.3f})")
    if final_meta is not None and intervals and hist is not None:
        last = intervals[-1]
        held = final_meta[0] == 200
        if held != (last["end"] is None):
            bad.append(f"final ?meta {final_meta} but the history ends with {last}")
    return bad, intervals


def _lock_run(run, n, faults, clients=4):
    cl = run.cluster
    cl.start(n)
    why = probe_leases(cl.nodes[0].haddr)
    if why:
        pytest.skip(f"the lock recipe needs leases: {why}")
    use_watch = probe_watch(cl.nodes[0].haddr) is None
    stop_ev = threading.Event()
    errors = []
    cs = [Client(i, cl, use_watch, stop_ev, errors) for i in range(clients)]
    ths = [threading.Thread(target=c.run, daemon=True) for c in cs]
    for t in ths:
        t.start()
    try:
        faults(run.nemesis)
    finally:
        stop_ev.set()
        for t in ths:
            t.join(timeout=60)
    assert not errors, f"client crashed: {errors[0]}"
    run.nemesis.heal()
    run.nemesis.resume_all()
    run.nemesis.restart_dead()
    cl.wait_converged(timeout=45)
    # the clients are gone: their leases expire, so the lock ends free
    from harness import wait_until
    wait_until("the lock free once the clients stopped",
               lambda: request((cl.leader_node() or cl.nodes[0]).haddr, "GET",
                               f"/key/{LOCK}?meta")[0] == 404, 20, 0.2)
    ld = cl.leader_node() or cl.nodes[0]
    final = request(ld.haddr, "GET", f"/key/{LOCK}?meta")
    hist = _read_key_history(ld.haddr) if use_watch else None
    bad, intervals = check_lock(hist, cs, final)
    acqs = [a for c in cs for a in c.acqs]
    summ = {"test": run.name, "history": "watch from=0" if hist is not None else
            "clients' records (no watch)", "acquisitions": len(acqs),
            "used": sum(a["used"] for a in acqs),
            "released_200": sum(1 for a in acqs if a.get("released") is not None),
            "release_refused": sum(1 for a in acqs if a.get("release_refused")),
            "intervals": len(intervals), "waits": {c.cid: c.waits for c in cs},
            "faults": [f"{e['kind']}: {e['detail']}" for e in run.nemesis.events]}
    run.log(f"lock: {summ}")
    print(f"{run.name}: {summ['acquisitions']} acquisitions ({summ['used']} used), "
          f"{summ['released_200']} released with 200, {summ['release_refused']} refused; "
          f"history from {summ['history']}")
    assert not bad, f"lock violations (see {run.dir}):\n" + "\n".join(bad[:10])
    assert summ["used"] >= clients, f"too few acquisitions to mean anything: {summ}"
    assert len({a["client"] for a in acqs if a["used"]}) > 1, f"no contention: {summ}"
    return summ


def _read_key_history(addr):
    """The key's events from 0 up to the node's applied index now."""
    st = request(addr, "GET", "/status")[1]
    upto = st["applied_index"]
    s = WatchStream(addr, watch_path(key=LOCK, frm=0), timeout=3.0)
    out = []
    try:
        for eid, kind, data in s.events():
            if kind == "progress":
                if data.get("index", 0) >= upto:
                    break
                continue
            out.append(event_record(eid, kind, data))
            if eid >= upto:
                break
    except OSError:
        pass  # read to the end of what was committed: the 3 s silence ends it
    finally:
        s.close()
    return out


def test_lock_kill9_pause(run):
    def faults(nem):
        settle(2)
        nem.kill_restart(nem.leader_or_random(), down=1.0)
        settle(2.5)
        nem.pause(nem.leader_or_random(), secs=TTL + 1.0)
        settle(2.5)
        nem.kill_restart(down=0.5)
        settle(2)
    _lock_run(run, 3, faults)


LOCK_SOAK_SECONDS = float(os.environ.get("FAULTS_LOCK_SECONDS", "300"))


@pytest.mark.skipif(not LONG, reason="the lock soak runs with FAULTS_LONG=1 (make faults LONG=1)")
def test_lock_soak(request, tmp_path):
    run = soak_run(request, tmp_path)

    def faults(nem):
        random_faults(nem, LOCK_SOAK_SECONDS)
    try:
        _lock_run(run, 5, faults, clients=6)
    finally:
        run.close()
