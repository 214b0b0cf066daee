#!/bin/sh
# `make bench-peer-tls` (and the end of `make bench`): write throughput of a
# 3-node craftd cluster over plain TCP and over peer TLS, in the same run:
# both clusters up side by side, wrk runs interleaved (plain, TLS, plain,
# TLS, ...), medians. Writes bench/PEER_TLS.md and prints it. A benchmark,
# not a test: it fails only when something cannot be started.
# Knobs: BENCH_DURATION (s per wrk run, 10), BENCH_ROUNDS (3),
# BENCH_TLS_PORT (base port, 31500), BENCH_TLS_RESULTS (the report file).
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH_DIR=$ROOT/bench
export BENCH_DIR
CRAFTD=$ROOT/build/craftd
DUR=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
P=${BENCH_TLS_PORT:-31500}
RESULTS=${BENCH_TLS_RESULTS:-$BENCH_DIR/PEER_TLS.md}
CONNS=64
THREADS=2
PY="python3 $BENCH_DIR/helper.py"

say() { echo "bench-peer-tls: $(date +%T) $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

command -v wrk >/dev/null 2>&1 || die "wrk is missing (make bench installs it)"
[ -x "$CRAFTD" ] || die "$CRAFTD is missing (run make first)"

T=$(mktemp -d /tmp/craftd-bench-tls.XXXXXX)
PIDS=$T/pids
: >"$PIDS"
cleanup() {
    for pid in $(cat "$PIDS" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    for pid in $(cat "$PIDS" 2>/dev/null); do
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ -n "${KEEP_LOGS:-}" ]; then say "logs kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sh "$ROOT/tests/security/peer_tls_certs.sh" "$T/certs" ca node0 node1 node2

# cluster KIND BASE [flags per node via $1 = node name]: 3 nodes, prints
# leader=<http>
cluster() {
    kind=$1; base=$2
    h0=127.0.0.1:$base
    for i in 0 1 2; do
        tls=""
        [ "$kind" = tls ] && tls="-peer-tls-cert $T/certs/node$i.pem -peer-tls-key $T/certs/node$i.key -peer-tls-ca $T/certs/ca.pem"
        join=""
        [ $i -gt 0 ] && join="-join $h0"
        # shellcheck disable=SC2086
        "$CRAFTD" $tls -id node$i -haddr 127.0.0.1:$((base+i)) \
            -raddr 127.0.0.1:$((base+100+i)) $join "$T/$kind$i" >"$T/$kind$i.log" 2>&1 &
        echo $! >>"$PIDS"
        if [ $i -eq 0 ]; then
            $PY wait-craftd 1 "$h0" >/dev/null || die "$kind node0 did not start: $(tail -3 "$T/${kind}0.log")"
        fi
    done
    $PY wait-craftd 3 "$h0" 127.0.0.1:$((base+1)) 127.0.0.1:$((base+2)) |
        sed -n 's/^leader=//p'
}

PLAIN=$(cluster plain "$P") || die "plain cluster not ready"
TLS=$(cluster tls $((P+10))) || die "TLS cluster not ready"
[ -n "$PLAIN" ] && [ -n "$TLS" ] || die "no leader"
grep -q "peer TLS on" "$T/tls0.log" || die "the TLS cluster does not run TLS"
say "plain leader $PLAIN, TLS leader $TLS"

WRK="wrk -t$THREADS -c$CONNS -d${DUR}s --latency"
run() { # kind round url
    say "round $2: $1"
    env BENCH_RUN="$2" $WRK -s "$BENCH_DIR/craftd_put.lua" "http://$3" >"$T/$1.$2.txt" 2>&1 ||
        say "wrk failed for $1 round $2"
}
r=1
while [ $r -le "$ROUNDS" ]; do
    run plain $r "$PLAIN"
    run tls $r "$TLS"
    r=$((r+1))
done

python3 - "$T" "$ROUNDS" "$DUR" "$RESULTS" <<'PYEOF'
import json, re, statistics, subprocess, sys, time
t, rounds, dur, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def parse(path):
    m = re.search(r"^BENCHJSON (.*)$", open(path).read(), re.M)
    if not m:
        return (0.0, float("nan"), float("nan"), "?")
    j = json.loads(m.group(1))
    return (j["n200"] / (j["duration_us"] / 1e6), j["lat_p50_us"] / 1000,
            j["lat_p99_us"] / 1000, j["nbad"])

rows, med = [], {}
for kind, label in (("plain", "plain TCP"), ("tls", "peer TLS")):
    rs = [parse(f"{t}/{kind}.{r}.txt") for r in range(1, rounds + 1)]
    for i, (rps, p50, p99, bad) in enumerate(rs, 1):
        rows.append(f"| {label} | {i} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {bad} |")
    med[kind] = (statistics.median(x[0] for x in rs), statistics.median(x[1] for x in rs),
                 statistics.median(x[2] for x in rs))
    rows.append(f"| **{label}** | **median** | **{med[kind][0]:.0f}** | **{med[kind][1]:.2f}** | "
                f"**{med[kind][2]:.2f}** | |")
ratio = med["tls"][0] / med["plain"][0] if med["plain"][0] else float("nan")
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
ossl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
doc = f"""# craftd write throughput with and without peer TLS

Produced by `make bench-peer-tls` (bench/peer_tls.sh, also run by `make bench`).
Do not edit by hand.

- Date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}
- Machine: nproc {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}, {cpu}; {ossl}
- Two 3-node clusters on loopback, side by side, same binary and defaults; one
  with `-peer-tls-cert/-key/-ca` (EC P-256 certificates). Runs interleaved,
  {rounds} rounds, medians.
- `wrk -t2 -c64 -d{dur}s --latency -s bench/craftd_put.lua http://<leader>`: a new
  16-byte key and value per POST /key.

| cluster | round | 200s/s | p50 ms | p99 ms | non-200 |
|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Peer TLS keeps **{ratio * 100:.0f}%** of the plain-TCP write throughput.
"""
open(out, "w").write(doc)
print(doc)
PYEOF
