#!/usr/bin/env python3
"""Turns the raw outputs of bench/run.sh (a folder of wrk BENCHJSON lines, RSS
JSON, log excerpts) into bench/RESULTS.md and prints a summary on stdout.
Usage: report.py <out-dir> <RESULTS.md> key=value...  (run parameters)."""

import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

WORKLOADS = [
    ("craftd_put", "craftd write: POST /key (leader)"),
    ("etcd_put", "etcd write: POST /v3/kv/put (leader)"),
    ("craftd_get_lin", "craftd read, level=linearizable (follower)"),
    ("etcd_range_lin", "etcd range, linearizable (follower)"),
    ("craftd_get_none", "craftd read, level=none (follower)"),
    ("etcd_range_ser", "etcd range, serializable (follower)"),
]
RATIOS = [
    ("writes", "craftd_put", "etcd_put", 3.0),
    ("linearizable reads", "craftd_get_lin", "etcd_range_lin", 3.0),
    ("local reads (none vs serializable)", "craftd_get_none", "etcd_range_ser", None),
]
# the baseline craftd (BENCH_BASELINE): its runs and what they are compared with
BASELINE_WORKLOADS = [
    ("baseline_put", "write: POST /key (leader)"),
    ("baseline_get_lin", "read, level=linearizable (follower)"),
    ("baseline_get_none", "read, level=none (follower)"),
]
BEFORE_NOW = [
    ("writes", "baseline_put", "craftd_put"),
    ("linearizable reads", "baseline_get_lin", "craftd_get_lin"),
    ("local reads (level=none)", "baseline_get_none", "craftd_get_none"),
]
# the 5-node clusters (BENCH_FIVE): their runs, and the 3-node runs they are compared with
FIVE_WORKLOADS = [
    ("craftd5_put", "craftd 5 nodes write: POST /key (leader)"),
    ("etcd5_put", "etcd 5 members write: POST /v3/kv/put (leader)"),
    ("craftd5_get_lin", "craftd 5 nodes read, level=linearizable (follower)"),
    ("etcd5_range_lin", "etcd 5 members range, linearizable (follower)"),
]
FIVE_VS_THREE = [  # label, 3-node craftd, 5-node craftd, 3-member etcd, 5-member etcd
    ("writes", "craftd_put", "craftd5_put", "etcd_put", "etcd5_put"),
    ("linearizable reads", "craftd_get_lin", "craftd5_get_lin", "etcd_range_lin", "etcd5_range_lin"),
]
# CPU per 200 answer (run_wrk's snapshots of /proc/<pid>/stat): the roles of
# a cluster's nodes, and the run dict's key for each
CPU_ROLES = [("leader", "cpu_leader_us"), ("follower", "cpu_follower_us"),
             ("all nodes", "cpu_all_us")]
CPU_RATIOS = [  # label, craftd run, etcd run, role key
    ("writes, leader", "craftd_put", "etcd_put", "cpu_leader_us"),
    ("writes, all nodes", "craftd_put", "etcd_put", "cpu_all_us"),
    ("linearizable reads, serving follower", "craftd_get_lin", "etcd_range_lin", "cpu_follower_us"),
    ("linearizable reads, leader", "craftd_get_lin", "etcd_range_lin", "cpu_leader_us"),
    ("local reads, serving follower", "craftd_get_none", "etcd_range_ser", "cpu_follower_us"),
    ("5-node writes, leader", "craftd5_put", "etcd5_put", "cpu_leader_us"),
    ("5-node lin. reads, serving follower", "craftd5_get_lin", "etcd5_range_lin", "cpu_follower_us"),
]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_cpu(path):
    """{addr: (pid, ticks)} from one of run_wrk's "addr pid ticks" files."""
    snap = {}
    for line in read_text(path).splitlines():
        f = line.split()
        if len(f) == 3 and f[2] != "-":
            snap[f[0]] = (f[1], int(f[2]))
    return snap


def cpu_per_200(out, name, rnd, n200):
    """CPU microseconds per 200 answer of the run's cluster (named by the
    workload's prefix) for its leader, the follower that takes the reads,
    and all its nodes; None where a node is missing or was replaced."""
    roles = dict(l.split("=", 1) for l in read_text(
        os.path.join(out, name.split("_")[0] + ".roles")).splitlines() if "=" in l)
    a = read_cpu(os.path.join(out, "%s.%d.cpu0" % (name, rnd)))
    b = read_cpu(os.path.join(out, "%s.%d.cpu1" % (name, rnd)))

    def us(addrs):
        if not addrs or n200 == 0 or any(x not in a or x not in b or a[x][0] != b[x][0]
                                         for x in addrs):
            return None
        return sum(b[x][1] - a[x][1] for x in addrs) * 1e6 / CLK_TCK / n200
    return {"cpu_leader_us": us([roles["leader"]] if "leader" in roles else []),
            "cpu_follower_us": us([roles["follower"]] if "follower" in roles else []),
            "cpu_all_us": us(sorted(a)) if len(a) == len(b) else None}


def load_runs(out, names):
    runs = {}
    for name in names:
        rs = []
        for path in sorted(glob.glob(os.path.join(out, name + ".*.json")),
                           key=lambda p: int(p.rsplit(".", 2)[1])):
            rnd = int(path.rsplit(".", 2)[1])
            try:
                with open(path) as f:
                    d = json.loads(f.read().strip().splitlines()[-1])
            except (OSError, ValueError, IndexError):
                d = None
            if d is not None:
                # throughput counts 200 answers only; latencies mean nothing without them
                d["rps"] = d["n200"] / (d["duration_us"] / 1e6)
                if d["n200"] == 0:
                    for k in ("lat_p50_us", "lat_p90_us", "lat_p99_us", "lat_max_us"):
                        d[k] = None
                d.update(cpu_per_200(out, name, rnd, d["n200"]))
            rs.append((rnd, d))
        runs[name] = rs
    return runs


def med(rs, key):
    vals = [d[key] for _, d in rs if d and d[key] is not None]
    return statistics.median(vals) if vals else None


def local_paths(argv):
    """argv with the run's folders as <tmp> and build/craftd without the
    checkout's path: the report says what ran, not where."""
    argv = re.sub(r"/tmp/craftd-bench\.[A-Za-z0-9]+", "<tmp>", argv)
    return re.sub(r"\S*/build/craftd\b", "build/craftd", argv)


def by_round(runs, a, b, key):
    """b / a for each round both have, in round order."""
    da = {rnd: d for rnd, d in runs[a] if d and d[key]}
    return [(rnd, d[key] / da[rnd][key]) for rnd, d in runs[b] if d and d[key] and rnd in da]


def ms(us):
    return "-" if us is None else "%.2f" % (us / 1000.0)


def errs(d):
    socket = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_timeout"]
    return d["nbad"], socket


def read_json(path):
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def run_out(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def mem_total():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return "%.1f GiB memory" % (int(line.split()[1]) / 1024.0 / 1024.0)
    except OSError:
        pass
    return "memory ?"


def disk(path):
    """The filesystem that held the data directories (df), and its block
    device (lsblk: size, rotational or not, model) when there is one."""
    if not path or not os.path.isdir(path):
        return "?"
    df = run_out(["df", "-hT", path]).splitlines()
    if len(df) < 2:
        return "?"
    src, fstype, size = df[1].split()[:3]
    what = "%s (%s, %s)" % (src, fstype, size)
    if src.startswith("/dev/"):
        blk = run_out(["lsblk", "-dno", "NAME,SIZE,ROTA,TYPE,MODEL", src])
        if blk:
            f = blk.split(None, 4)
            what += "; lsblk: %s %s, %s%s" % (
                f[0], f[1], "rotational (ROTA=1; a virtual disk may say so)" if f[2] == "1"
                else "not rotational", (", model " + f[4]) if len(f) > 4 else "")
    return what


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        wrkv = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:
        wrkv = "?"
    return "nproc %d, %s, kernel %s, %s, %s" % (os.cpu_count() or 0, mem_total(),
                                                platform.release(), cpu, wrkv.strip())


def before_now(L, S, runs, base):
    """The table "before (<baseline>) vs now": medians, their ratio, and the
    ratio in each round (the two runs of a round are back to back, so the
    spread of those says how much is noise)."""
    L.append("")
    L.append("## Before (%s) vs now (medians)" % base)
    L.append("")
    L.append("For rates, now / before above 1 means the current build is faster; for the p99, "
             "below 1. The two runs of a round are back to back, so the per-round ratios show "
             "how much of a difference is noise.")
    L.append("")
    L.append("| comparison | %s | now | now / before | by round |" % base)
    L.append("|---|---|---|---|---|")
    rows = [(label, a, b, "rps", "%.0f/s", False) for label, a, b in BEFORE_NOW]
    rows.append(("write p99 latency", "baseline_put", "craftd_put", "lat_p99_us", None, True))
    for label, a, b, key, fmt, lat in rows:
        va, vb = med(runs[a], key), med(runs[b], key)
        ratio = (vb / va) if va and vb else None
        rounds = " ".join("%.2f" % x for _, x in by_round(runs, a, b, key)) or "-"
        show = (lambda v: "-" if v is None else "%s ms" % ms(v)) if lat else \
            (lambda v: "-" if v is None else fmt % v)
        L.append("| %s | %s | %s | %s | %s |" % (
            label, show(va), show(vb), "-" if ratio is None else "%.2fx" % ratio, rounds))
        S.append("%-24s %s %9s  now %9s  now/before %s (rounds %s)" % (
            label, base, show(va), show(vb), "-" if ratio is None else "%.2fx" % ratio, rounds))


def us1(v):
    return "-" if v is None else "%.1f" % v


def cpu_section(L, S, runs, workloads, etcd_note):
    """CPU microseconds per 200 answer: a table of medians per workload and
    role, and the craftd / etcd ratios."""
    L.append("")
    L.append("## CPU per request (medians, microseconds per 200 answer)")
    L.append("")
    L.append("utime+stime of each node's process (/proc/<pid>/stat) read right before and "
             "right after each wrk run, the difference divided by the run's 200 answers. "
             "Leader: the cluster's leader; follower: the follower the reads go to (for "
             "writes, one follower's replication); all nodes: the whole cluster. wrk's own "
             "CPU is not in it. The clock tick is %d ms, so a figure is within one tick "
             "of CPU divided by the run's answers." % (1000 // CLK_TCK))
    L.append("")
    L.append("| workload | " + " | ".join("%s µs" % r for r, _ in CPU_ROLES)
             + " | by round (serving node) |")
    L.append("|---|" + "---|" * len(CPU_ROLES) + "---|")
    for name, label in workloads:
        if not runs[name]:
            continue
        serving = "cpu_leader_us" if name.endswith("_put") else "cpu_follower_us"
        L.append("| %s | %s | %s |" % (
            label, " | ".join(us1(med(runs[name], k)) for _, k in CPU_ROLES),
            " ".join(us1(d[serving]) if d else "-" for _, d in runs[name]) or "-"))
    L.append("")
    L.append("craftd / etcd below 1 means craftd spends less CPU per request.")
    L.append("")
    L.append("| comparison | craftd µs | etcd µs | craftd / etcd |")
    L.append("|---|---|---|---|")
    S.append("CPU per 200 answer (medians, µs): leader / serving follower / all nodes")
    for name, label in workloads:
        if runs[name]:
            S.append("  %-18s %s" % (name, " / ".join(us1(med(runs[name], k))
                                                       for _, k in CPU_ROLES)))
    for label, a, b, key in CPU_RATIOS:
        if not runs.get(a):
            continue
        va, vb = med(runs[a], key), med(runs.get(b, []), key)
        ratio = "%.2fx" % (va / vb) if va and vb else \
            ("etcd not measured" if etcd_note else "-")
        L.append("| %s | %s | %s | %s |" % (label, us1(va), us1(vb), ratio))
        if etcd_note:
            S.append("CPU %-36s craftd %7s µs  (etcd not measured)" % (label, us1(va)))
        else:
            S.append("CPU %-36s craftd %7s µs  etcd %7s µs  craftd/etcd %s"
                     % (label, us1(va), us1(vb), ratio))


def five_section(L, S, runs):
    """The 5-node row: throughput and latency of writes and linearizable
    reads on 5 nodes, against the 3-node cluster of the same rounds."""
    L.append("")
    L.append("## 5 nodes against 3 (medians)")
    L.append("")
    L.append("A 5-node craftd cluster (and a 5-member etcd one) next to the 3-node ones, "
             "the same wrk commands, in the same rounds (3-node craftd, 3-member etcd, 5-node craftd, 5-member etcd). "
             "5 / 3: the 5-node figure over the 3-node one; \"by round\" divides the two "
             "runs of the same round.")
    L.append("")
    L.append("| workload | 3 nodes 200s/s | 5 nodes 200s/s | 5 nodes p50 ms | 5 nodes p99 ms "
             "| 5 / 3 | by round | etcd 3 200s/s | etcd 5 200s/s | craftd 5 / etcd 5 |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")

    def rate(v):
        return "-" if v is None else "%.0f" % v
    for label, c3, c5, e3, e5 in FIVE_VS_THREE:
        v3, v5 = med(runs[c3], "rps"), med(runs[c5], "rps")
        w3, w5 = med(runs.get(e3, []), "rps"), med(runs.get(e5, []), "rps")
        ratio = "%.2fx" % (v5 / v3) if v3 and v5 else "-"
        rounds = " ".join("%.2f" % x for _, x in by_round(runs, c3, c5, "rps")) or "-"
        vs_etcd = "%.2fx" % (v5 / w5) if v5 and w5 else "-"
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, rate(v3), rate(v5), ms(med(runs[c5], "lat_p50_us")),
            ms(med(runs[c5], "lat_p99_us")), ratio, rounds, rate(w3), rate(w5), vs_etcd))
        S.append("5 nodes %-28s craftd %8s (3 nodes %s, 5/3 %s, rounds %s)  etcd 5 %s"
                 % (label, rate(v5) + "/s", rate(v3) + "/s", ratio, rounds,
                    "-" if w5 is None else rate(w5) + "/s"))


def f1(v):
    return "-" if v is None else "%.1f" % v


def f2(v):
    return "-" if v is None else "%.2f" % v


def watch_fragment(out, params):
    """The markdown of bench/watch.sh's measurements (its JSON in out)."""
    hold = params.get("hold", "30")
    L = ["## Watch (one node of a 3-node cluster)", ""]
    L.append("`make bench-watch` (bench/watch.sh; the client is bench/watch_client.c, one epoll "
             "loop on non-blocking sockets, built as build/watch_client); `make bench` runs it "
             "too, after the throughput runs. Its own clusters: craftd on HTTP ports +400..402 "
             "with `%s` (every stream is an HTTP connection from 127.0.0.1), etcd %s on client "
             "ports +1400..1402 with its defaults, watched through its JSON gateway "
             "(`POST /v3/watch`, one JSON object a line). Load average (uptime) before: %s; "
             "after: %s." % (read_text(os.path.join(out, "watch_craftd_flags.txt")),
                              read_text(os.path.join(out, "watch_etcd_version.txt")) or "(skipped)",
                              load_avg(os.path.join(out, "watch_load_before.txt")),
                              load_avg(os.path.join(out, "watch_load_after.txt"))))
    L.append("")
    L.append("### Idle watchers")
    L.append("")
    L.append("CPU time of the watched node (utime+stime from /proc/<pid>/stat) over %s s with no "
             "watcher, then over %s s with %s watchers open and nothing written (2 s after the "
             "last one opened); RSS (VmRSS) at the end of each period. The only traffic with "
             "them open is craftd's progress event (`-watch-progress-ms`, 5000 by default) on "
             "every stream, counted; etcd sends none unless asked. craftd's distinct keys and "
             "its prefix run on the two different followers, so that the second does not start "
             "with the first one's freed memory. Then the first follower is restarted with "
             "`-watch-progress-ms 3600000` and the distinct keys measured again: what the "
             "watchers cost without their progress events." % (hold, hold, params.get("n")))
    L.append("")
    L.append("| server | watchers on | open all s | CPU ms without | CPU ms with | extra CPU "
             "% of a core | progress events | RSS without MiB | RSS with MiB | RSS per watcher KiB | "
             "load |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    S = []
    for tag, label in (("craftd_keys", "craftd, distinct keys"), ("craftd_prefix", "craftd, one prefix"),
                       ("craftd_quiet", "craftd, distinct keys, no progress events"),
                       ("etcd_keys", "etcd, distinct keys")):
        d = read_json(os.path.join(out, "watch_idle_%s.json" % tag))
        if d is None:
            if tag.startswith("etcd") and not read_text(os.path.join(out, "watch_etcd_version.txt")):
                continue
            L.append("| %s | failed | | | | | | | | | |" % label)
            continue
        extra = (d["cpu_with_ms"] / d["wall_with_s"] - d["cpu_without_ms"] / d["wall_without_s"]) / 10
        extra = 0.0 if abs(extra) < 0.005 else extra  # no "-0.00"
        per = (d["rss_end_kib"] - d["rss_without_end_kib"]) / d["n"]
        L.append("| %s | %d | %.2f | %.0f | %.0f | %.2f | %d | %.1f | %.1f | %.2f | %s |" % (
            label, d["n"], d["open_s"], d["cpu_without_ms"], d["cpu_with_ms"], extra,
            d["progress_events"], d["rss_without_end_kib"] / 1024, d["rss_end_kib"] / 1024, per,
            f2(d.get("loadavg_end"))))
        S.append("%-22s %d idle watchers: CPU %.0f ms / %s s (without: %.0f ms), %.2f KiB RSS each"
                 % (label, d["n"], d["cpu_with_ms"], hold, d["cpu_without_ms"], per))
    L.append("")
    L.append("### Fan-out: one write, %s watchers of its key" % params.get("fan"))
    L.append("")
    L.append("%s watchers of one key on one node, then %s writes of that key to the leader, one "
             "at a time, the next %s ms after every watcher got the previous one. For each "
             "(write, watcher) pair: the time from the write's 200 answer, and from sending it, "
             "to the moment the client read that watcher's event (the clock right after the "
             "recvmsg(); the client reads 1,000 sockets in turn, so its own reading is in the "
             "figures). Negative from the answer: the watcher had the event before the writer "
             "had its answer. \"last\": per write, until the last of the watchers had it. "
             "\"In the socket\": the kernel's receive timestamp of the bytes (SO_TIMESTAMPNS; "
             "on loopback, when the server wrote them), so without the client's reading: what "
             "the server's fan-out itself takes. "
             "Client CPU: what the measuring client itself used during the writes (its reading "
             "of every socket is in the figures); load: the 1-minute load average at the end "
             "(the machine is shared, and the two craftd or etcd members not watched run too)."
             % (params.get("fan"), params.get("writes"), params.get("gap")))
    L.append("")
    read_rows, sock_rows = [], []

    def three(x):
        return "-" if not x else "%.2f / %.2f / %.2f" % (x["p50_ms"], x["p99_ms"], x["max_ms"])

    for kind in ("craftd", "etcd"):
        for where in ("follower", "leader"):
            d = read_json(os.path.join(out, "watch_fan_%s_%s.json" % (kind, where)))
            if d is None:
                if kind == "craftd" or read_text(os.path.join(out, "watch_etcd_version.txt")):
                    read_rows.append("| %s | %s | failed | | | | | | |" % (kind, where))
                continue
            larr = d.get("last_arrival_from_answer")
            read_rows.append("| %s | %s | %d | %.2f | %s | %s | %s | %s | %d |" % (
                kind, where, d["n"], d["write_answer"]["p50_ms"], three(d["from_answer"]),
                three(d["from_send"]), three(d["last_from_answer"]), three(d["last_from_send"]),
                d["lost"]))
            sock_rows.append("| %s | %s | %s | %s | %s / %s | %s |" % (
                kind, where, three(d.get("arrival_from_answer")), three(larr),
                d.get("client_cpu_ms", "-"), d.get("wall_s", "-"), f2(d.get("loadavg_end"))))
            S.append("%-6s fan-out to %d on the %s: last watcher read p50 %.2f ms p99 %.2f ms "
                     "after the answer%s" % (
                         kind, d["n"], where, d["last_from_answer"]["p50_ms"],
                         d["last_from_answer"]["p99_ms"],
                         "; in its socket p50 %.2f ms p99 %.2f ms" % (larr["p50_ms"], larr["p99_ms"])
                         if larr else ""))
    L.append("As read by the client (ms):")
    L.append("")
    L.append("| server | watchers on | watchers | write answer p50 | from answer p50 / p99 / max "
             "| from send p50 / p99 / max | last, from answer p50 / p99 / max "
             "| last, from send p50 / p99 / max | events lost |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    L.extend(read_rows)
    L.append("")
    L.append("As queued in the watchers' sockets (kernel timestamps, ms), and what the client "
             "used:")
    L.append("")
    L.append("| server | watchers on | from answer p50 / p99 / max "
             "| last, from answer p50 / p99 / max | client CPU ms / wall s | load |")
    L.append("|---|---|---|---|---|---|")
    L.extend(sock_rows)
    L.append("")
    L.append("Summary:")
    L.append("")
    L.append("```")
    L.extend(S)
    L.append("```")
    warn = []
    for f in sorted(glob.glob(os.path.join(out, "watch-*.warn"))):
        t = read_text(f)
        if t:
            warn.append("%s:\n%s" % (os.path.basename(f)[len("watch-"):-5], t))
    if warn:
        L.append("")
        L.append("WARN/ERROR lines in the watch cluster's craftd logs (first 20 per node; the "
                 "restart of a follower for the run without progress events makes the others "
                 "log its lost peer connection):")
        L.append("")
        L.append("```")
        L.extend(warn)
        L.append("```")
    return "\n".join(L) + "\n"


def load_avg(path):
    t = read_text(path)
    m = re.search(r"load average: (.*)$", t)
    return m.group(1) if m else "?"


def splice(dest, fragment_path):
    """Puts the fragment's section (its first line, a "## " heading) into
    dest in place of the section of that heading, or before "## Problems
    seen" when it has none."""
    frag = read_text(fragment_path).splitlines()
    head = frag[0]
    try:
        with open(dest) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    if head in lines:
        a = lines.index(head)
        b = next((i for i in range(a + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[a:b] = frag + [""]
    else:
        at = lines.index("## Problems seen") if "## Problems seen" in lines else len(lines)
        lines[at:at] = frag + [""]
    with open(dest, "w") as f:
        f.write("\n".join(lines) + "\n")


def stability_section(L, S, problems, out):
    """The 60 s full-load run of bench/stability.sh (its key=value lines)."""
    path = os.path.join(out, "stability.txt")
    if not os.path.exists(path):
        return
    kv = dict(line.split("=", 1) for line in read_text(path).splitlines() if "=" in line)
    if "leader_changes" not in kv:
        problems.append("the stability run failed (see the run's stderr)")
        return
    L.append("")
    L.append("## Stability under full write load (bench/stability.sh)")
    L.append("")
    L.append("A 3-node cluster of its own, default timing%s; wrk with 64 connections of "
             "`POST /key` to the leader for %s s, snapshots every 2000 entries (so that many are "
             "taken and compacted meanwhile); the term on every node before and after, and the "
             "sum of `craftd_raft_leader_changes_total`." % (
                 " and `%s`" % kv["flags"] if kv.get("flags") else "", kv.get("duration_s")))
    L.append("")
    L.append("| writes/s | non-2xx | snapshots | terms before | terms after | leader changes |")
    L.append("|---|---|---|---|---|---|")
    L.append("| %s | %s | %s | %s | %s | **%s** |" % (
        kv.get("requests_per_s"), kv.get("non_2xx"), kv.get("snapshots"),
        kv.get("terms_before", "").strip(), kv.get("terms_after", "").strip(),
        kv["leader_changes"]))
    S.append("stability, 60 s of 64-connection writes: %s leader changes, %s writes/s, %s snapshots"
             % (kv["leader_changes"], kv.get("requests_per_s"), kv.get("snapshots")))
    if kv["leader_changes"] != "0":
        problems.append("the leader changed %s times under full write load" % kv["leader_changes"])


def main():
    if sys.argv[1] == "--watch-fragment":  # out-dir key=value...
        sys.stdout.write(watch_fragment(sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:])))
        return 0
    if sys.argv[1] == "--splice":  # RESULTS.md fragment.md
        splice(sys.argv[2], sys.argv[3])
        return 0
    out, dest = sys.argv[1], sys.argv[2]
    params = dict(a.split("=", 1) for a in sys.argv[3:])
    base = params.get("baseline", "")
    etcd_note = params.get("etcd_note", "")
    workloads = [(n, l) for n, l in WORKLOADS if not (etcd_note and n.startswith("etcd"))]
    if params.get("five") == "1":
        workloads += [(n, l) for n, l in FIVE_WORKLOADS
                      if not (etcd_note and n.startswith("etcd"))]
    if base:
        workloads += [(n, "craftd %s %s" % (base, label)) for n, label in BASELINE_WORKLOADS]
    runs = load_runs(out, [n for n, _ in workloads])
    for n, _ in WORKLOADS + FIVE_WORKLOADS:  # what this run did not measure
        runs.setdefault(n, [])
    L = []
    S = []  # summary lines for stdout
    L.append("# craftd benchmark results")
    L.append("")
    L.append("Produced by `make bench` (bench/run.sh); see docs/benchmarks.md. Do not edit by hand.")
    L.append("")
    L.append("- Date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    L.append("- Machine: %s" % machine())
    L.append("- Disk of the data directories (a `mktemp -d` folder): %s"
             % disk(params.get("datadir")))
    L.append("- Load average (uptime) before the run: %s; after: %s"
             % (load_avg(os.path.join(out, "load_before.txt")),
                load_avg(os.path.join(out, "load_after.txt"))))
    if etcd_note:
        L.append("- **etcd not measured**: %s; craftd `%s` (defaults, 3 nodes)"
                 % (etcd_note, params.get("craftd", "build/craftd")))
    else:
        L.append("- etcd %s (defaults, 3 members); craftd `%s` (defaults, 3 nodes)"
                 % (params.get("etcd_version", "?"), params.get("craftd", "build/craftd")))
    if params.get("five") == "1":
        L.append("- 5-node clusters too: craftd (HTTP ports +250, Raft +350)%s, for writes and "
                 "linearizable reads" % ("" if etcd_note else
                                         " and etcd (clients +1250, peers +1350)"))
    if params.get("quick") == "1":
        L.append("- **BENCH_QUICK=1**: the throughput runs alone (no baseline, memory, watch or "
                 "latency part); a quick look, not figures to quote")
    L.append("- etcd is measured through its JSON gateway (grpc-gateway on its client port: "
             "HTTP/1.1 and JSON, `POST /v3/kv/put`, `/v3/kv/range`, `/v3/kv/txn`, "
             "`/v3/watch`), the same kind of API as craftd's, not through gRPC, which its own "
             "clients use and which costs it less per request")
    if base:
        L.append("- Baseline: craftd at git revision %s (%s), built by the run from `git archive` "
                 "with that revision's Makefile, as a third 3-node cluster (HTTP ports +200, "
                 "Raft +300); each craftd workload runs on it right after the current build's "
                 "run (right before it in even rounds)%s"
                 % (base, params.get("baseline_sha", "?")[:12],
                    ("; flags `%s`" % params["baseline_flags"]) if params.get("baseline_flags")
                    else ", with its defaults"))
    else:
        L.append("- No baseline craftd: %s" % (params.get("baseline_note") or "none asked for"))
    if params.get("craftd_flags"):
        L.append("- craftd extra flags (BENCH_CRAFTD_FLAGS): `%s`" % params["craftd_flags"])
    if params.get("auth") == "1":
        L.append("- BENCH_AUTH=1: craftd has users (-auth-file, one yescrypt user) and every "
                 "craftd request carries HTTP Basic credentials (checked once, then from the "
                 "cache); etcd runs without users")
    if params.get("tls") == "1":
        L.append("- BENCH_TLS=1: clients talk HTTPS to both clusters (TLS 1.2+, one ECDSA "
                 "P-256 certificate from a CA made by the run; wrk keeps its 64 "
                 "connections open, so handshakes happen at the start); peer traffic "
                 "stays plain; the memory and restart part runs without TLS")
    L.append("- Both clusters run on loopback on the same machine as wrk, data on the same disk. "
             "Runs are interleaved (craftd, etcd, craftd, etcd, ...), %s rounds, medians below."
             % params.get("rounds"))
    L.append("- Keys and values: 16 bytes each; writes use a new key per request, reads pick "
             "one of %s preloaded keys at random." % params.get("nread"))
    L.append("")
    summary_at = len(L)  # the summary goes here once every figure is known
    L.append("## Commands")
    L.append("")
    L.append("```")
    for line in read_text(os.path.join(out, "commands.tsv")).splitlines():
        name, cmd = line.split("\t", 1)
        L.append("%-16s %s" % (name, cmd))
    L.append("```")
    L.append("")
    L.append("(BENCH_RUN=<round> and BENCH_NREAD=%s are set for every run; scripts in bench/.)"
             % params.get("nread"))
    L.append("")
    L.append("## Throughput and latency (wrk -t%s -c%s -d%ss --latency)"
             % (params.get("threads"), params.get("conns"), params.get("duration")))
    L.append("")
    L.append("| workload | round | 200s/s | p50 ms | p99 ms | max ms | non-200 | socket errors |")
    L.append("|---|---|---|---|---|---|---|---|")
    problems = []
    for name, label in workloads:
        for rnd, d in runs[name]:
            if d is None:
                L.append("| %s | %d | failed | | | | | |" % (label, rnd))
                problems.append("%s round %d: wrk produced no result" % (name, rnd))
                continue
            nbad, sock = errs(d)
            L.append("| %s | %d | %.0f | %s | %s | %s | %d | %d |" % (
                label, rnd, d["rps"], ms(d["lat_p50_us"]), ms(d["lat_p99_us"]),
                ms(d["lat_max_us"]), nbad, sock))
            if nbad or sock:
                problems.append("%s round %d: %d non-200 %s, socket errors connect %d read %d "
                                "write %d timeout %d%s" % (
                                    name, rnd, nbad, json.dumps(d["bad_codes"]),
                                    d["err_connect"], d["err_read"], d["err_write"],
                                    d["err_timeout"],
                                    (", sample body: " + d["bad_sample"]) if d["bad_sample"]
                                    else ""))
        rs = runs[name]
        L.append("| **%s** | **median** | **%s** | **%s** | **%s** | | | |" % (
            label, "-" if med(rs, "rps") is None else "%.0f" % med(rs, "rps"),
            ms(med(rs, "lat_p50_us")), ms(med(rs, "lat_p99_us"))))
    L.append("")
    L.append("## Ratios craftd / etcd (medians)")
    L.append("")
    L.append("| comparison | craftd 200s/s | etcd 200s/s | ratio | target |")
    L.append("|---|---|---|---|---|")
    for label, a, b, target in RATIOS:
        ra, rb = med(runs[a], "rps"), med(runs[b], "rps")
        ratio = (ra / rb) if ra and rb else None
        tgt = "-" if target is None else ">= %.0fx: %s" % (
            target, "met" if ratio and ratio >= target else "NOT met")
        if etcd_note:
            tgt = "etcd not measured"
        L.append("| %s | %s | %s | %s | %s |" % (
            label, "-" if ra is None else "%.0f" % ra, "-" if rb is None else "%.0f" % rb,
            "-" if ratio is None else "%.2fx" % ratio, tgt))
        S.append("%-36s craftd %8s  etcd %8s  ratio %s" % (
            label, "-" if ra is None else "%.0f/s" % ra, "-" if rb is None else "%.0f/s" % rb,
            "-" if ratio is None else "%.2fx" % ratio))
    p99 = med(runs["craftd_put"], "lat_p99_us")
    p50 = med(runs["craftd_put"], "lat_p50_us")
    ep99 = med(runs["etcd_put"], "lat_p99_us")
    if base:
        before_now(L, S, runs, base)
    cpu_section(L, S, runs, workloads, etcd_note)
    if params.get("five") == "1":
        five_section(L, S, runs)
    L.append("")
    L.append("craftd write latency (median of runs): p50 %s ms, **p99 %s ms** (target < 10 ms: %s); "
             "etcd put p99 %s ms." % (ms(p50), ms(p99),
                                      "met" if p99 is not None and p99 < 10000 else "NOT met",
                                      ms(ep99)))
    S.append("craftd write latency p50 %s ms, p99 %s ms (etcd put p99 %s ms)"
             % (ms(p50), ms(p99), ms(ep99)))
    rss = {}  # kind -> [[keys, RSS MiB], ...]
    if any(os.path.exists(os.path.join(out, "rss_%s.json" % k)) for k in ("craftd", "etcd")):
        L.append("")
        L.append("## Memory and restart with %s keys (single node)" % params.get("nkeys"))
        L.append("")
        L.append("Loaded by POSTing batches of 1000 pairs (craftd: one `POST /key`; etcd: one "
                 "`/v3/kv/txn`, started with `--max-txn-ops 1000`) on 4 parallel connections; RSS read "
                 "from /proc/<pid>/status 2 s after the load; then `kill -9`, restart from the same "
                 "directory, and time from the exec to the first 200 with the right value for the "
                 "last loaded key (craftd `GET ?level=none`, etcd serializable range), polled every 2 ms.")
        L.append("")
        L.append("| | load time s | RSS MiB | peak RSS MiB | data dir MiB | restart to serving s "
                 "| RSS after restart MiB |")
        L.append("|---|---|---|---|---|---|---|")
        for kind in ("craftd", "etcd"):
            d = read_json(os.path.join(out, "rss_%s.json" % kind))
            if d is None:
                if os.path.exists(os.path.join(out, "rss_%s.json" % kind)):
                    L.append("| %s | failed | | | | | |" % kind)
                    problems.append("%s RSS/restart part failed (see the run's stderr)" % kind)
                continue
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                kind, d["load_s"], d["rss_mib"], d["hwm_mib"], d["disk_mib"],
                d["restart_to_serving_s"], d["rss_after_restart_mib"]))
            S.append("%-6s 10^6 keys: RSS %s MiB (peak %s), restart to serving %s s"
                     % (kind, d["rss_mib"], d["hwm_mib"], d["restart_to_serving_s"]))
        cow = read_json(os.path.join(out, "cow_craftd.json"))
        if cow:
            L.append("")
            L.append("craftd during snapshots (`bench/cow.py`, %s s of random overwrites of the %s "
                     "keys by wrk, 16 connections; RSS and the snapshot writer's unshared pages "
                     "sampled every 5 ms): settled RSS %s MiB, peak RSS %s MiB, peak of RSS + the "
                     "writer's copied pages %s MiB (**%sx** the settled RSS; goal 1.3x), %s "
                     "snapshots, %s writes." % (
                         cow["seconds"], cow["keys"], cow["rss_before_mib"], cow["peak_rss_mib"],
                         cow["peak_total_mib"], cow["peak_over_before"],
                         cow["snapshot_children_seen"], cow["writes"]))
            S.append("craftd during snapshots: peak %s MiB = %sx the settled %s MiB "
                     "(writer's copies %s MiB)" % (cow["peak_total_mib"], cow["peak_over_before"],
                                                   cow["rss_before_mib"],
                                                   cow["peak_child_private_mib"]))
        elif os.path.exists(os.path.join(out, "cow_craftd.json")):
            problems.append("craftd snapshot-memory part failed (see the run's stderr)")
        for kind in ("craftd", "etcd"):
            d = read_json(os.path.join(out, "rss_%s.json" % kind))
            if d and d.get("rss_steps"):
                rss[kind] = d["rss_steps"]
        if rss:
            L.append("")
            L.append("RSS against the keys held, read while loading (2 s after the load reached each "
                     "count, on the same node):")
            L.append("")
            steps = sorted({k for pts in rss.values() for k, _ in pts})
            L.append("| | " + " | ".join("%d keys" % k for k in steps) + " |")
            L.append("|---|" + "---|" * len(steps))
            for kind, pts in sorted(rss.items()):
                by = dict(pts)
                L.append("| %s RSS MiB | %s |" % (kind, " | ".join(
                    "-" if by.get(k) is None else "%.1f" % by[k] for k in steps)))
        for kind in ("craftd", "etcd"):
            d = read_json(os.path.join(out, "rss_%s.json" % kind))
            if d:
                L.append("")
                L.append("%s command: `%s`" % (kind, local_paths(d["argv"])))
        L.append("")
        L.append("## Listing 1,000 keys among %s (single node)" % params.get("nkeys"))
        L.append("")
        L.append("On the loaded node above, before the restart: 200 listings of the 1,000 keys under "
                 "a prefix (`m000000000123` holds m000000000123000..999), one after the other on one "
                 "keep-alive connection; craftd `GET /keys?prefix=<p>&limit=1000`, etcd "
                 "`/v3/kv/range` from the prefix to its end with `limit` 1000, both at their default "
                 "(linearizable) level. A craftd answering 404 (a build without listing) is "
                 "skipped.")
        L.append("")
        L.append("| | listings | p50 ms | p99 ms | listings/s |")
        L.append("|---|---|---|---|---|")
        for kind in ("craftd", "etcd"):
            d = read_json(os.path.join(out, "rss_%s.json" % kind))
            if d is None:
                continue
            if "list_skipped" in d:
                L.append("| %s | skipped: %s | | | |" % (kind, d["list_skipped"]))
                S.append("%-6s listing 1,000 of 10^6: skipped (%s)" % (kind, d["list_skipped"]))
            elif "list_n" in d:
                L.append("| %s | %d | %s | %s | %s |" % (kind, d["list_n"], d["list_p50_ms"],
                                                       d["list_p99_ms"], d["list_per_s"]))
                S.append("%-6s listing 1,000 of 10^6: p50 %s ms, %s listings/s"
                         % (kind, d["list_p50_ms"], d["list_per_s"]))
    watch = read_text(os.path.join(out, "watch.md"))  # bench/watch.sh's section
    if watch:
        L.append("")
        L.extend(watch.splitlines())
    stability_section(L, S, problems, out)
    deaths = read_text(os.path.join(out, "craftd_deaths.txt"))
    if deaths:
        problems.append("craftd nodes died during the runs:\n\n```\n%s\n```" % deaths)
    warn = []
    for f in sorted(glob.glob(os.path.join(out, "*.warn"))):
        if os.path.basename(f).startswith("watch-"):
            continue  # in the watch section
        t = read_text(f)
        if t:
            warn.append("%s:\n%s" % (os.path.basename(f)[:-5], t))
    L.append("")
    L.append("## Problems seen")
    L.append("")
    if not problems and not warn:
        L.append("None: every answer was 200, no socket errors, no WARN/ERROR in craftd logs.")
    for p in problems:
        L.append("- " + p)
    if warn:
        L.append("")
        L.append("WARN/ERROR lines in craftd logs (first 20 per node):")
        L.append("")
        L.append("```")
        L.extend(warn)
        L.append("```")
    plot_lines = ["## Plots", ""]
    try:
        import plots  # bench/plots.py, beside this file
        root = os.path.dirname(os.path.dirname(os.path.abspath(dest)))
        stem = os.path.splitext(os.path.basename(dest))[0]
        prefix = "" if stem == "RESULTS" else stem.replace("RESULTS-", "").lower() + "-"
        pl, pp = plots.make(root, os.path.join(os.path.dirname(os.path.abspath(dest)), "plots"),
                            prefix, lambda rs, name, key: med(rs.get(name, []), key), runs, rss,
                            "craftd vs etcd %s" % params.get("etcd_version", ""))
        plot_lines += pl
        plot_lines += ["A plot failed: %s" % p for p in pp]
    except (ImportError, OSError) as e:
        plot_lines.append("No plots: %s" % e)
    L[summary_at:summary_at] = plot_lines
    L[summary_at:summary_at] = (["## Summary", "",
                                  "Point writes and reads (medians, 200s/s), CPU per request, "
                                  "RSS and restart with %s keys, listing 1,000 keys among them:"
                                  % params.get("nkeys"),
                                  "", "```"] + S + ["```", ""])
    with open(dest, "w") as f:
        f.write("\n".join(L) + "\n")
    print("==== craftd vs etcd %s (medians of %s interleaved runs; full table in %s)"
          % (params.get("etcd_version") or "(etcd not measured)", params.get("rounds"),
             os.path.relpath(dest)))
    for s in S:
        print(s)
    for p in problems:
        print("problem: " + p)
    if warn:
        print("craftd logged WARN/ERROR lines: see %s" % os.path.relpath(dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
