"""One fault run: its results folder, cluster, nemesis, history, and the
checks and summary at its end (used by conftest.py and the tests)."""
import json
import os
import time

from harness import NODE_FLAGS, RESULTS, SNAPSHOT_FLAGS, FaultCluster, Firewall, iptables_usable
from nemesis import Nemesis
from workload import (History, Workload, check_cas, check_set, counts, lincheck,
                      never_written)

LONG = os.environ.get("FAULTS_LONG") == "1"
DURATION = float(os.environ.get("FAULTS_DURATION", "7200" if LONG else "0"))
TEST_TIME_LIMIT = 240


class Run:
    def __init__(self, name, tmp_path, firewall=None):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.name = name
        self.dir = os.path.join(RESULTS, f"{name}-{stamp}")
        os.makedirs(self.dir, exist_ok=True)
        self.logf = open(os.path.join(self.dir, "nemesis.log"), "a")
        os.makedirs(tmp_path / "data", exist_ok=True)
        self.cluster = FaultCluster(str(tmp_path / "data"), self.dir)
        self.fw = firewall
        self.history = History()
        self.nemesis = Nemesis(self.cluster, firewall, log=self.log)
        self.workload = None
        self.term0 = 0
        self.t0 = time.monotonic()

    def log(self, line):
        self.logf.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        self.logf.flush()

    def start(self, n, snapshots=False, **workload):
        self.cluster.flags = SNAPSHOT_FLAGS if snapshots else NODE_FLAGS
        self.cluster.start(n)
        self.term0 = self.max_term()
        self.log(f"cluster of {n} up: {self.cluster.nodes}")
        self.workload = Workload(self.cluster, self.history, **workload).start()
        return self.cluster.nodes

    def max_term(self):
        """The highest term any node answers with: the elections since a
        start are its growth (a campaign that pre-vote stops raises none)."""
        terms = [0]
        for n in self.cluster.nodes:
            try:
                st = n.status()
            except (OSError, ValueError):
                continue
            if st:
                terms.append(st.get("term", 0))
        return max(terms)

    def finish(self, set_check=True):
        """Stops the clients, undoes every fault, waits for the cluster to
        converge, checks the history; writes and returns the summary."""
        t_work = time.monotonic() - self.t0
        if self.workload:
            self.workload.stop()
        self.nemesis.heal()
        self.nemesis.resume_all()
        for n in self.cluster.nodes:
            if not n.alive() and not n.killed:
                n.exits.append(n.proc.returncode)
        self.nemesis.restart_dead()
        try:
            self.cluster.wait_converged(timeout=45)
            converged = None
        except AssertionError as e:
            converged = str(e)
        elections = self.max_term() - self.term0
        ops = self.history.snapshot()
        with open(os.path.join(self.dir, "history.jsonl"), "w") as f:
            for op in ops:
                f.write(json.dumps(op) + "\n")
        s = {"test": self.name, "nodes": len(self.cluster.nodes), "seconds": round(t_work, 1),
             "ops": counts(ops), "faults": self.nemesis.events,
             "elections": elections}
        reads = [o for o in ops if o["op"] == "get" and o["outcome"] == "ok"]
        s["reads_by_level"] = {lv: sum(1 for o in reads if o.get("level") == lv)
                               for lv in ("linearizable", "weak", "none")}
        v, rc, out, dt = lincheck(ops, os.path.join(self.dir, "lincheck-input.jsonl"),
                                  levels=("linearizable",))
        s["lincheck"] = {"verdict": v, "exit": rc, "seconds": round(dt, 2), "output": out}
        if s["reads_by_level"]["weak"]:
            v, rc, out, dt = lincheck(ops, os.path.join(self.dir, "lincheck-input-weak.jsonl"),
                                      levels=("linearizable", "weak"))
            s["lincheck_with_weak"] = {"verdict": v, "exit": rc, "seconds": round(dt, 2),
                                       "output": out}
        s["bad_reads"] = never_written(ops)[:20]
        s["not_converged"] = converged
        if set_check and not converged:
            s["set"] = check_set(self.cluster, ops)
        if not converged and any(o["kind"] == "cas" for o in ops):
            s["cas"] = check_cas(self.cluster, self.history, self.workload.cas_keys,
                                 os.path.join(self.dir, "lincheck-input-cas.jsonl"))
        s["unexpected_exits"] = {n.id: n.exits for n in self.cluster.all_nodes() if n.exits}
        s["cores"] = sorted({os.path.join(n.core_dir, f) for n in self.cluster.all_nodes()
                             if os.path.isdir(n.core_dir) for f in os.listdir(n.core_dir)})
        s["members"] = [n.id for n in self.cluster.nodes]
        if self.nemesis.transfers:
            s["transfers"] = transfer_stats(self.nemesis.transfers)
        with open(os.path.join(self.dir, "summary.json"), "w") as f:
            json.dump(s, f, indent=1)
        with open(os.path.join(self.dir, "summary.txt"), "w") as f:
            f.write(summary_text(s))
        self.log(summary_text(s))
        self.summary = s
        return s

    def assert_ok(self, s, weak_must_hold=True):
        where = f"(see {self.dir})"
        assert s["lincheck"]["exit"] == 0, \
            f"linearizability: {s['lincheck']['verdict']} {where}\n{s['lincheck']['output']}"
        if weak_must_hold and "lincheck_with_weak" in s:
            w = s["lincheck_with_weak"]
            assert w["exit"] == 0, f"with level=weak reads: {w['verdict']} {where}\n{w['output']}"
        assert not s["bad_reads"], f"reads of values never written {where}: {s['bad_reads'][:3]}"
        if "set" in s:
            assert not s["set"]["missing"], \
                f"acknowledged set writes lost {where}: " \
                f"{ {k: v[:5] for k, v in s['set']['missing'].items()} }"
            assert not s["set"]["present_failed"], \
                f"writes answered as failed are present {where}: " \
                f"{ {k: v[:5] for k, v in s['set']['present_failed'].items()} }"
        if "cas" in s:
            c = s["cas"]
            assert c["lincheck"]["exit"] == 0, \
                f"CAS linearizability: {c['lincheck']['verdict']} {where}\n" \
                f"{c['lincheck']['output']}"
            bad = {k: v for k, v in c["keys"].items() if not v["in_range"]}
            assert not bad, f"CAS counters not the number of applied CAS {where}: {bad}"
            assert sum(v["ok"] for v in c["keys"].values()) > 0, f"no CAS succeeded {where}"
        assert not s["unexpected_exits"], \
            f"craftd exited by itself (exit codes) {where}: {s['unexpected_exits']}; " \
            f"cores: {s['cores']} (gdb -batch -ex bt build/craftd CORE)"
        assert not s["not_converged"], f"no convergence after the faults {where}: " \
            f"{s['not_converged']}"
        ok = sum(c["ok"] for k, c in s["ops"].items() if "put" in k)
        assert ok > 0, f"no write succeeded at all {where}"

    def close(self):
        self.cluster.stop_all()
        if self.fw is not None:
            self.fw.remove()
        self.logf.close()


def transfer_stats(recs):
    """Counts by status and the p50/max time of the successful transfers."""
    ok = sorted(r["seconds"] for r in recs if r["status"] == 200)
    by = {}
    for r in recs:
        by[str(r["status"])] = by.get(str(r["status"]), 0) + 1
    return {"count": len(recs), "by_status": by,
            "p50": ok[(len(ok) - 1) // 2] if ok else None, "max": ok[-1] if ok else None,
            "p50_to_other": _median([r["seconds"] for r in recs if r["status"] == 200
                                     and r["target"] != r["from"]]),
            "not_leading_after_200": [r for r in recs if r["status"] == 200
                                      and r.get("target_role") != "leader"],
            "records": recs}


def _median(xs):
    xs = sorted(xs)
    return xs[(len(xs) - 1) // 2] if xs else None


def summary_text(s):
    lines = [f"{s['test']}: {s['nodes']} nodes, {s['seconds']} s of clients"]
    for k, c in sorted(s["ops"].items()):
        lines.append(f"  {k:28s} ok {c['ok']:6d}  fail {c['fail']:5d}  unknown {c['unknown']:4d}")
    lines.append(f"  faults: {len(s['faults'])}: "
                 + ", ".join(sorted({e['kind'] for e in s['faults']})))
    lines.append(f"  elections (the highest term's growth): {s.get('elections')}")
    lc = s["lincheck"]
    lines.append(f"  lincheck (linearizable reads): {lc['verdict']} in {lc['seconds']} s")
    if "lincheck_with_weak" in s:
        w = s["lincheck_with_weak"]
        lines.append(f"  lincheck (+ {s['reads_by_level']['weak']} weak reads): "
                     f"{w['verdict']} in {w['seconds']} s")
    if "cas" in s:
        for k, c in sorted(s["cas"]["keys"].items()):
            lines.append(f"  cas {k}: {c['ok']} ok, {c['refused']} refused (412), "
                         f"{c['fail']} not applied, {c['unknown']} unknown; final value "
                         f"{c['final']} ({'in' if c['in_range'] else 'OUT OF'} [ok, ok+unknown])")
        lc = s["cas"]["lincheck"]
        lines.append(f"  lincheck (CAS model): {lc['verdict']} in {lc['seconds']} s")
    if s["unexpected_exits"]:
        lines.append(f"  CRASHES (exit codes): {s['unexpected_exits']}, cores: {s['cores']}")
    if s["not_converged"]:
        lines.append(f"  NOT CONVERGED: {s['not_converged'][:200]}")
    if "transfers" in s:
        t = s["transfers"]
        lines.append(f"  transfers: {t['count']} {t['by_status']}; 200 in p50 {t['p50']} s "
                     f"(to another node {t['p50_to_other']} s), max {t['max']} s; "
                     f"target not leading right after a 200: {len(t['not_leading_after_200'])}")
    if len(s.get("members", [])) and any(e["kind"] == "remove" for e in s["faults"]):
        lines.append(f"  members at the end: {','.join(s['members'])}")
    lines.append(f"  level=none reads: {s['reads_by_level']['none']}, "
                 f"never-written values read: {len(s['bad_reads'])}")
    if "set" in s:
        st = s["set"]
        lines.append(f"  set: {st['acked']} acknowledged, lost on "
                     f"{ {k: len(v) for k, v in st['missing'].items()} }, failed-but-present "
                     f"{ {k: len(v) for k, v in st['present_failed'].items()} }")
    return "\n".join(lines) + "\n"


# Firewalls set up in this process, removed at exit whatever happens.
_FIREWALLS = []


def soak_firewall():
    """The firewall of a soak: set up when iptables is usable (partitions
    join the random faults), None otherwise (the other faults only)."""
    if iptables_usable() is not None:
        return None
    fw = Firewall()
    _FIREWALLS.append(fw)
    fw.setup()
    return fw


def soak_run(request, tmp_path):
    """A Run for a soak test, with soak_firewall()'s firewall; the test's
    report hook finds it on the test item."""
    run = Run(request.node.name, tmp_path, soak_firewall())
    request.node._fault_run = run
    return run


def random_faults(nem, seconds):
    """One random fault at a time, held 0.5-5 s, 1-4 s apart, for seconds."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        nem.random_fault(hold=nem.rng.uniform(0.5, 5.0))
        time.sleep(nem.rng.uniform(1.0, 4.0))
