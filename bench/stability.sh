#!/bin/sh
# `make bench-stability`: does a 3-node cluster keep its leader under full
# write load? wrk with 64 connections of POST /key to the leader for
# STAB_DURATION seconds (60), snapshots every STAB_SNAPSHOT entries (2000, so
# several are taken and compacted during the run), then the number of leader
# changes (the term on every node before and after, and the sum of
# craftd_raft_leader_changes_total). Prints key=value lines; exits 1 if the
# leader changed and STAB_STRICT=1. Knobs: STAB_PORT (31400: HTTP P..P+2,
# Raft P+100..P+102), STAB_FLAGS (extra craftd flags, e.g. "-tick-ms 50
# -election-ticks 20"), CRAFTD (build/craftd), KEEP_LOGS=1.
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
CRAFTD=${CRAFTD:-$ROOT/build/craftd}
DUR=${STAB_DURATION:-60}
P=${STAB_PORT:-31400}
SNAP=${STAB_SNAPSHOT:-2000}
FLAGS=${STAB_FLAGS:-}
export BENCH_DIR=$ROOT/bench

say() { echo "stability: $(date +%T) $*" >&2; }
die() { say "ERROR: $*"; exit 2; }
command -v wrk >/dev/null 2>&1 || die "wrk is missing (apt-get install wrk)"
[ -x "$CRAFTD" ] || die "$CRAFTD is missing (run make first)"

T=$(mktemp -d /tmp/craftd-stability.XXXXXX)
PIDS=""
cleanup() {
    for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
    for pid in $PIDS; do
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ -n "${KEEP_LOGS:-}" ]; then say "logs kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # start <i> [-join addr]
    i=$1; shift
    # shellcheck disable=SC2086 # FLAGS is a list of flags
    "$CRAFTD" -id "node$i" -haddr "127.0.0.1:$((P + i))" -raddr "127.0.0.1:$((P + 100 + i))" \
        -snapshot-threshold "$SNAP" "$@" $FLAGS "$T/node$i" >"$T/node$i.log" 2>&1 &
    PIDS="$PIDS $!"
}

start 0
python3 "$BENCH_DIR/helper.py" wait-craftd 1 "127.0.0.1:$P" >/dev/null ||
    die "node0 did not start: $(tail -3 "$T/node0.log")"
start 1 -join "127.0.0.1:$P"
start 2 -join "127.0.0.1:$P"
ADDRS="127.0.0.1:$P 127.0.0.1:$((P + 1)) 127.0.0.1:$((P + 2))"
# shellcheck disable=SC2086
LEADER=$(python3 "$BENCH_DIR/helper.py" wait-craftd 3 $ADDRS | sed -n 's/^leader=//p')
[ -n "$LEADER" ] || die "no 3-node cluster: $(tail -3 "$T/node1.log")"

terms() { # the term each node reports, space-separated
    for a in $ADDRS; do
        curl -s -m 5 "http://$a/status" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["term"])' 2>/dev/null ||
            echo "?"
    done | tr '\n' ' '
}
changes() { # the sum of every node's craftd_raft_leader_changes_total
    for a in $ADDRS; do
        curl -s -m 5 "http://$a/metrics" | sed -n 's/^craftd_raft_leader_changes_total //p'
    done | awk '{s += $1} END {print s + 0}'
}

BEFORE=$(terms)
C0=$(changes)
say "leader $LEADER, terms $BEFORE; wrk -c64 for ${DUR}s, snapshots every $SNAP entries${FLAGS:+, flags $FLAGS}"
wrk -t2 -c64 -d"${DUR}s" -s "$BENCH_DIR/craftd_put.lua" "http://$LEADER" >"$T/wrk.txt" 2>&1 ||
    die "wrk failed: $(tail -3 "$T/wrk.txt")"
AFTER=$(terms)
C1=$(changes)
SNAPS=$(cat "$T"/node*.log | grep -c "snapshot at index" || true)
RPS=$(sed -n 's/^Requests\/sec: *//p' "$T/wrk.txt")
NON2XX=$(sed -n 's/^ *Non-2xx or 3xx responses: *//p' "$T/wrk.txt")
echo "flags=$FLAGS"
echo "duration_s=$DUR"
echo "requests_per_s=$RPS"
echo "non_2xx=${NON2XX:-0}"
echo "snapshots=$SNAPS"
echo "terms_before=$BEFORE"
echo "terms_after=$AFTER"
echo "leader_changes=$((C1 - C0))"
if [ "$BEFORE" != "$AFTER" ] || [ "$C1" != "$C0" ]; then
    say "the leader changed during the run"
    [ -z "${STAB_STRICT:-}" ] || exit 1
fi
