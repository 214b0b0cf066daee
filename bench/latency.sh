#!/bin/sh
# `make bench-latency`: single-client latency on 3-node loopback clusters, one
# keep-alive connection, sequential requests (bench/latency.c). Per round and
# cluster: a write to the leader, a linearizable read on a follower, a
# level=none read on the follower, a linearizable read on the leader; for
# etcd (when installed) the same through its JSON gateway (put, linearizable
# range and serializable range on a follower). Prints one line per run and a
# table of medians over the rounds; a benchmark, not a test.
# Environment knobs: LAT_N (requests per run, 2000), LAT_ROUNDS (5),
# LAT_PORT (base port, 31500: craftd HTTP P..P+2, Raft P+100..; the A/B
# cluster P+200.., Raft P+300..; etcd P+1000.., peers P+1100..),
# LAT_BASE (another craftd binary: a second cluster run in the same rounds,
# interleaved A/B/B/A, with per-round ratios), LAT_ETCD=0 to skip etcd,
# LAT_FLAGS (extra craftd flags), LAT_OUT (a file for the raw lines),
# LAT_RESULTS (a Markdown report the table is appended to; bench/run.sh
# passes its RESULTS.md).
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
LAT=$ROOT/build/latency
CRAFTD=${CRAFTD:-$ROOT/build/craftd}
N=${LAT_N:-2000}
ROUNDS=${LAT_ROUNDS:-5}
P=${LAT_PORT:-31500}
BASE=${LAT_BASE:-}
FLAGS=${LAT_FLAGS:-}
PY="python3 $ROOT/bench/helper.py"
T=$(mktemp -d /tmp/craftd-lat.XXXXXX)
PIDS=$T/pids
RAW=${LAT_OUT:-$T/raw}
: >"$PIDS"
: >"$RAW"

say() { echo "latency: $(date +%T) $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
PYC=$PY; S=http
. "$ROOT/bench/cluster.sh" # start_bg, craftd_cluster, etcd_cluster, stop_all
cleanup() {
    stop_all
    if [ -n "${KEEP_LOGS:-}" ]; then say "logs kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$LAT" ] || die "$LAT is missing (make bench-latency builds it)"
[ -x "$CRAFTD" ] || die "$CRAFTD is missing (run make first)"

run() { # tag round name addr method path [body]
    tag=$1; rnd=$2; shift 2
    line=$("$LAT" "$@") || die "$tag round $rnd: $1 failed"
    echo "$tag r$rnd $line" | tee -a "$RAW"
}

craftd_round() { # tag round leader follower
    tag=$1; rnd=$2; ld=$3; fl=$4
    run "$tag" "$rnd" write "$ld" "$N" POST /key "{\"lat$rnd-%d\":\"0123456789abcdef\"}"
    run "$tag" "$rnd" read_lin_follower "$fl" "$N" GET "/key/lat$rnd-7?level=linearizable"
    run "$tag" "$rnd" read_none_follower "$fl" "$N" GET "/key/lat$rnd-7?level=none"
    run "$tag" "$rnd" read_lin_leader "$ld" "$N" GET "/key/lat$rnd-7?level=linearizable"
}

out=$(craftd_cluster a "$CRAFTD" 3 $P $((P+100)) $FLAGS) || exit 1
eval "$(echo "$out" | sed 's/^/A_/')"
say "craftd ($CRAFTD): leader $A_leader, follower $A_follower"
if [ -n "$BASE" ]; then
    out=$(craftd_cluster b "$BASE" 3 $((P+200)) $((P+300)) $FLAGS) || exit 1
    eval "$(echo "$out" | sed 's/^/B_/')"
    say "craftd B ($BASE): leader $B_leader, follower $B_follower"
fi
ETCD=""
if [ "${LAT_ETCD:-1}" != 0 ] && command -v etcd >/dev/null 2>&1; then
    ETCD=$(command -v etcd)
    out=$(etcd_cluster etcd "$ETCD" 3 $((P+1000)) $((P+1100))) || exit 1
    eval "$(echo "$out" | sed 's/^/E_/')"
    say "etcd: leader $E_leader, follower $E_follower"
fi

# a 10-byte key and a 16-byte value, as for craftd
EK=$(printf 'lat-etcd-k' | base64)
EV=$(printf '0123456789abcdef' | base64)
for rnd in $(seq 1 "$ROUNDS"); do
    if [ -z "$BASE" ]; then
        craftd_round a "$rnd" "$A_leader" "$A_follower"
    elif [ $((rnd % 2)) = 1 ]; then
        craftd_round a "$rnd" "$A_leader" "$A_follower"
        craftd_round b "$rnd" "$B_leader" "$B_follower"
    else
        craftd_round b "$rnd" "$B_leader" "$B_follower"
        craftd_round a "$rnd" "$A_leader" "$A_follower"
    fi
    if [ -n "$ETCD" ]; then
        run etcd "$rnd" write "$E_leader" "$N" POST /v3/kv/put "{\"key\":\"$EK\",\"value\":\"$EV\"}"
        run etcd "$rnd" read_lin_follower "$E_follower" "$N" POST /v3/kv/range "{\"key\":\"$EK\"}"
        run etcd "$rnd" read_ser_follower "$E_follower" "$N" POST /v3/kv/range \
            "{\"key\":\"$EK\",\"serializable\":true}"
        run etcd "$rnd" read_lin_leader "$E_leader" "$N" POST /v3/kv/range "{\"key\":\"$EK\"}"
    fi
done

# medians over the rounds of each run's p50 and p99; per-round ratios b/a
{
echo "medians over $ROUNDS rounds of $N requests (microseconds; a = ${CRAFTD#"$ROOT"/}${BASE:+, b = ${BASE#"$ROOT"/}})"
awk '
function med(s,   n, v, i, j, t) {
    n = split(s, v, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{
    k = $1 " " $3
    for (f = 4; f <= NF; f++) { split($f, kv, "="); val[kv[1]] = kv[2] }
    p50[k] = p50[k] " " val["p50"]; p99[k] = p99[k] " " val["p99"]
    r50[$2 " " $3, $1] = val["p50"]; r99[$2 " " $3, $1] = val["p99"]
    if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
    if (!(($2 " " $3) in rs)) { rs[$2 " " $3] = 1; ro[++nr] = $2 " " $3 }
}
END {
    printf "%-26s %10s %10s\n", "cluster workload", "p50", "p99"
    for (i = 1; i <= nk; i++) printf "%-26s %10.1f %10.1f\n", order[i], med(p50[order[i]]), med(p99[order[i]])
    hdr = 0
    for (i = 1; i <= nr; i++) if ((ro[i], "b") in r50) {
        if (!hdr) { print ""; print "per-round ratios b/a (p50, p99)"; hdr = 1 }
        printf "%-26s %6.2f %6.2f\n", ro[i], r50[ro[i], "b"] / r50[ro[i], "a"], r99[ro[i], "b"] / r99[ro[i], "a"]
    }
}' "$RAW"
} >"$T/summary"
echo
cat "$T/summary"
if [ -n "${LAT_RESULTS:-}" ]; then
    {
        echo
        echo "## Single-client latency (make bench-latency: one keep-alive connection, sequential requests)"
        echo
        echo '```'
        cat "$T/summary"
        echo '```'
    } >>"$LAT_RESULTS"
fi
