#!/usr/bin/env python3
"""Where a failover's time goes: kill -9 of the leader of a 3-node cluster
while two clients write (one sequential POST /key at a time, each client
pinned to one survivor), then the stall broken down from the survivors'
debug logs:

  detect    kill -9 -> a survivor's election timer fires ("pre-candidate")
  prevote   pre-candidate -> candidate (the pre-vote round)
  vote      candidate -> leader (the vote round, its fsync included)
  commit    leader -> "first commit of term" (the no-op entry)
  direct    first commit -> first write acknowledged by the new leader
  forward   first commit -> first write acknowledged by the other survivor
            (a follower forwarding to the new leader)
  total     kill -> the first write acknowledged by any survivor once the
            new leader leads

detect counts from the kill, not from the last heartbeat: under a steady
write load a follower hears from the leader every few ms, so the two are
within a few ms. Log stamps are wall clock with ms resolution, so is the
kill stamp here. Usage:

  bench/failover.py [-n RUNS] [--craftd build/craftd] [--port 23600]
                    [--label NAME] [-- extra craftd flags]

Prints one line per run and the medians, and with --json a JSON document of
every run. stdlib only."""

import argparse
import datetime
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helper import Proc, craftd_status  # noqa: E402 (bench/helper.py, beside this file)

PHASES = ["detect", "prevote", "vote", "commit", "direct", "forward", "total"]


def now_wall():
    return time.time()


def http_req(addr, method, path, body=None, timeout=5.0):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request(method, path, body=body,
                  headers={"Content-Type": "application/json"} if body else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def status(addr):
    """A node's /status, or None while it does not answer."""
    try:
        return craftd_status(addr)
    except (OSError, ValueError, http.client.HTTPException):
        return None


class Node(Proc):
    """One craftd node (helper.py's Proc: kill9, stop) with its debug log."""

    def __init__(self, craftd, i, port, root, extra, join=None):
        self.name = f"node{i}"
        self.haddr = f"127.0.0.1:{port + i}"
        self.raddr = f"127.0.0.1:{port + 100 + i}"
        self.dir = os.path.join(root, self.name)
        self.log_path = os.path.join(root, self.name + ".log")
        argv = [craftd, "-id", self.name, "-haddr", self.haddr, "-raddr", self.raddr,
                "-log-level", "debug"]
        if join:
            argv += ["-join", join]
        self.argv = argv + list(extra) + [self.dir]
        super().__init__(self.argv, self.log_path)

    def events(self, since):
        """(wall time, message) of this node's log lines after since."""
        out = []
        with open(self.log_path, errors="replace") as f:
            for line in f:
                parts = line.split(" ", 3)
                if len(parts) < 4 or not parts[0].endswith("Z"):
                    continue
                try:
                    t = datetime.datetime.strptime(parts[0], "%Y-%m-%dT%H:%M:%S.%fZ")
                except ValueError:
                    continue
                t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
                if t >= since - 0.002:
                    out.append((t, parts[3].strip()))
        return out


def wait_until(what, fn, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def leader_of(nodes):
    for n in nodes:
        st = status(n.haddr)
        if st and (st.get("leader") or {}).get("id") == n.name:
            voters = sum(1 for m in st.get("members", []) if m.get("voter"))
            if voters == len(nodes):
                return n
    return None


class Writer(threading.Thread):
    """Sequential writes to one node; the wall time of each 200."""

    def __init__(self, node, tag):
        super().__init__(daemon=True)
        self.node, self.tag = node, tag
        self.acks = []
        self.halt = threading.Event()

    def run(self):
        i = 0
        while not self.halt.is_set():
            i += 1
            body = json.dumps({f"{self.tag}{i}": "x"})
            try:
                st, _ = http_req(self.node.haddr, "POST", "/key", body, timeout=10.0)
            except OSError:
                time.sleep(0.005)
                continue
            if st == 200:
                self.acks.append(now_wall())
            else:
                time.sleep(0.005)


def one_run(args, extra, k):
    root = tempfile.mkdtemp(prefix="craftd-failover-")
    nodes = []
    try:
        nodes.append(Node(args.craftd, 0, args.port, root, extra))
        wait_until("node0 serving", lambda: status(nodes[0].haddr), 15)
        for i in (1, 2):
            nodes.append(Node(args.craftd, i, args.port, root, extra, join=nodes[0].haddr))
        old = wait_until("a leader with 3 voters", lambda: leader_of(nodes), 30)
        survivors = [n for n in nodes if n is not old]
        writers = [Writer(s, f"w{j}-") for j, s in enumerate(survivors)]
        for w in writers:
            w.start()
        time.sleep(1.0)
        t_kill = now_wall()
        old.kill9()
        def elected():
            for s in survivors:
                st = status(s.haddr) or {}
                if (st.get("leader") or {}).get("id") == s.name:
                    return s
            return None
        new = wait_until("a new leader", elected, 15)
        time.sleep(1.5)
        for w in writers:
            w.halt.set()
        for w in writers:
            w.join(timeout=15)
        ev = new.events(t_kill)

        def first(pred):
            return next((t for t, m in ev if pred(m)), None)
        t_pre = first(lambda m: m.startswith("pre-candidate in term"))
        t_cand = first(lambda m: m.startswith("candidate in term"))
        t_lead = first(lambda m: m.startswith("leader in term"))
        t_commit = first(lambda m: m.startswith("first commit of term"))
        # acks before the new leader leads are of writes the old one committed
        t_from = t_lead or t_kill
        acks = {w.node.name: next((t for t in w.acks if t > t_from), None) for w in writers}
        other = next(s for s in survivors if s is not new)
        t_direct, t_fwd = acks[new.name], acks[other.name]
        r = {"run": k, "new": new.name,
             "detect": t_pre - t_kill if t_pre else None,
             "prevote": t_cand - t_pre if t_cand and t_pre else None,
             "vote": t_lead - t_cand if t_lead and t_cand else None,
             "commit": t_commit - t_lead if t_commit and t_lead else None,
             "direct": t_direct - t_commit if t_direct and t_commit else None,
             "forward": t_fwd - t_commit if t_fwd and t_commit else None,
             "total": min(t for t in (t_direct, t_fwd) if t) - t_kill
             if (t_direct or t_fwd) else None,
             "pre_campaigns": sum(1 for _, m in ev if m.startswith("pre-candidate"))}
        return r
    finally:
        for n in nodes:
            n.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


def fmt(v):
    return "   -  " if v is None else f"{v * 1000:6.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=7)
    ap.add_argument("--craftd", default="build/craftd")
    ap.add_argument("--port", type=int, default=23600)
    ap.add_argument("--label", default="")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--markdown", metavar="FILE",
                    help="append a section of the medians to FILE (bench/RESULTS.md)")
    ap.add_argument("--keep", action="store_true", help="keep the data and logs")
    ap.add_argument("extra", nargs="*", help="extra craftd flags (after --)")
    args = ap.parse_args()
    runs = []
    print(f"{args.label:10s} run  " + " ".join(f"{p:>6s}" for p in PHASES) + "  (ms)")
    for k in range(args.runs):
        r = one_run(args, args.extra, k)
        runs.append(r)
        print(f"{args.label:10s} {k:3d}  " + " ".join(fmt(r[p]) for p in PHASES), flush=True)
    med = {p: statistics.median([r[p] for r in runs if r[p] is not None])
           if any(r[p] is not None for r in runs) else None for p in PHASES}
    print(f"{args.label:10s} med  " + " ".join(fmt(med[p]) for p in PHASES))
    if args.json:
        print(json.dumps({"label": args.label, "runs": runs, "median": med}))
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(markdown(args, runs, med))
    return 0


def markdown(args, runs, med):
    """A RESULTS.md section: the median of each phase, and every run's total."""
    flags = " ".join(args.extra) or "default flags"
    ms = lambda v: "-" if v is None else f"{v * 1000:.0f}"  # noqa: E731
    lines = ["", f"## Failover (make bench-failover: kill -9 of the leader, {len(runs)} runs, "
             f"{flags})", "",
             "| " + " | ".join(PHASES) + " |", "|" + "---|" * len(PHASES),
             "| " + " | ".join(ms(med[p]) for p in PHASES) + " |", "",
             "Medians in ms (docs/operations.md, \"Failover\", says what each phase is). "
             "Totals of the runs: " + ", ".join(ms(r["total"]) for r in runs) + " ms.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
