"""The plots of bench/RESULTS.md, for report.py: gnuplot data files and
scripts written next to the PNGs they make (bench/plots/), so that a plot can
be redone or restyled with `gnuplot bench/plots/<name>.gp` from the
repository's root. Three plots: throughput per workload (craftd beside etcd,
and the baseline craftd when the run had one), latency percentiles per
workload, and RSS against the number of keys held. Stdlib only; without
gnuplot the data and scripts are still written and no PNG is claimed."""

import os
import shutil
import subprocess

PAIRS = [  # x label, craftd run, etcd run, baseline run
    ("writes", "craftd_put", "etcd_put", "baseline_put"),
    ("linearizable reads", "craftd_get_lin", "etcd_range_lin", "baseline_get_lin"),
    ("local reads", "craftd_get_none", "etcd_range_ser", "baseline_get_none"),
]
PCTS = [("p50", "lat_p50_us"), ("p90", "lat_p90_us"), ("p99", "lat_p99_us")]


def terminal():
    """pngcairo when this gnuplot has it (gnuplot-nox does), else png."""
    try:
        t = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True,
                           timeout=20)
        if "pngcairo" in t.stdout + t.stderr:
            return "pngcairo size 900,480 font ',10'"
    except (OSError, subprocess.SubprocessError):
        pass
    return "png size 900,480"


def num(v):
    return "NaN" if v is None else "%.3f" % v


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def run_gnuplot(root, gp):
    r = subprocess.run(["gnuplot", gp], cwd=root, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("gnuplot %s: %s" % (gp, r.stderr.strip()[:300]))


def make(root, plotdir, prefix, med, runs, rss, title):
    """Writes <prefix><name>.dat/.gp/.png in plotdir (paths in the scripts
    relative to root, where gnuplot runs); med(runs, name, key) gives a
    median. rss: {"craftd": [[keys, mib], ...], "etcd": [...]}.
    Returns (markdown lines, problems)."""
    os.makedirs(plotdir, exist_ok=True)
    rel = os.path.relpath(plotdir, root)
    term = terminal() if shutil.which("gnuplot") else "png"
    have_base = any(runs.get(b) for _, _, _, b in PAIRS)
    made = []  # (name, caption)

    # throughput
    name = prefix + "throughput"
    rows = ["# workload craftd etcd baseline (medians of 200 answers/s)"]
    for label, c, e, b in PAIRS:
        rows.append('"%s" %s %s %s' % (label, num(med(runs, c, "rps")), num(med(runs, e, "rps")),
                                      num(med(runs, b, "rps")) if have_base else "NaN"))
    write(os.path.join(plotdir, name + ".dat"), "\n".join(rows) + "\n")
    have_etcd = any(med(runs, e, "rps") for _, _, e, _ in PAIRS)  # none: etcd not measured
    plot = ("'{d}' using 2:xtic(1) title 'craftd'"
            + (", '' using 3 title 'etcd (JSON gateway)'" if have_etcd else "")
            + (", '' using 4 title 'craftd baseline'" if have_base else ""))
    gp = HIST.format(term=term, out="%s/%s.png" % (rel, name),
                     title="%s: throughput, medians (wrk, 64 connections)" % title,
                     ylabel="200 answers per second", extra="set yrange [0:*]",
                     plot=plot.format(d="%s/%s.dat" % (rel, name)))
    write(os.path.join(plotdir, name + ".gp"), gp)
    made.append((name, "Throughput per workload, craftd beside etcd (medians of the rounds)"))

    # latency percentiles
    name = prefix + "latency"
    rows = ["# workload/percentile craftd_ms etcd_ms baseline_ms (medians)"]
    for label, c, e, b in PAIRS:
        for pl, key in PCTS:
            def ms(run):
                v = med(runs, run, key)
                return None if v is None else v / 1000.0
            rows.append('"%s %s" %s %s %s' % (label, pl, num(ms(c)), num(ms(e)),
                                             num(ms(b)) if have_base else "NaN"))
    write(os.path.join(plotdir, name + ".dat"), "\n".join(rows) + "\n")
    gp = HIST.format(term=term, out="%s/%s.png" % (rel, name),
                     title="%s: latency percentiles, medians of the rounds (log scale)" % title,
                     ylabel="ms", extra="set logscale y\nset xtics rotate by -30 left",
                     plot=plot.format(d="%s/%s.dat" % (rel, name)))
    write(os.path.join(plotdir, name + ".gp"), gp)
    made.append((name, "Latency p50 / p90 / p99 per workload (wrk --latency), log scale"))

    # memory against keys
    if rss.get("craftd") or rss.get("etcd"):
        name = prefix + "memory"
        rows = ["# keys craftd_rss_mib etcd_rss_mib"]
        keys = sorted({k for pts in rss.values() for k, _ in pts})
        for k in keys:
            rows.append("%d %s %s" % (k, num(dict(rss.get("craftd", [])).get(k)),
                                      num(dict(rss.get("etcd", [])).get(k))))
        write(os.path.join(plotdir, name + ".dat"), "\n".join(rows) + "\n")
        d = "%s/%s.dat" % (rel, name)
        gp = LINES.format(term=term, out="%s/%s.png" % (rel, name),
                          title="%s: RSS of a single node against keys held "
                                "(16-byte keys and values)" % title,
                          plot="'%s' using ($1/1000):2 title 'craftd' with linespoints pt 7, "
                               "'' using ($1/1000):3 title 'etcd' with linespoints pt 5" % d)
        write(os.path.join(plotdir, name + ".gp"), gp)
        made.append((name, "RSS against the number of keys (single node, after loading)"))

    problems = []
    if not shutil.which("gnuplot"):
        return (["No gnuplot on this machine: the data and scripts are in %s/, no PNG was "
                 "made (apt-get install gnuplot-nox)." % rel], problems)
    L = []
    for name, caption in made:
        try:
            run_gnuplot(root, "%s/%s.gp" % (rel, name))
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            problems.append(str(e))
            continue
        L.append("%s (`gnuplot %s/%s.gp`):" % (caption, rel, name))
        L.append("")
        L.append("![%s](%s/%s.png)" % (caption, os.path.basename(plotdir), name))
        L.append("")
    return L, problems


HIST = """# made by bench/report.py (bench/plots.py) from the run's data; run from the repository's root
set terminal {term}
set output '{out}'
set title '{title}'
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside top center horizontal
set grid ytics
set ylabel '{ylabel}'
{extra}
plot {plot}
"""

LINES = """# made by bench/report.py (bench/plots.py) from the run's data; run from the repository's root
set terminal {term}
set output '{out}'
set title '{title}'
set key top left
set grid
set xlabel 'keys held (thousands)'
set ylabel 'RSS MiB'
set yrange [0:*]
set xrange [0:*]
plot {plot}
"""
