"""Client workloads for the fault tests and the checks of their histories.

Registers: threads put unique values to a few keys and read them back at
level=linearizable (plus some level=none, and level=weak when asked) from
random nodes; every operation is recorded with time.monotonic_ns() invoke and
complete times and its outcome, in build/lincheck's JSON-lines format.
A set: threads write unique keys; at the end each acknowledged key must be
readable from every node, and no key whose write definitely failed may be.
A compare-and-set counter (cas_clients > 0): threads read a key with
GET /key/<k>?meta (value and mod_index; 404 = absent, mod_index 0), then
PUT /key/<k> the value + 1 with If-Match: "<mod_index>" (If-None-Match: *
when absent); see check_cas for what the end must show.

Outcomes of a write: 200 = ok; 504, a client timeout, a reset connection,
a 503 "not committed in time" or any 503 saying the write "may" have
happened, 5xx other than 503 = unknown; connection refused and other 503s
("no leader", "shutting down", "write lost in a leader change; not
applied") = fail (did not happen).
"""
import json
import re
import random
import subprocess
import threading
import time

from harness import CLIENT_TIMEOUT, LINCHECK, key_path, request, request_raw

LIN_LEVELS = ("linearizable", "weak")


def classify_write(st, doc):
    if st == 200:
        return "ok"
    err = (doc or {}).get("error", "") if isinstance(doc, dict) else ""
    if st == 503 and "not committed in time" not in err and not re.search(r"\bmay\b", err):
        return "fail"
    if 400 <= st < 500:
        return "fail"
    return "unknown"


class History:
    """All operations of a run, thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []
        self.next_client = 0

    def new_client(self):
        with self.lock:
            self.next_client += 1
            return self.next_client

    def add(self, op):
        with self.lock:
            self.ops.append(op)

    def snapshot(self):
        with self.lock:
            return list(self.ops)


class Workload:
    """Register and set clients against a cluster, until stop()."""

    def __init__(self, cluster, history, reg_clients=3, set_clients=1, keys=3,
                 weak_share=0.0, none_share=0.15, pace=0.0, cas_clients=0, cas_keys=1):
        self.cluster = cluster
        self.history = history
        self.keys = [f"r{i}" for i in range(keys)]
        self.weak_share = weak_share
        self.none_share = none_share
        self.pace = pace
        self.stop_ev = threading.Event()
        self.threads = []
        self.errors = []
        for _ in range(reg_clients):
            self.threads.append(threading.Thread(target=self._guard, args=(self._register,),
                                                 daemon=True))
        for _ in range(set_clients):
            self.threads.append(threading.Thread(target=self._guard, args=(self._set,),
                                                 daemon=True))
        self.cas_keys = [f"cas{i}" for i in range(cas_keys)]
        for _ in range(cas_clients):
            self.threads.append(threading.Thread(target=self._guard, args=(self._cas,),
                                                 daemon=True))

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=CLIENT_TIMEOUT + 5)
        if self.errors:
            raise AssertionError(f"client thread crashed: {self.errors[0]}")

    def _guard(self, fn):
        try:
            fn(random.Random())
        except Exception as e:  # recorded; stop() raises it
            self.errors.append(repr(e))

    def _node(self, rng):
        nodes = [n for n in self.cluster.nodes if n.alive()] or self.cluster.nodes
        return rng.choice(nodes)

    def _write(self, client, node, key, value, kind):
        inv = time.monotonic_ns()
        try:
            st, doc = request(node.haddr, "POST", "/key", {key: value})
            outcome = classify_write(st, doc)
            err = (doc or {}).get("error") if isinstance(doc, dict) else None
        except ConnectionRefusedError as e:  # never sent: a node that is down
            st, outcome, err = None, "fail", repr(e)
            time.sleep(0.1)
        except OSError as e:
            st, outcome, err = None, "unknown", repr(e)
        comp = time.monotonic_ns()
        op = {"client": client, "key": key, "op": "put", "value": value, "invoke": inv,
              "complete": comp if outcome == "ok" else None, "outcome": outcome,
              "node": node.id, "status": st, "error": err, "kind": kind, "end": comp}
        self.history.add(op)
        return outcome

    def _read(self, client, node, key, level, kind):
        inv = time.monotonic_ns()
        try:
            st, doc = request(node.haddr, "GET", key_path(key, level))
        except OSError as e:
            st, doc = None, {"error": repr(e)}
            if isinstance(e, ConnectionRefusedError):
                time.sleep(0.1)
        comp = time.monotonic_ns()
        if st == 200 and isinstance(doc, dict) and key in doc:
            outcome, value = "ok", doc[key]
        elif st == 404:
            outcome, value = "ok", None
        else:
            outcome, value = "fail", None
        self.history.add({"client": client, "key": key, "op": "get", "value": value,
                          "invoke": inv, "complete": comp if outcome == "ok" else None,
                          "outcome": outcome, "node": node.id, "status": st, "level": level,
                          "error": (doc or {}).get("error") if isinstance(doc, dict) else None,
                          "kind": kind, "end": comp})

    def hammer(self, node, level, secs):
        """A thread reading every key at `level` from `node` only, for secs
        (recorded as register reads); returns the thread."""
        def loop():
            client = self.history.new_client()
            end = time.monotonic() + secs
            while time.monotonic() < end and not self.stop_ev.is_set():
                for key in self.keys:
                    self._read(client, node, key, level, "register")
        t = threading.Thread(target=self._guard, args=(lambda rng: loop(),), daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def _register(self, rng):
        client = self.history.new_client()
        seq = 0
        while not self.stop_ev.is_set():
            key = rng.choice(self.keys)
            node = self._node(rng)
            x = rng.random()
            if x < 0.45:
                seq += 1
                if self._write(client, node, key, f"c{client}-{seq}", "register") == "unknown":
                    client = self.history.new_client()  # a crashed process, as in Jepsen
            elif x < 0.45 + self.none_share:
                self._read(client, node, key, "none", "register")
            elif x < 0.45 + self.none_share + self.weak_share:
                self._read(client, node, key, "weak", "register")
            else:
                self._read(client, node, key, "linearizable", "register")
            if self.pace:
                time.sleep(self.pace)

    def _cas(self, rng):
        client = self.history.new_client()
        while not self.stop_ev.is_set():
            key = rng.choice(self.cas_keys)
            seen = cas_read(self.history, client, self._node(rng), key)
            if seen is None:
                continue  # no answer: nothing to compare with
            value, mod = seen
            if cas_write(self.history, client, self._node(rng), key, mod,
                         str(int(value or "0") + 1)) == "unknown":
                client = self.history.new_client()
            if self.pace:
                time.sleep(self.pace)

    def _set(self, rng):
        client = self.history.new_client()
        seq = 0
        while not self.stop_ev.is_set():
            seq += 1
            self._write(client, self._node(rng), f"s{client}-{seq}", "x", "set")
            if self.pace:
                time.sleep(self.pace)


# ---- The compare-and-set counter -------------------------------------------------

def cas_read(history, client, node, key):
    """GET /key/<k>?meta at level=linearizable, recorded as a get with the
    mod_index read. (value or None, mod_index) or None without an answer."""
    inv = time.monotonic_ns()
    try:
        st, doc, _ = request_raw(node.haddr, "GET", key_path(key) + "?meta")
    except OSError as e:
        st, doc = None, {"error": repr(e)}
        if isinstance(e, ConnectionRefusedError):
            time.sleep(0.1)
    comp = time.monotonic_ns()
    seen = None
    if st == 200 and isinstance(doc, dict) and "mod_index" in doc:
        seen = (doc.get("value"), doc["mod_index"])
    elif st == 404:
        seen = (None, 0)
    history.add({"client": client, "key": key, "op": "get",
                 "value": seen[0] if seen else None, "mod": seen[1] if seen else None,
                 "invoke": inv, "complete": comp if seen else None,
                 "outcome": "ok" if seen else "fail", "node": node.id, "status": st,
                 "level": "linearizable", "kind": "cas", "end": comp,
                 "error": (doc or {}).get("error") if isinstance(doc, dict) else None})
    return seen


def classify_cas(st, doc):
    """ok (2xx: it applied), refused (412: it did not, and saw the key at
    another mod_index), fail (did not apply, saw nothing: as classify_write)
    or unknown (503 "may", 504, no answer: it may have applied)."""
    if st in (200, 201):
        return "ok"
    if st == 412:
        return "refused"
    return classify_write(st, doc)


def cas_write(history, client, node, key, expect, value):
    """PUT value If-Match: "<expect>" (If-None-Match: * for 0); recorded as a
    cas op. Returns its outcome (classify_cas)."""
    hdrs = {"If-Match": f'"{expect}"'} if expect else {"If-None-Match": "*"}
    inv = time.monotonic_ns()
    try:
        st, doc, h = request_raw(node.haddr, "PUT", key_path(key), value.encode(), hdrs)
        outcome = classify_cas(st, doc)
    except ConnectionRefusedError as e:
        st, doc, outcome = None, {"error": repr(e)}, "fail"
        time.sleep(0.1)
    except OSError as e:
        st, doc, outcome = None, {"error": repr(e)}, "unknown"
    comp = time.monotonic_ns()
    mod = doc.get("mod_index") if isinstance(doc, dict) and outcome in ("ok", "refused") else None
    if outcome in ("ok", "refused") and not isinstance(mod, int):
        raise AssertionError(f"PUT {key} answered {st} without a mod_index: {doc}")
    history.add({"client": client, "key": key, "op": "cas", "value": value, "expect": expect,
                 "mod": mod, "invoke": inv, "complete": comp if outcome != "unknown" else None,
                 "outcome": outcome, "node": node.id, "status": st, "kind": "cas",
                 "end": comp,
                 "error": (doc or {}).get("error") if isinstance(doc, dict) else None})
    return outcome


def cas_lincheck_ops(ops):
    """The CAS history in build/lincheck's format: gets with the mod_index
    read; a 2xx cas "ok" with its new mod_index; a 412 "fail" with the
    current mod_index it reported (lincheck checks it as a read that saw a
    mod_index other than the expected one); 503/504/no answer "unknown" (it
    may have applied, at any time after it was sent). A cas that definitely
    did not apply without telling anything (connection refused, 503 "no
    leader") and reads without an answer observed nothing: left out."""
    out = []
    for op in ops:
        if op["kind"] != "cas" or op["outcome"] == "fail":
            continue
        o = {k: op[k] for k in ("client", "key", "op", "value", "invoke", "complete")}
        if op["op"] == "cas":
            o["expect"] = op["expect"]
        o["outcome"] = "fail" if op["outcome"] == "refused" else op["outcome"]
        if op["mod"] is not None and op["outcome"] != "unknown":
            o["mod"] = op["mod"]
        out.append(o)
    return out


def run_lincheck(lines, path):
    """build/lincheck on JSON-lines ops; (verdict, exit code, output, seconds)."""
    with open(path, "w") as f:
        for o in lines:
            f.write(json.dumps(o) + "\n")
    t0 = time.monotonic()
    # Long soak rounds give a key tens of thousands of ops: more cache.
    r = subprocess.run([LINCHECK, "--max-cache-mb", "4096", path],
                       capture_output=True, text=True, timeout=600)
    dt = time.monotonic() - t0
    verdict = {0: "linearizable", 1: "VIOLATION", 3: "undecided"}.get(r.returncode, "error")
    return verdict, r.returncode, (r.stdout + r.stderr).strip(), dt


def check_cas(cluster, history, keys, path, timeout=30.0):
    """After convergence: each counter's final value, read linearizably (and
    added to the history), must be the number of CAS that applied. 2xx
    answers applied and 412s did not; an indeterminate one (503 "may", 504,
    no answer) may have, so the value must lie in [ok, ok + unknown], and
    lincheck, which may linearize any unknown op or leave it out, decides
    on the whole history with the final read in it: exactly value - ok of
    the unknown CAS must fit as applied. Returns the findings."""
    client = history.new_client()
    finals = {}
    deadline = time.monotonic() + timeout
    for key in keys:
        while True:
            ld = cluster.leader_node() or cluster.nodes[0]
            seen = cas_read(history, client, ld, key)
            if seen is not None:
                finals[key] = int(seen[0] or "0")
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"cas check: no final read of {key} succeeded")
            time.sleep(0.2)
    ops = history.snapshot()
    per = {}
    for key in keys:
        c = {"ok": 0, "refused": 0, "fail": 0, "unknown": 0}
        for op in ops:
            if op["kind"] == "cas" and op["op"] == "cas" and op["key"] == key:
                c[op["outcome"]] += 1
        c["final"] = finals[key]
        c["in_range"] = c["ok"] <= finals[key] <= c["ok"] + c["unknown"]
        per[key] = c
    v, rc, out, dt = run_lincheck(cas_lincheck_ops(ops), path)
    return {"keys": per, "lincheck": {"verdict": v, "exit": rc, "seconds": round(dt, 2),
                                      "output": out}}


# ---- Checks -------------------------------------------------------------------

def counts(ops):
    c = {}
    for op in ops:
        k = f"{op['kind']}-{op['op']}-{op.get('level', '')}".rstrip("-")
        d = c.setdefault(k, {"ok": 0, "fail": 0, "unknown": 0})
        d[op["outcome"]] = d.get(op["outcome"], 0) + 1  # cas: also "refused"
    return c


def lincheck(ops, path, levels=LIN_LEVELS):
    """Runs build/lincheck on the register ops whose reads are at one of
    levels; writes its input to path. (verdict, exit code, output, seconds)."""
    with open(path, "w") as f:
        for op in ops:
            if op["kind"] != "register":
                continue
            if op["op"] == "get" and (op["level"] not in levels or op["outcome"] != "ok"):
                continue
            f.write(json.dumps({k: op[k] for k in ("client", "key", "op", "value", "invoke",
                                                   "complete", "outcome")}) + "\n")
    t0 = time.monotonic()
    # Long soak rounds give a key tens of thousands of ops: more cache.
    r = subprocess.run([LINCHECK, "--max-cache-mb", "4096", path],
                       capture_output=True, text=True, timeout=600)
    dt = time.monotonic() - t0
    verdict = {0: "linearizable", 1: "VIOLATION", 3: "undecided"}.get(r.returncode, "error")
    return verdict, r.returncode, (r.stdout + r.stderr).strip(), dt


def never_written(ops):
    """Reads (any level) that returned a value no put of that key ever
    tried, or a value whose put definitely failed."""
    tried, failed = {}, {}
    ops = [op for op in ops if op["kind"] != "cas"]  # counters: check_cas
    for op in ops:
        if op["op"] == "put":
            (failed if op["outcome"] == "fail" else tried).setdefault(op["key"], set()).add(
                op["value"])
    bad = []
    for op in ops:
        if op["op"] == "get" and op["outcome"] == "ok" and op["value"] is not None:
            if op["value"] not in tried.get(op["key"], ()):
                why = "failed" if op["value"] in failed.get(op["key"], ()) else "never written"
                bad.append({**op, "why": why})
    return bad


def barrier(cluster, timeout=30.0, what="barrier"):
    """Writes a fresh token through the leader and waits until every node has
    applied it: after this, a level=none read on any node sees every write
    acknowledged before the call. Raises AssertionError past timeout."""
    token = f"b{time.monotonic_ns()}"
    deadline = time.monotonic() + timeout
    while True:
        ld = cluster.leader_node()
        try:
            if ld and request(ld.haddr, "POST", "/key", {"__barrier__": token})[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: no barrier write succeeded")
        time.sleep(0.2)
    for n in cluster.nodes:
        while request(n.haddr, "GET", key_path("__barrier__", "none"))[1] != {"__barrier__": token}:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {n.id} never applied the barrier")
            time.sleep(0.1)


def check_set(cluster, ops, timeout=30.0):
    """Every acknowledged set key readable (level=none) from every node once
    each has applied a fresh barrier write; no definitely-failed key present.
    Returns a dict of findings (empty lists = fine)."""
    acked = [op["key"] for op in ops if op["kind"] == "set" and op["outcome"] == "ok"]
    failed = [op["key"] for op in ops if op["kind"] == "set" and op["outcome"] == "fail"]
    barrier(cluster, timeout, what="set check")
    missing, present_failed = {}, {}
    for n in cluster.nodes:
        lost = []
        for k in acked:
            st, doc = request(n.haddr, "GET", key_path(k, "none"))
            if st != 200:
                lost.append(k)
        if lost:
            missing[n.id] = lost
        extra = [k for k in failed if request(n.haddr, "GET", key_path(k, "none"))[0] == 200]
        if extra:
            present_failed[n.id] = extra
    return {"acked": len(acked), "failed": len(failed), "missing": missing,
            "present_failed": present_failed}
