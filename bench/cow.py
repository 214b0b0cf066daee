"""The memory a snapshot costs: one node holding N keys (default 10^6, 16/16
bytes) takes snapshots while wrk overwrites random keys, and every few ms
this reads the node's RSS and, for its forked snapshot writer, the pages
the child no longer shares with the parent (smaps_rollup's Private_Clean +
Private_Dirty: each page the parent wrote since the fork, copied). Their
sum over the RSS before the load is the figure the performance goal
bounds (1.3x). Prints one JSON line.

Usage: cow.py <craftd> <port> <datadir> <log> <pidfile> <nkeys> <seconds> [flags]"""
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helper  # noqa: E402


def kib_fields(path, names):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in names:
                    out[k] = int(v.split()[0])
    except OSError:  # the child exited meanwhile
        return None
    return out


def settled_rss(pid, deadline_s=30):
    """The RSS (KiB) once the load's last snapshot and the trims after it
    are over: no child, and the same RSS within 256 KiB a second apart."""
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        time.sleep(1)
        rss = helper.rss_kib(pid)["VmRSS"]
        if not helper.children(pid) and last is not None and abs(rss - last) < 256:
            return rss
        last = rss if not helper.children(pid) else None
    raise RuntimeError("RSS not settled after %d s" % deadline_s)


class Sampler(threading.Thread):
    """Samples the node and its children every period_s until stopped."""

    def __init__(self, pid, period_s=0.005):
        super().__init__(daemon=True)
        self.pid, self.period_s = pid, period_s
        self.stop_ev = threading.Event()
        self.peak_total = self.peak_child = self.peak_parent = 0
        self.forks = {}  # pid -> [first seen, last seen] (monotonic s)

    def run(self):
        while not self.stop_ev.is_set():
            par = kib_fields("/proc/%d/status" % self.pid, ("VmRSS",))
            if par is None:
                return
            child = 0
            for c in helper.children(self.pid):
                r = kib_fields("/proc/%d/smaps_rollup" % c, ("Private_Clean", "Private_Dirty"))
                if r:
                    now = time.monotonic()
                    self.forks.setdefault(c, [now, now])[1] = now
                    child += r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
            self.peak_parent = max(self.peak_parent, par["VmRSS"])
            self.peak_child = max(self.peak_child, child)
            self.peak_total = max(self.peak_total, par["VmRSS"] + child)
            time.sleep(self.period_s)


def main(argv):
    binary, port, datadir, logpath, pidfile = argv[1], int(argv[2]), argv[3], argv[4], argv[5]
    nkeys, seconds, extra = int(argv[6]), int(argv[7]), argv[8:]
    haddr = "127.0.0.1:%d" % port
    args = [binary, "-id", "solo", "-haddr", haddr, "-raddr", "127.0.0.1:%d" % (port + 100)] \
        + extra + [datadir]
    proc = helper.Proc(args, logpath, pidfile)
    try:
        helper.wait_serving(lambda: helper.craftd_status(haddr).get("role") == "leader", proc)
        helper.preload_craftd(haddr, nkeys)
        base = settled_rss(proc.p.pid)
        s = Sampler(proc.p.pid)
        s.start()
        bench = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ, BENCH_DIR=bench, BENCH_NREAD=str(nkeys), BENCH_RUN="7")
        out = subprocess.run(["wrk", "-t2", "-c16", "-d%ds" % seconds, "-s",
                              os.path.join(bench, "craftd_overwrite.lua"), "http://" + haddr],
                             env=env, capture_output=True, text=True, check=True).stdout
        s.stop_ev.set()
        s.join()
        stats = next((json.loads(line.split(" ", 1)[1]) for line in out.splitlines()
                      if line.startswith("BENCHJSON ")), {})
        res = {"keys": nkeys, "seconds": seconds, "flags": " ".join(extra),
               "rss_before_mib": round(base / 1024, 1),
               "peak_rss_mib": round(s.peak_parent / 1024, 1),
               "peak_child_private_mib": round(s.peak_child / 1024, 1),
               "peak_total_mib": round(s.peak_total / 1024, 1),
               "peak_over_before": round(s.peak_total / base, 2),
               "snapshot_children_seen": len(s.forks),
               "child_lifetimes_s": sorted(round(b - a, 2) for a, b in s.forks.values()),
               "writes": stats.get("n200"), "non_200": stats.get("nbad")}
        print(json.dumps(res))
        return 0
    finally:
        proc.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
