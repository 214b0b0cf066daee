"""Loop stalls on a 3-node cluster holding N keys (default 10^6, 16/16
bytes): the longest busy iteration of each node's event loop
(craftd_loop_busy_seconds, craftd_loop_longest_busy_seconds) and the p99.9
of linearizable GETs on the leader and on a follower, in two phases:

  snapshot  the leader writes a snapshot (overwrites of loaded keys, in
            batches of 1000, push its log past the snapshot rule; the
            window runs from the first of them until the forked writer
            exits; the reads are also given for the writer's life alone);
  install   a follower is stopped, its data directory deleted, and it is
            started again with its same id and -join, as the runbook's "A
            wiped or damaged data directory" says: the leader sends it a
            snapshot which it installs (the window runs until it has
            applied the leader's commit index). The reads on the follower
            go to the other follower, which stays up;
  catchup   that follower is stopped with its data, the leader overwrites
            keys until it has compacted its log past the follower's
            applied index, and the follower starts again: it loads its own
            map (before its loop runs), then installs the leader's
            snapshot over that full map (the old map is freed then).

One reader thread per node read, each on one keep-alive connection,
reading random loaded keys one after the other. For each window: the reads
that ended in it (count, p50, p99, p99.9, max, errors), and per node the
iterations of its loop in the window by busy time (from the histogram's
buckets: how many took longer than 1, 5, 20, 100 ms, and the bucket the
longest fell in) and its longest busy iteration since start. Prints one
JSON line per phase, then a summary.

Usage: stall.py <craftd> <port> <workdir> <nkeys>"""
import http.client
import json
import os
import random
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helper  # noqa: E402


def metrics(addr):
    """The loop's histogram (cumulative counts by le, in seconds) and the
    longest busy iteration, from GET /metrics."""
    st, data = helper.Client(addr, timeout=5).request("GET", "/metrics")
    if st != 200:
        raise OSError("metrics %d" % st)
    buckets, longest, snaps = {}, None, 0
    for line in data.decode().splitlines():
        if line.startswith("craftd_loop_busy_seconds_bucket{le=\""):
            le = line.split('"')[1]
            buckets[float("inf") if le == "+Inf" else float(le)] = int(line.split()[-1])
        elif line.startswith("craftd_loop_longest_busy_seconds "):
            longest = float(line.split()[-1])
        elif line.startswith("craftd_snapshot_duration_seconds_count "):
            snaps = int(line.split()[-1])
    return {"buckets": buckets, "longest": longest, "snapshots": snaps}


def loop_delta(before, after):
    """What the loop did between two scrapes: iterations over 1, 5, 20 and
    100 ms, and the bucket (lo, hi] that held the longest of them."""
    b, a = before["buckets"], after["buckets"]
    les = sorted(a)
    d = {le: a[le] - b.get(le, 0) for le in les}  # cumulative deltas
    total = d[float("inf")]
    over = {("over_%gms" % (t * 1000)): total - d[t] for t in (0.001, 0.005, 0.02, 0.1)
            if t in d}
    lo = 0.0
    top = None
    for le in les:  # the first bound holding every iteration of the window
        if d[le] == total:
            top = (lo, le)
            break
        lo = le
    res = {"iterations": total, "longest_in_ms": [round(top[0] * 1000, 1),
                                                  None if top[1] == float("inf")
                                                  else round(top[1] * 1000, 1)]}
    res.update(over)
    res["longest_since_start_ms"] = round(after["longest"] * 1000, 2)
    if after["longest"] > before["longest"]:  # a new maximum: the window's, exactly
        res["longest_ms"] = res["longest_since_start_ms"]
    return res


class Reader(threading.Thread):
    """Linearizable GETs of random loaded keys on one connection; records
    (end time, latency, ok) of each."""

    def __init__(self, addr, nkeys):
        super().__init__(daemon=True)
        self.addr, self.nkeys = addr, nkeys
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.samples = []
        self.rng = random.Random(7)

    def run(self):
        c = None
        while not self.stop_ev.is_set():
            i = self.rng.randrange(self.nkeys)
            t0 = time.monotonic()
            ok = False
            try:
                if c is None:
                    c = helper.Client(self.addr, timeout=10)
                key = "r%015d" % i
                st, data = c.request("GET", "/key/%s?level=linearizable" % key)
                ok = st == 200 and json.loads(data).get(key, "")[1:] == "%015d" % i
            except (OSError, http.client.HTTPException):
                c = None
            t1 = time.monotonic()
            with self.lock:
                self.samples.append((t1, t1 - t0, ok))
            if not ok:
                time.sleep(0.01)

    def window(self, t0, t1):
        with self.lock:
            s = [x for x in self.samples if t0 <= x[0] <= t1]
        lat = sorted(x[1] for x in s if x[2])

        def pct(p):
            return round(lat[min(len(lat) - 1, int(len(lat) * p))] * 1000, 2) if lat else None
        return {"reads": len(lat), "errors": sum(1 for x in s if not x[2]),
                "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
                "max_ms": round(lat[-1] * 1000, 2) if lat else None}


class Cluster:
    def __init__(self, binary, port, workdir):
        self.binary, self.port, self.workdir = binary, port, workdir
        self.pidfile = os.path.join(workdir, "pids")
        self.procs = {}

    def haddr(self, i):
        return "127.0.0.1:%d" % (self.port + i)

    def datadir(self, i):
        return os.path.join(self.workdir, "n%d" % i)

    def start(self, i, join):
        argv = [self.binary, "-id", "n%d" % i, "-haddr", self.haddr(i),
                "-raddr", "127.0.0.1:%d" % (self.port + 100 + i)]
        if join:
            argv += ["-join", self.haddr(0)]
        argv += os.environ.get("STALL_FLAGS", "").split()
        argv.append(self.datadir(i))
        self.procs[i] = helper.Proc(argv, os.path.join(self.workdir, "n%d.log" % i),
                                    self.pidfile)

    def status(self, i):
        return helper.craftd_status(self.haddr(i))

    def wait(self, what, fn, deadline_s=300):
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                if fn():
                    return
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise RuntimeError("%s: not after %d s" % (what, deadline_s))

    def voters(self, i):
        return sum(1 for m in self.status(i).get("members", []) if m.get("voter"))

    def stop_all(self):
        for p in self.procs.values():
            p.stop()


def settled(cl):
    """No snapshot writer on any node for 3 s, every node applied as far as
    the leader committed."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 3:
        if any(helper.children(p.p.pid) for p in cl.procs.values()):
            quiet_since = time.monotonic()
        time.sleep(0.05)
    commit = cl.status(0)["commit_index"]
    cl.wait("followers applied", lambda: all(cl.status(i)["applied_index"] >= commit
                                             for i in (1, 2)))


def max_term(cl):
    """The highest term of the nodes that answer (its growth: elections)."""
    terms = [0]
    for i in cl.procs:
        try:
            terms.append(cl.status(i).get("term", 0))
        except (OSError, ValueError, http.client.HTTPException):
            pass
    return max(terms)


def phase(name, cl, readers, run):
    before = {i: metrics(cl.haddr(i)) for i in cl.procs}
    term0 = max_term(cl)
    t0 = time.monotonic()
    extra = run()
    t1 = time.monotonic()
    res = {"phase": name, "seconds": round(t1 - t0, 2), "elections": max_term(cl) - term0}
    sub = extra.pop("writer_window", None)
    res.update(extra)
    for who, r in readers.items():
        res["reads_" + who] = r.window(t0, t1)
        if sub is not None:  # only while the forked writer lived
            res["reads_%s_writer_alive" % who] = r.window(*sub)
    for i in cl.procs:
        after = metrics(cl.haddr(i))
        b = before[i]
        if after["buckets"][float("inf")] < b["buckets"][float("inf")]:
            b = {"buckets": {}, "longest": 0.0}  # restarted in the window: all of it
        res["loop_n%d" % i] = loop_delta(b, after)
    print(json.dumps(res), flush=True)
    return res


def overwrite(c, rng, nkeys, vprefix):
    """One batch of 1000 overwrites of consecutive loaded keys."""
    first = rng.randrange(max(1, nkeys - 1000))
    body = {"r%015d" % k: "%s%015d" % (vprefix, k) for k in range(first, first + 1000)}
    st, data = c.request("POST", "/key", body=body)
    if st != 200:
        raise RuntimeError("write -> %d %s" % (st, data[:200]))


def snapshot_phase(cl, nkeys):
    leader = cl.procs[0].p.pid
    n0 = metrics(cl.haddr(0))["snapshots"]
    c = helper.Client(cl.haddr(0), timeout=60)
    rng = random.Random(11)
    writes = 0
    forked = None
    # Batches of 1000 overwrites until the leader forks its writer (the
    # log must reach about the snapshot's size: more batches for more keys).
    limit = 5000 + 4 * nkeys // 1000
    while forked is None and writes < limit:
        overwrite(c, rng, nkeys, "w")
        writes += 1
        if helper.children(leader):
            forked = time.monotonic()
    if forked is None:
        raise RuntimeError("no snapshot after %d writes" % writes)
    while helper.children(leader):
        time.sleep(0.002)
    done = time.monotonic()
    cl.wait("snapshot counted", lambda: metrics(cl.haddr(0))["snapshots"] > n0, 30)
    return {"write_batches": writes, "writer_seconds": round(done - forked, 2),
            "writer_window": (forked, done)}


def member(st, node_id):
    return next((m for m in st.get("members", []) if m["id"] == node_id), None)


def install_phase(cl):
    old = member(cl.status(0), "n2")["raft_id"]
    cl.procs[2].stop()
    shutil.rmtree(cl.datadir(2))
    cl.start(2, join=True)

    def back():
        lead, st = cl.status(0), cl.status(2)
        m = member(lead, "n2")
        return m is not None and m["raft_id"] != old and m["voter"] and \
            st["applied_index"] >= lead["commit_index"]
    cl.wait("n2 back as a new voter with the leader's commit", back, 300)
    st = cl.status(2)
    with open(os.path.join(cl.workdir, "n2.log"), errors="replace") as f:
        installed = sum(1 for line in f if "state restored from snapshot" in line)
    return {"n2_applied": st["applied_index"], "n2_snapshot_index": st["snapshot_index"],
            "n2_keys": st["keys"], "n2_snapshot_installs": installed}


def catchup_phase(cl, nkeys):
    """n2 is stopped (its data kept), the leader overwrites keys until it
    has compacted its log past what n2 applied, and n2 starts again: it
    loads its own map at start (before its loop runs), then the leader
    sends it a snapshot, whose install replaces that full map."""
    applied = cl.status(2)["applied_index"]
    cl.procs[2].stop()
    logpath = os.path.join(cl.workdir, "n0.log")
    c = helper.Client(cl.haddr(0), timeout=60)
    rng = random.Random(12)
    writes = 0

    def compacted_past():
        with open(logpath, errors="replace") as f:
            kept = [int(line.rsplit(" ", 1)[1]) for line in f if "; log kept from " in line]
        return bool(kept) and kept[-1] > applied + 1
    while not compacted_past():
        if writes >= 20000 + 8 * nkeys // 1000:
            raise RuntimeError("the leader kept its log from before %d" % applied)
        overwrite(c, rng, nkeys, "c")
        writes += 1
    n2log = os.path.join(cl.workdir, "n2.log")
    with open(n2log, errors="replace") as f:
        before = sum(1 for line in f if "state restored from snapshot" in line)
    cl.start(2, join=False)
    commit = cl.status(0)["commit_index"]
    cl.wait("n2 caught up", lambda: cl.status(2)["applied_index"] >= commit, 300)
    with open(n2log, errors="replace") as f:
        installed = sum(1 for line in f if "state restored from snapshot" in line) - before
    st = cl.status(2)
    return {"write_batches": writes, "n2_applied_before": applied,
            "n2_applied": st["applied_index"], "n2_keys": st["keys"],
            "n2_snapshot_loads": installed}


def main(argv):
    binary, port, workdir, nkeys = argv[1], int(argv[2]), argv[3], int(argv[4])
    cl = Cluster(binary, port, workdir)
    try:
        cl.start(0, join=False)
        cl.wait("n0 leads", lambda: cl.status(0).get("role") == "leader", 60)
        for i in (1, 2):
            cl.start(i, join=True)
        cl.wait("3 voters", lambda: cl.voters(0) == 3, 60)
        t = time.monotonic()
        helper.preload_craftd(cl.haddr(0), nkeys)
        helper.log("loaded %d keys in %.1f s" % (nkeys, time.monotonic() - t))
        settled(cl)
        readers = {"leader": Reader(cl.haddr(0), nkeys), "follower": Reader(cl.haddr(1), nkeys)}
        for r in readers.values():
            r.start()
        time.sleep(2)
        out = [phase("idle", cl, readers, lambda: (time.sleep(3), {})[1]),
               phase("snapshot", cl, readers, lambda: snapshot_phase(cl, nkeys))]
        settled(cl)
        out.append(phase("install", cl, readers, lambda: install_phase(cl)))
        settled(cl)
        out.append(phase("catchup", cl, readers, lambda: catchup_phase(cl, nkeys)))
        for r in readers.values():
            r.stop_ev.set()
            r.join()
        for o in out:
            helper.log("%-8s %5.1f s  elections %d  longest busy ms: %s  read p99.9 ms"
                       " leader %s follower %s"
                       % (o["phase"], o["seconds"], o["elections"],
                          " ".join("n%d %s" % (i, o["loop_n%d" % i].get(
                              "longest_ms", "<=%s" % o["loop_n%d" % i]["longest_in_ms"][1]))
                                   for i in range(3)),
                          o["reads_leader"]["p999_ms"], o["reads_follower"]["p999_ms"]))
        return 0
    finally:
        cl.stop_all()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
