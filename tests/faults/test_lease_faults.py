"""Leases under faults (docs/faults.md, "Leases"): holders grant leases,
attach a key to each and keep them alive every ttl/3 through random nodes
while the leader is killed and paused.

- A lease kept alive must never expire: a session is "kept alive" when,
  from the grant on, every acknowledged keepalive came back less than
  TTL - MARGIN after the previous acknowledged one was sent (the grant's
  send for the first), and the final check ran within that bound too. Its
  key must still be there at the end (read linearizably, and on every node
  once each has applied a barrier), still attached to its lease, and no
  keepalive of it may have been answered 404.
- A lease whose keepalives stop (right after an acknowledged one) must
  expire: its key gone on every running node within TTL + EXPIRY_BOUND
  (two election timeouts and the request timeout) after the later of the
  last acknowledged keepalive and the last leader change seen, and never
  before TTL after the last keepalive sent (a linearizable read answering
  404 earlier is a violation).
- A paused leader (SIGSTOP for longer than the TTL, 3 s leases here) while
  the holders keep alive through the other nodes: every lease kept alive
  survives.

Skipped, naming the missing feature, when the lease routes answer 404/501.
"""
import os
import random
import threading
import time

import pytest

from faultrun import LONG, random_faults, soak_run
from harness import key_path, request
from streams import LeaderLog, grant, keepalive, probe_leases, put_raw
from test_faults import settle
from workload import barrier

TTL = 2                  # seconds asked for (and granted: above the minimum of 1 s here)
ELECTION_S = 0.5         # harness BASE_FLAGS: 50 ms ticks x 10
REQUEST_TIMEOUT_S = 2.0
EXPIRY_BOUND = 2 * ELECTION_S + REQUEST_TIMEOUT_S
POLL_SLACK = 0.5         # polling and a loaded machine
MARGIN = 0.3             # a keepalive must be applied before the deadline it extends


def _live(cluster, rng, answering=False):
    nodes = [n for n in cluster.nodes if n.alive() and not (answering and n.paused)]
    return rng.choice(nodes or cluster.nodes)


class Session:
    def __init__(self, holder, n):
        self.key = f"L/{holder}-{n}"
        self.value = f"h{holder}-{n}"
        self.id = None
        self.ttl = None
        self.grant_sent = None
        self.kas = []  # (sent, acked or None, status)
        self.state = "granting"  # -> kept | abandoned | lost | failed
        self.lost = None         # a 404 to a keepalive: (time, node)
        self.expiry = None       # abandoned: what the pollers saw

    def acked(self):
        return [(s, a) for s, a, st in self.kas if a is not None]

    def kept_alive_until(self, t_end):
        """Whether every gap between an acknowledged keepalive's send (the
        grant's for the first) and the next acknowledgement (t_end for the
        last) stayed under TTL - MARGIN."""
        prev = self.grant_sent
        for s, a in self.acked():
            if a - prev > self.ttl - MARGIN:
                return False
            prev = s
        return t_end - prev <= self.ttl - MARGIN

    def summary(self):
        acks = self.acked()
        gaps = []
        prev = self.grant_sent
        for s, a in acks:
            gaps.append(round(a - prev, 3))
            prev = s
        return {"key": self.key, "id": self.id, "ttl": self.ttl, "state": self.state,
                "keepalives": len(self.kas), "acked": len(acks),
                "max_gap": max(gaps) if gaps else None, "lost": self.lost,
                "expiry": self.expiry, "grant_sent": self.grant_sent,
                "kas": [(round(t, 3), round(a, 3) if a else None, st) for t, a, st in self.kas]}


class LeaseHolders:
    """holders threads; each runs sessions one after the other: grant,
    attach a key, keep alive every ttl/3; with probability abandon_p a
    session is abandoned after 1.5..4 s (its expiry then timed), else kept
    until stop() and kept alive until release()."""

    def __init__(self, run, leaders, holders=4, abandon_p=0.5, ttl=TTL):
        self.run = run
        self.ttl = ttl
        self.cluster = run.cluster
        self.leaders = leaders
        self.abandon_p = abandon_p
        self.sessions = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.release_ev = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=self._guard, args=(h,), daemon=True)
                        for h in range(holders)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _guard(self, h):
        try:
            self._holder(h, random.Random())
        except Exception as e:
            self.errors.append(repr(e))

    def _holder(self, h, rng):
        n = 0
        while not self.stop_ev.is_set():
            n += 1
            s = Session(h, n)
            with self.lock:
                self.sessions.append(s)
            if not self._grant_attach(s, rng):
                continue
            abandon = rng.random() < self.abandon_p
            keep_for = rng.uniform(1.5, 4.0)
            t_end = time.monotonic() + keep_for
            while True:
                if abandon and time.monotonic() >= t_end and not self.stop_ev.is_set():
                    s.state = "abandoned"
                    self._time_expiry(s, rng)
                    break
                if not abandon and self.release_ev.is_set():
                    s.state = "kept"
                    break
                time.sleep(s.ttl / 3)
                if not self._keepalive(s, rng):
                    s.state = "lost"
                    break
                if abandon and self.stop_ev.is_set():
                    abandon = False  # the run is over: keep it to the end

    def _grant_attach(self, s, rng):
        deadline = time.monotonic() + 10
        while s.id is None:
            if time.monotonic() > deadline or self.release_ev.is_set():
                s.state = "failed"
                return False
            node = _live(self.cluster, rng)
            t = time.monotonic()
            try:
                st, doc = grant(node.haddr, self.ttl, timeout=1.0)
            except OSError:
                time.sleep(0.05)
                continue
            if st == 201:
                s.id, s.ttl, s.grant_sent = doc["id"], doc["ttl"], t
                assert s.ttl >= self.ttl, f"granted {doc} for a ttl of {self.ttl}"
            elif 400 <= st < 500:
                raise AssertionError(f"POST /lease on {node.id}: {st} {doc}")
            else:
                time.sleep(0.05)
        while True:  # attach the key; keep the lease alive meanwhile
            if time.monotonic() - s.grant_sent > s.ttl / 3 and not self._keepalive(s, rng):
                s.state = "lost"
                return False
            node = _live(self.cluster, rng)
            try:
                st, doc, _ = put_raw(node.haddr, s.key, s.value, lease=s.id, timeout=1.0)
            except OSError:
                time.sleep(0.05)
                continue
            if st in (200, 201):
                s.state = "attached"
                return True
            if st == 404:
                s.state = "lost"
                s.lost = (time.monotonic(), node.id, "attach: lease not found")
                return False
            if 400 <= st < 500:
                raise AssertionError(f"PUT {s.key}?lease={s.id} on {node.id}: {st} {doc}")
            time.sleep(0.05)

    def _keepalive(self, s, rng):
        """Until acknowledged: False when the lease is gone (404)."""
        while True:
            node = _live(self.cluster, rng)
            t = time.monotonic()
            try:
                st, doc = keepalive(node.haddr, s.id, timeout=s.ttl / 4)
            except OSError as e:
                s.kas.append((t, None, repr(e)[:40]))
                time.sleep(0.02)
                continue
            if st == 200:
                s.kas.append((t, time.monotonic(), 200))
                return True
            s.kas.append((t, None, st))
            if st == 404:
                s.lost = (time.monotonic(), node.id, f"keepalive: {doc}")
                return False
            if 400 <= st < 500:
                raise AssertionError(f"keepalive {s.id} on {node.id}: {st} {doc}")
            time.sleep(0.02)

    def _time_expiry(self, s, rng):
        """Polls the key: a linearizable read on a random node (the first
        404 dates the expiry) and level=none on every running node (when
        all answer 404: gone everywhere)."""
        last_sent = max(t for t, _, _ in s.kas) if s.kas else s.grant_sent
        last_acked = s.acked()[-1][1] if s.acked() else s.grant_sent
        e = {"last_sent": last_sent, "last_acked": last_acked, "lin_gone": None,
             "all_gone": None, "early_present": None}
        give_up = last_acked + s.ttl + EXPIRY_BOUND + 15
        while time.monotonic() < give_up and (e["lin_gone"] is None or e["all_gone"] is None):
            node = _live(self.cluster, rng, answering=True)
            try:
                st, _ = request(node.haddr, "GET", key_path(s.key, "linearizable"), timeout=1.0)
                if st == 404 and e["lin_gone"] is None:
                    e["lin_gone"] = time.monotonic()
                    e["lin_gone_node"] = node.id
            except OSError:
                pass
            up = [n for n in self.cluster.nodes if n.alive() and not n.paused]
            gone = 0
            for n in up:
                try:
                    if request(n.haddr, "GET", key_path(s.key, "none"), timeout=0.5)[0] == 404:
                        gone += 1
                except OSError:
                    pass
            if up and gone == len(up) and len(up) * 2 > len(self.cluster.nodes) \
                    and e["all_gone"] is None:
                e["all_gone"] = time.monotonic()
            time.sleep(0.05)
        e["leader_change"] = self.leaders.last_change_before(e["all_gone"] or time.monotonic())
        s.expiry = e

    def stop(self):
        self.stop_ev.set()

    def release(self):
        self.release_ev.set()
        for t in self.threads:
            t.join(timeout=30)
        if self.errors:
            raise AssertionError(f"holder thread crashed: {self.errors[0]}")


def check_leases(run, holders, t_end):
    """The final checks, while kept sessions still keep alive. Returns
    (summary, violations)."""
    cl = run.cluster
    bad = []
    barrier(cl, what="lease check")
    t_checked = time.monotonic()
    kept = [s for s in holders.sessions if s.state == "attached"]
    kept_ok = 0
    for s in kept:
        if not s.kept_alive_until(time.monotonic()):
            continue  # not kept alive by the rule: it may have expired
        kept_ok += 1
        ld = cl.leader_node() or cl.nodes[0]
        st, doc = request(ld.haddr, "GET", key_path(s.key) + "?meta")
        if st != 200 or doc.get("value") != s.value or doc.get("lease") != s.id:
            bad.append(f"{s.key} of lease {s.id}, kept alive (max gap "
                       f"{s.summary()['max_gap']} s of ttl {s.ttl}): {st} {doc} on {ld.id}")
            continue
        for n in cl.nodes:
            st, _ = request(n.haddr, "GET", key_path(s.key, "none"))
            if st != 200:
                bad.append(f"{s.key} of lease {s.id}, kept alive: {st} on {n.id}")
        st, doc = request(ld.haddr, "GET", f"/lease/{s.id}")
        if st != 200:
            bad.append(f"lease {s.id}, kept alive: GET /lease answered {st} {doc}")
    for s in holders.sessions:
        if s.state == "lost" and s.kept_alive_until(s.lost[0]):
            bad.append(f"lease {s.id} ({s.key}) kept alive (max gap {s.summary()['max_gap']} s "
                       f"of ttl {s.ttl}) answered 404: {s.lost}")
    expired = [s for s in holders.sessions if s.state == "abandoned"]
    timings = []
    for s in expired:
        e = s.expiry
        if e["lin_gone"] is None or e["all_gone"] is None:
            bad.append(f"lease {s.id} ({s.key}) abandoned: never gone ({e})")
            continue
        early = e["last_sent"] + s.ttl
        if e["lin_gone"] < early:
            bad.append(f"lease {s.id} ({s.key}) expired early: 404 at +"
                       f"{e['lin_gone'] - e['last_sent']:.3f}s after the last keepalive sent "
                       f"(ttl {s.ttl}) on {e.get('lin_gone_node')}")
        start = max(e["last_acked"], e["leader_change"] or 0)
        late = start + s.ttl + EXPIRY_BOUND + POLL_SLACK
        if e["all_gone"] > late:
            bad.append(f"lease {s.id} ({s.key}) expired late: gone everywhere "
                       f"{e['all_gone'] - start:.3f}s after the later of the last acknowledged "
                       f"keepalive and the last leader change (ttl {s.ttl} + bound "
                       f"{EXPIRY_BOUND})")
        timings.append(round(e["all_gone"] - e["last_acked"], 3))
    summ = {"sessions": len(holders.sessions), "kept": len(kept), "kept_alive_by_rule": kept_ok,
            "abandoned": len(expired), "lost": sum(s.state == "lost" for s in holders.sessions),
            "expiry_after_last_ack_s": sorted(timings),
            "leader_changes": len(holders.leaders.changes),
            "seconds_checked_after_end": round(t_checked - t_end, 1)}
    return summ, bad


def _lease_run(run, report, n, faults, holders=4, abandon_p=0.5, require_abandoned=True,
               ttl=TTL):
    run.cluster.start(n)
    why = probe_leases(run.cluster.nodes[0].haddr)
    if why:
        pytest.skip(why)
    leaders = LeaderLog(run.cluster).start()
    hs = LeaseHolders(run, leaders, holders=holders, abandon_p=abandon_p, ttl=ttl).start()
    try:
        faults(run.nemesis, hs)
        hs.stop()
        t_end = time.monotonic()
        run.nemesis.heal()
        run.nemesis.resume_all()
        run.nemesis.restart_dead()
        run.cluster.wait_converged(timeout=45)
        time.sleep(ttl + EXPIRY_BOUND)  # the last abandoned ones time their expiry
        summ, bad = check_leases(run, hs, t_end)
    finally:
        hs.release()
        leaders.stop()
    summ["test"] = run.name
    summ["faults"] = [f"{e['kind']}: {e['detail']}" for e in run.nemesis.events]
    summ["sessions_detail"] = [s.summary() for s in hs.sessions]
    summ["leaders"] = [(round(t, 3), term, who) for t, term, who in leaders.changes]
    run.log(f"leases: {summ}")
    report_lines(report, run, summ)
    assert not bad, f"lease violations (see {run.dir}):\n" + "\n".join(bad[:10])
    assert summ["kept_alive_by_rule"] > 0, f"no lease was kept alive to the end: {summ}"
    assert summ["abandoned"] > 0 or not require_abandoned, f"no lease was abandoned and timed: {summ}"
    return summ, hs


def report_lines(report, run, summ):
    """The conftest report wants a fault-run summary; this prints ours."""
    run.summary = summ
    print(f"{run.name}: {summ['sessions']} lease sessions, {summ['kept_alive_by_rule']} kept "
          f"alive to the end, {summ['abandoned']} abandoned (expired after the last ack in "
          f"{summ['expiry_after_last_ack_s']} s), {summ['lost']} lost, "
          f"{summ['leader_changes']} leaders seen")


def test_lease_kill9(run, report):
    """kill -9 of the leader twice and of a random node, holders keeping
    alive and abandoning leases throughout."""
    def faults(nem, hs):
        settle(2)
        nem.kill_restart(nem.leader_or_random(), down=1.0)
        settle(3)
        nem.kill_restart(down=0.5)
        settle(3)
        nem.kill_restart(nem.leader_or_random(), down=0.5)
        settle(3)
    _lease_run(run, report, 3, faults)


PAUSED_TTL = 3  # ttl - MARGIN covers most holders' gaps across a pause


def test_lease_paused_leader(run, report):
    """SIGSTOP of the leader for longer than the TTL while the holders keep
    alive through the other nodes: every lease kept alive survives, and
    keepalives were acknowledged during the pause."""
    pauses = []

    def faults(nem, hs):
        settle(2.5)
        for _ in range(2):
            t0 = time.monotonic()
            nem.pause(nem.leader_or_random(), secs=PAUSED_TTL + 1.5)
            pauses.append((t0, time.monotonic()))
            settle(3)
    summ, hs = _lease_run(run, report, 3, faults, holders=4, abandon_p=0.3,
                          require_abandoned=False, ttl=PAUSED_TTL)
    for t0, t1 in pauses:
        acked = [a for s in hs.sessions for _, a in s.acked() if t0 + 1.0 < a < t1]
        assert acked, f"no keepalive acknowledged during the pause {t0:.1f}..{t1:.1f} " \
                      f"(through the other nodes)"


LEASE_SOAK_SECONDS = float(os.environ.get("FAULTS_LEASE_SECONDS", "300"))


@pytest.mark.skipif(not LONG, reason="the lease soak runs with FAULTS_LONG=1 (make faults LONG=1)")
def test_lease_soak(request, tmp_path, report):
    """The lease holders on 5 nodes under random faults of every kind for
    FAULTS_LEASE_SECONDS (default 300), checked as above."""
    run = soak_run(request, tmp_path)

    def faults(nem, hs):
        random_faults(nem, LEASE_SOAK_SECONDS)
    try:
        _lease_run(run, report, 5, faults, holders=6)
    finally:
        run.close()
