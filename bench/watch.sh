#!/bin/sh
# The watch part of `make bench` (and all of `make bench-watch`): on one node
# of a 3-node craftd cluster, what idle watchers cost (CPU time and RSS of the
# node) and how long one write takes to reach 1,000 watchers of its key; the
# fan-out also against etcd's watch (its JSON gateway, POST /v3/watch). The
# measuring client is bench/watch_client.c (build/watch_client, one epoll
# loop). With an argument (run.sh's output folder) it leaves its JSON there
# and the markdown fragment watch.md that report.py puts in RESULTS.md;
# without one it splices that fragment into bench/RESULTS.md itself.
# Knobs: BENCH_PORT (31000: craftd HTTP P+400.., Raft P+500.., etcd clients
# P+1400.., peers P+1500..), BENCH_WATCH_N (idle watchers, 10000),
# BENCH_WATCH_FAN (fan-out watchers, 1000), BENCH_WATCH_WRITES (200),
# BENCH_WATCH_GAP_MS (20), BENCH_WATCH_HOLD (idle seconds, 30),
# BENCH_WATCH_ETCD=0 (skip etcd), BENCH_RESULTS (bench/RESULTS.md).
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH_DIR=$ROOT/bench
CRAFTD=$ROOT/build/craftd
CLIENT=$ROOT/build/watch_client
P=${BENCH_PORT:-31000}
N=${BENCH_WATCH_N:-10000}
FAN=${BENCH_WATCH_FAN:-1000}
WRITES=${BENCH_WATCH_WRITES:-200}
GAP=${BENCH_WATCH_GAP_MS:-20}
HOLD=${BENCH_WATCH_HOLD:-30}
WITH_ETCD=${BENCH_WATCH_ETCD:-1}
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}
PY="python3 $BENCH_DIR/helper.py"

say() { echo "bench-watch: $(date +%T) $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ -x "$CRAFTD" ] || die "$CRAFTD is missing (run make first)"
[ -x "$CLIENT" ] || die "$CLIENT is missing (make bench-watch builds it)"
if [ "$WITH_ETCD" != 0 ] && ! command -v etcd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing etcd-server"
        DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >/dev/null ||
            { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >/dev/null; } ||
            die "cannot install etcd-server"
    else
        die "etcd is missing (install etcd-server, or BENCH_WATCH_ETCD=0)"
    fi
fi

python3 - "$P" <<'PYEOF' || die "a port in use on 127.0.0.1 (set BENCH_PORT to another base)"
import socket, sys
p = int(sys.argv[1])
for port in [p + off for off in (400, 401, 402, 500, 501, 502, 1400, 1401, 1402, 1500, 1501, 1502)]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        sys.exit("bench-watch: port %d is in use" % port)
    finally:
        s.close()
PYEOF

T=$(mktemp -d /tmp/craftd-bench-watch.XXXXXX)
OUT=${1:-$T/out}
mkdir -p "$OUT"
PIDS=$T/pids
: >"$PIDS"
stop_all() {
    for pid in $(cat "$PIDS"); do kill "$pid" 2>/dev/null || true; done
    for pid in $(cat "$PIDS"); do
        i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        kill -9 "$pid" 2>/dev/null || true
    done
    : >"$PIDS"
}
cleanup() {
    stop_all
    if [ -n "${KEEP_LOGS:-}" ]; then say "logs kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_bg() { # logfile argv...: in the background, its PID remembered
    log=$1; shift
    "$@" >"$log" 2>&1 &
    echo $! >>"$PIDS"
}
pid_of() { sed -n "$1p" "$PIDS"; } # the nth process started (1-based)
addr_index() { echo $(( ${1##*:} - $2 )); } # host:port base -> 0, 1, 2

uptime >"$OUT/watch_load_before.txt"
say "load before: $(cat "$OUT/watch_load_before.txt")"

# ---- craftd: 3 nodes; connection limits above the watchers (each stream is
# an HTTP connection, all from 127.0.0.1), -watch-max at least N
WMAX=$N; [ "$WMAX" -ge 10000 ] || WMAX=10000
CONNS=$((N + N / 5 + 100))
CFLAGS="-http-max-conns $CONNS -http-max-conns-per-ip $CONNS -watch-max $WMAX"
HP=$((P + 400)); RP=$((P + 500))
start_bg "$T/craftd0.log" "$CRAFTD" $CFLAGS -id node0 -haddr 127.0.0.1:$HP -raddr 127.0.0.1:$RP "$T/c0"
$PY wait-craftd 1 127.0.0.1:$HP >/dev/null || die "craftd node0 did not start: $(tail -5 "$T/craftd0.log")"
for i in 1 2; do
    start_bg "$T/craftd$i.log" "$CRAFTD" $CFLAGS -id node$i -haddr 127.0.0.1:$((HP+i)) \
        -raddr 127.0.0.1:$((RP+i)) -join 127.0.0.1:$HP "$T/c$i"
done
out=$($PY wait-craftd 3 127.0.0.1:$HP 127.0.0.1:$((HP+1)) 127.0.0.1:$((HP+2))) ||
    die "craftd cluster not ready: $(tail -5 "$T/craftd1.log")"
eval "$(echo "$out" | sed 's/^/C_/')"
LI=$(addr_index "$C_leader" $HP)
FI=$(addr_index "$C_follower" $HP)
OI=$((3 - LI - FI)) # the other follower
C_other=127.0.0.1:$((HP + OI))
say "craftd: leader $C_leader; idle watchers on followers $C_follower (keys) and $C_other (prefix)"
echo "$CFLAGS" >"$OUT/watch_craftd_flags.txt"

say "craftd idle: $HOLD s without watchers, then $N on distinct keys, $HOLD s"
"$CLIENT" idle -proto craftd -addr "$C_follower" -n "$N" -what keys -pid "$(pid_of $((FI + 1)))" \
    -hold "$HOLD" >"$OUT/watch_idle_craftd_keys.json" || die "craftd idle (keys) failed"
say "craftd idle: $N on one prefix, on the other follower"
"$CLIENT" idle -proto craftd -addr "$C_other" -n "$N" -what prefix -pid "$(pid_of $((OI + 1)))" \
    -hold "$HOLD" >"$OUT/watch_idle_craftd_prefix.json" || die "craftd idle (prefix) failed"
sleep 1 # the node notices the closed streams
for where in follower leader; do
    eval "waddr=\$C_$where"
    say "craftd fan-out: $FAN watchers on the $where, $WRITES writes to the leader"
    "$CLIENT" fanout -proto craftd -addr "$waddr" -waddr "$C_leader" -n "$FAN" -writes "$WRITES" \
        -gap-ms "$GAP" >"$OUT/watch_fan_craftd_$where.json" || die "craftd fan-out ($where) failed"
done
# the same idle watchers on distinct keys with progress events out of the
# way (-watch-progress-ms an hour), on the first follower restarted with it:
# what the watchers cost apart from those events
FPID=$(pid_of $((FI + 1)))
kill "$FPID"
i=0; while kill -0 "$FPID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
JOIN=""; [ "$FI" = 0 ] || JOIN="-join 127.0.0.1:$HP"
start_bg "$T/craftd${FI}q.log" "$CRAFTD" $CFLAGS -watch-progress-ms 3600000 -id node$FI \
    -haddr "$C_follower" -raddr 127.0.0.1:$((RP+FI)) $JOIN "$T/c$FI"
$PY wait-craftd 3 127.0.0.1:$HP 127.0.0.1:$((HP+1)) 127.0.0.1:$((HP+2)) >/dev/null ||
    die "craftd node$FI did not come back: $(tail -5 "$T/craftd${FI}q.log")"
say "craftd idle: $N on distinct keys, no progress events (node$FI restarted with -watch-progress-ms 3600000)"
"$CLIENT" idle -proto craftd -addr "$C_follower" -n "$N" -what keys -pid "$(tail -1 "$PIDS")" \
    -hold "$HOLD" >"$OUT/watch_idle_craftd_quiet.json" || die "craftd idle (no progress) failed"
for i in 0 1 2; do
    cat "$T/craftd$i.log" "$T/craftd${i}q.log" 2>/dev/null | grep -E ' (WARN|ERROR) ' |
        head -20 >"$OUT/watch-craftd$i.warn" || true
done
stop_all

# ---- etcd: 3 members, the same fan-out through the JSON gateway, and the
# idle watchers on distinct keys
if [ "$WITH_ETCD" != 0 ]; then
    ETCD=$(command -v etcd)
    IC="e0=http://127.0.0.1:$((P+1500)),e1=http://127.0.0.1:$((P+1501)),e2=http://127.0.0.1:$((P+1502))"
    for i in 0 1 2; do
        start_bg "$T/etcd$i.log" "$ETCD" --name e$i --data-dir "$T/e$i" \
            --listen-client-urls http://127.0.0.1:$((P+1400+i)) \
            --advertise-client-urls http://127.0.0.1:$((P+1400+i)) \
            --listen-peer-urls http://127.0.0.1:$((P+1500+i)) \
            --initial-advertise-peer-urls http://127.0.0.1:$((P+1500+i)) \
            --initial-cluster "$IC" --initial-cluster-state new --initial-cluster-token craftd-bench-watch \
            --logger zap --log-level warn
    done
    out=$($PY wait-etcd 127.0.0.1:$((P+1400)) 127.0.0.1:$((P+1401)) 127.0.0.1:$((P+1402))) ||
        die "etcd cluster not ready: $(tail -5 "$T/etcd0.log")"
    eval "$(echo "$out" | sed 's/^/E_/')"
    EFI=$(addr_index "$E_follower" $((P + 1400)))
    "$ETCD" --version | sed -n 's/^etcd Version: //p' >"$OUT/watch_etcd_version.txt"
    say "etcd: leader $E_leader"
    say "etcd idle: $N watchers on distinct keys on $E_follower"
    "$CLIENT" idle -proto etcd -addr "$E_follower" -n "$N" -what keys -pid "$(pid_of $((EFI + 1)))" \
        -hold "$HOLD" >"$OUT/watch_idle_etcd_keys.json" || say "etcd idle (keys) failed"
    sleep 1
    for where in follower leader; do
        eval "waddr=\$E_$where"
        say "etcd fan-out: $FAN watchers on the $where, $WRITES writes to the leader"
        "$CLIENT" fanout -proto etcd -addr "$waddr" -waddr "$E_leader" -n "$FAN" -writes "$WRITES" \
            -gap-ms "$GAP" >"$OUT/watch_fan_etcd_$where.json" || say "etcd fan-out ($where) failed"
    done
    stop_all
fi

uptime >"$OUT/watch_load_after.txt"
say "load after: $(cat "$OUT/watch_load_after.txt")"
python3 "$BENCH_DIR/report.py" --watch-fragment "$OUT" "hold=$HOLD" "n=$N" "fan=$FAN" \
    "writes=$WRITES" "gap=$GAP" >"$OUT/watch.md" || die "cannot write the watch report"
if [ $# -eq 0 ]; then
    python3 "$BENCH_DIR/report.py" --splice "$RESULTS" "$OUT/watch.md" ||
        die "cannot put the watch section into $RESULTS"
    say "watch section written into $(basename "$RESULTS")"
fi
