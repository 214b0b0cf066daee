#!/bin/sh
# `make bench`: craftd against etcd 3.4 on loopback, 3-node clusters, wrk with
# 64 connections. Writes bench/RESULTS.md (with gnuplot, the PNGs in
# bench/plots/ it embeds; gnuplot-nox is installed when missing and root) and
# prints its summary. A benchmark,
# not a test: it fails only when something cannot be started or answers wrong.
# Environment knobs: BENCH_DURATION (s per wrk run, 10), BENCH_ROUNDS (3),
# BENCH_NKEYS (keys for the RSS/restart part, 1000000; RSS is also read at a
# tenth and three tenths of them, for the plot of memory against keys),
# BENCH_PORT (31000), BENCH_SKIP_WATCH=1 to skip the watch part (bench/watch.sh,
# its own knobs there; skipped with BENCH_TLS/BENCH_AUTH too),
# BENCH_SKIP_ETCD_RSS=1 to skip etcd's RSS/restart part, BENCH_CRAFTD_FLAGS (extra
# craftd flags for every node, empty by default: craftd runs with its defaults),
# BENCH_RESULTS (the report file, bench/RESULTS.md), BENCH_TLS=1 to run both
# clusters' client side over HTTPS (certificates from a CA made with openssl;
# craftd: -tls-cert/-tls-key/-join-ca, etcd: --cert-file/--key-file; peers stay
# plain; report in bench/RESULTS-tls.md; the RSS part stays plain HTTP),
# BENCH_AUTH=1 to give craftd users (-auth-file with one yescrypt user, every
# request with HTTP Basic: the cost of the check cache; etcd runs without
# users; report in bench/RESULTS-auth.md, or RESULTS-tls-auth.md with both).
# BENCH_BASELINE (a git revision, b2c97d9 by default: the first comparison
# with etcd, before revisions and the ordered map): a craftd built from it
# (git archive, then make, in the run's temporary folder) runs as a third
# 3-node cluster (HTTP P+200.., Raft P+300..) and takes the same craftd
# workloads, back to back with the current build; BENCH_BASELINE= (empty)
# skips it, as do BENCH_TLS and BENCH_AUTH (that revision has neither).
# BENCH_BASELINE_FLAGS: extra flags for the baseline nodes (empty).
# BENCH_FIVE=0 skips the 5-node clusters (craftd HTTP P+250..254, Raft
# P+350..; etcd clients P+1250.., peers P+1350..), which take the write and
# linearizable read workloads in every round. BENCH_SKIP_ETCD=1 runs without
# etcd, as does a machine without it (the report says etcd was not measured).
# Every wrk run reads the CPU time (utime+stime) of each node of its cluster
# before and after it: CPU per 200 answer in the report.
# The 60 s stability run (bench/stability.sh) after the memory part; BENCH_STABILITY=0 skips it.
# BENCH_FAILOVER_RUNS (7): kill -9 runs of bench/failover.py, whose medians
# are appended to the report.
# BENCH_QUICK=1 (`make bench-quick`): the throughput runs alone, 1 round of
# 3 s by default, no baseline, memory, watch, failover or latency part; the report goes
# to build/bench-quick/RESULTS.md.
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH_DIR=$ROOT/bench
export BENCH_DIR
CRAFTD=$ROOT/build/craftd
QUICK=${BENCH_QUICK:-}
if [ -n "$QUICK" ]; then
    BENCH_DURATION=${BENCH_DURATION:-3}
    BENCH_ROUNDS=${BENCH_ROUNDS:-1}
    BENCH_BASELINE=${BENCH_BASELINE-}
    BENCH_RESULTS=${BENCH_RESULTS:-$ROOT/build/bench-quick/RESULTS.md}
    mkdir -p "$(dirname "$BENCH_RESULTS")"
fi
DUR=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
FIVE=${BENCH_FIVE:-1}
[ "$FIVE" != 0 ] || FIVE=""
NKEYS=${BENCH_NKEYS:-1000000}
NREAD=10000
P=${BENCH_PORT:-31000}
CONNS=64
THREADS=2
PY="python3 $BENCH_DIR/helper.py"
CFLAGS_EXTRA=${BENCH_CRAFTD_FLAGS:-}
CFLAGS_PLAIN=$CFLAGS_EXTRA # for the RSS part
TLS=${BENCH_TLS:-}
AUTH=${BENCH_AUTH:-}
AUTHZ=""                    # base64(user:password) of craftd requests
S=http                      # the client scheme of both clusters
ETCD_TLS=""
CURL_TLS=""
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/RESULTS.md}
BASE_REV=${BENCH_BASELINE-b2c97d9}
BASE_FLAGS=${BENCH_BASELINE_FLAGS:-}

say() { echo "bench: $(date +%T) $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# ---- tools (installed when missing and root)
need=""
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v curl >/dev/null 2>&1 || need="$need curl"
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing$need"
        DEBIAN_FRONTEND=noninteractive apt-get install -y $need >/dev/null ||
            { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y $need >/dev/null; } ||
            die "cannot install$need"
    else
        die "missing$need (install them, or run as root)"
    fi
fi
# gnuplot draws the report's plots; without it the report has none
if ! command -v gnuplot >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing gnuplot-nox (for the plots)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y gnuplot-nox >/dev/null 2>&1 ||
            { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y gnuplot-nox >/dev/null 2>&1; } ||
            say "cannot install gnuplot-nox: the report will have no plots"
    else
        say "no gnuplot (apt-get install gnuplot-nox): the report will have no plots"
    fi
fi
# etcd is compared with, not needed: without it the craftd parts still run
ETCD_NOTE=""   # why etcd is not measured
if [ -n "${BENCH_SKIP_ETCD:-}" ]; then
    ETCD_NOTE="BENCH_SKIP_ETCD is set"
elif ! command -v etcd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing etcd-server"
        DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >/dev/null 2>&1 ||
            { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >/dev/null 2>&1; } ||
            ETCD_NOTE="no etcd on this machine (cannot install etcd-server)"
    else
        ETCD_NOTE="no etcd on this machine (apt-get install etcd-server)"
    fi
fi
ETCD=""
ETCD_VERSION=""
if [ -z "$ETCD_NOTE" ]; then
    ETCD=$(command -v etcd)
    ETCD_VERSION=$("$ETCD" --version 2>/dev/null | sed -n 's/^etcd Version: //p')
else
    say "etcd not measured: $ETCD_NOTE"
fi
WATCH_ETCD=${BENCH_WATCH_ETCD:-1}  # the later parts skip etcd too without it
LAT_ETCD=${LAT_ETCD:-1}
[ -n "$ETCD" ] || { WATCH_ETCD=0; LAT_ETCD=0; }
[ -x "$CRAFTD" ] || die "$CRAFTD is missing (run make first)"

# ---- ports must be free
python3 - "$P" <<'PYEOF' || die "a port in use on 127.0.0.1 (set BENCH_PORT to another base)"
import socket, sys
p = int(sys.argv[1])
ports = [b + off for off in (0, 1, 2, 10, 100, 101, 102, 110) for b in (p, p + 1000)]
ports += [p + off for off in (200, 201, 202, 300, 301, 302)]  # the baseline cluster
ports += [b + off for off in range(250, 255) for b in (p, p + 100, p + 1000, p + 1100)]  # 5 nodes
for port in ports:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        sys.exit("bench: port %d is in use" % port)
    finally:
        s.close()
PYEOF

T=$(mktemp -d /tmp/craftd-bench.XXXXXX)
PIDS=$T/pids
: >"$PIDS"
OUT=$T/out
mkdir -p "$OUT"
uptime >"$OUT/load_before.txt"
. "$BENCH_DIR/cluster.sh"
cleanup() {
    stop_all
    if [ -n "${KEEP_LOGS:-}" ]; then say "logs kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- BENCH_TLS=1: a CA and one certificate for 127.0.0.1 that every node
# and member serves (P-256 ECDSA, as a deployment would use)
if [ -n "$TLS" ]; then
    command -v openssl >/dev/null 2>&1 || die "BENCH_TLS=1 needs openssl"
    K=$T/pki
    mkdir -p "$K"
    (
        cd "$K"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout node.key -out node.csr -subj /CN=bench-node
        printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >node.ext
        openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out node.pem -days 2 -extfile node.ext
    ) >"$T/pki.log" 2>&1 || die "cannot make certificates: $(tail -3 "$T/pki.log")"
    S=https
    CFLAGS_EXTRA="$CFLAGS_EXTRA -tls-cert $K/node.pem -tls-key $K/node.key -join-ca $K/ca.pem"
    ETCD_TLS="--cert-file $K/node.pem --key-file $K/node.key"
    CURL_TLS="--cacert $K/ca.pem"
    export BENCH_CA=$K/ca.pem
    RESULTS=${BENCH_RESULTS:-$BENCH_DIR/RESULTS-tls.md}
    say "TLS: craftd and etcd serve HTTPS (TLS 1.2+, ECDSA P-256)"
fi

# ---- BENCH_AUTH=1: craftd users; every craftd request carries credentials
if [ -n "$AUTH" ]; then
    if command -v mkpasswd >/dev/null 2>&1; then
        H=$(echo bench-pass | mkpasswd -m yescrypt -s)
    else
        H=$(openssl passwd -6 bench-pass)
    fi
    printf 'bench:%s:admin\n' "$H" >"$T/users"
    chmod 600 "$T/users"
    CFLAGS_EXTRA="$CFLAGS_EXTRA -auth-file $T/users -join-user bench:bench-pass"
    AUTHZ=$(printf 'bench:bench-pass' | base64) # "Basic <this>"
    if [ -n "$TLS" ]; then
        RESULTS=${BENCH_RESULTS:-$BENCH_DIR/RESULTS-tls-auth.md}
    else
        RESULTS=${BENCH_RESULTS:-$BENCH_DIR/RESULTS-auth.md}
    fi
    say "users: craftd checks HTTP Basic on every request ($(echo "$H" | cut -c1-3) hash)"
fi
PYC="env BENCH_AUTHZ=$AUTHZ $PY" # helper commands against craftd

# ---- the baseline craftd, built from BENCH_BASELINE with its own Makefile
# (the same compiler and flags as the current build; not the caller's make
# variables, so that `make O=...` does not reach it)
BASELINE=""    # its binary, once built
BASE_NOTE=""   # why there is none
if [ -z "$BASE_REV" ]; then
    BASE_NOTE="BENCH_BASELINE is empty"
elif [ -n "$TLS$AUTH" ]; then
    BASE_NOTE="BENCH_TLS/BENCH_AUTH: $BASE_REV serves neither HTTPS nor users"
else
    BASE_SHA=$(git -C "$ROOT" rev-parse -q --verify "$BASE_REV^{commit}") ||
        die "no revision $BASE_REV in this repository (a shallow clone? git fetch --unshallow), or set BENCH_BASELINE= to skip it"
    say "building the baseline craftd from $BASE_REV ($(echo "$BASE_SHA" | cut -c1-12))"
    mkdir -p "$T/baseline-src"
    { git -C "$ROOT" archive "$BASE_SHA" | tar -x -C "$T/baseline-src" &&
        env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$T/baseline-src" -s -j2 O=build build/craftd
    } >"$T/baseline-build.log" 2>&1 || die "cannot build $BASE_REV: $(tail -5 "$T/baseline-build.log")"
    BASELINE=$T/baseline-src/build/craftd
fi
[ -z "$BASE_NOTE" ] || say "no baseline: $BASE_NOTE"

# ---- the clusters: craftd 3 nodes (and the baseline's 3), etcd 3 members,
# and with BENCH_FIVE 5 of each; each one's leader= and follower= become
# <TAG>_leader and <TAG>_follower, and are kept in $OUT/<tag>.roles for the
# report's CPU figures
cluster_up() { # tag kind(craftd|etcd) binary n port1 port2 flags...
    tag=$1; kind=$2; shift 2
    out=$(${kind}_cluster "$tag" "$@") || exit 1
    echo "$out" >"$OUT/$tag.roles"
    eval "$(echo "$out" | sed "s/^/$(echo "$tag" | tr a-z A-Z)_/")"
}
cluster_up craftd craftd "$CRAFTD" 3 $P $((P+100)) $CFLAGS_EXTRA
say "craftd: 3 voters, leader $CRAFTD_leader, reads on follower $CRAFTD_follower"
if [ -n "$BASELINE" ]; then
    cluster_up baseline craftd "$BASELINE" 3 $((P+200)) $((P+300)) $BASE_FLAGS
    say "baseline $BASE_REV: 3 voters, leader $BASELINE_leader, reads on follower $BASELINE_follower"
fi
if [ -n "$FIVE" ]; then
    cluster_up craftd5 craftd "$CRAFTD" 5 $((P+250)) $((P+350)) $CFLAGS_EXTRA
    say "craftd 5 nodes: 5 voters, leader $CRAFTD5_leader, reads on follower $CRAFTD5_follower"
fi
if [ -n "$ETCD" ]; then
    cluster_up etcd etcd "$ETCD" 3 $((P+1000)) $((P+1100)) $ETCD_TLS
    say "etcd $ETCD_VERSION: healthy, leader $ETCD_leader, reads on follower $ETCD_follower"
    if [ -n "$FIVE" ]; then
        cluster_up etcd5 etcd "$ETCD" 5 $((P+1250)) $((P+1350)) $ETCD_TLS
        say "etcd 5 members: healthy, leader $ETCD5_leader, reads on follower $ETCD5_follower"
    fi
fi

# ---- preload the read keys and check a sample of each workload
for tag in craftd ${BASELINE:+baseline} ${FIVE:+craftd5}; do
    eval "ld=\$$(echo $tag | tr a-z A-Z)_leader fl=\$$(echo $tag | tr a-z A-Z)_follower"
    $PYC preload-craftd "$ld" $NREAD || die "$tag preload failed"
    $PYC check-craftd "$ld" "$fl" $NREAD || die "$tag sample check failed"
done
for tag in ${ETCD:+etcd} ${ETCD:+${FIVE:+etcd5}}; do
    eval "ld=\$$(echo $tag | tr a-z A-Z)_leader fl=\$$(echo $tag | tr a-z A-Z)_follower"
    $PY preload-etcd "$ld" $NREAD || die "$tag preload failed"
    $PY check-etcd "$ld" "$fl" $NREAD || die "$tag sample check failed"
done

# ---- wrk runs, interleaved
WRK="wrk -t$THREADS -c$CONNS -d${DUR}s --latency"
{
    echo "craftd_put	$WRK -s bench/craftd_put.lua $S://<craftd leader>"
    [ -z "$ETCD" ] || echo "etcd_put	$WRK -s bench/etcd_put.lua $S://<etcd leader>"
    echo "craftd_get_lin	BENCH_LEVEL=linearizable $WRK -s bench/craftd_get.lua $S://<craftd follower>"
    [ -z "$ETCD" ] || echo "etcd_range_lin	$WRK -s bench/etcd_range.lua $S://<etcd follower>"
    echo "craftd_get_none	BENCH_LEVEL=none $WRK -s bench/craftd_get.lua $S://<craftd follower>"
    [ -z "$ETCD" ] || echo "etcd_range_ser	BENCH_SERIALIZABLE=1 $WRK -s bench/etcd_range.lua $S://<etcd follower>"
    [ -z "$BASELINE" ] || echo "baseline_*	each craftd_* command on the $BASE_REV cluster${BASE_FLAGS:+ (flags $BASE_FLAGS)}, back to back with it"
    [ -z "$FIVE" ] || echo "craftd5_*	craftd_put and craftd_get_lin on the 5-node craftd cluster"
    [ -z "$FIVE" ] || [ -z "$ETCD" ] || echo "etcd5_*	etcd_put and etcd_range_lin on the 5-member etcd cluster"
    echo "(CPU)	before and after each run: utime+stime of every node of its cluster, /proc/<pid>/stat fields 14 and 15"
} >"$OUT/commands.tsv"

run_wrk() { # name round tag url script [VAR=value...]: one wrk run against
    # cluster <tag>, with the CPU time of its nodes before and after
    name=$1; round=$2; ctag=$3; url=$4; script=$5; shift 5
    say "round $round: $name"
    cpu_snap "$ctag" >"$OUT/$name.$round.cpu0"
    env BENCH_RUN="$round" BENCH_NREAD=$NREAD BENCH_AUTHZ="$AUTHZ" "$@" \
        $WRK -s "$BENCH_DIR/$script" "$url" >"$OUT/$name.$round.txt" 2>&1 ||
        say "wrk failed for $name round $round: $(tail -3 "$OUT/$name.$round.txt")"
    cpu_snap "$ctag" >"$OUT/$name.$round.cpu1"
    grep '^BENCHJSON ' "$OUT/$name.$round.txt" | sed 's/^BENCHJSON //' >"$OUT/$name.$round.json" || true
}
craftd_runs() { # round workload role script [VAR=value...]: the current build
    # and the baseline back to back, the baseline first in even rounds so
    # that neither always runs on the heels of the other
    rnd=$1; w=$2; role=$3; script=$4; shift 4
    tags=craftd
    if [ -n "$BASELINE" ]; then
        if [ $((rnd % 2)) = 0 ]; then tags="baseline craftd"; else tags="craftd baseline"; fi
    fi
    for tag in $tags; do
        eval "addr=\$$(echo $tag | tr a-z A-Z)_$role"
        run_wrk ${tag}_$w "$rnd" $tag "$S://$addr" "$script" "$@"
        check_alive $tag "${tag}_$w round $rnd" "$OUT"
    done
}
five_runs() { # round workload role craftd-script etcd-workload etcd-script [VAR=value...]:
    # the 5-node clusters, when there are
    rnd=$1; w=$2; role=$3; cs=$4; ew=$5; es=$6; shift 6
    [ -n "$FIVE" ] || return 0
    eval "addr=\$CRAFTD5_$role"
    run_wrk craftd5_$w "$rnd" craftd5 "$S://$addr" "$cs" "$@"
    check_alive craftd5 "craftd5_$w round $rnd" "$OUT"
    [ -n "$ETCD" ] || return 0
    eval "addr=\$ETCD5_$role"
    run_wrk etcd5_$ew "$rnd" etcd5 "$S://$addr" "$es"
}
etcd_run() { # name round role script [VAR=value...]
    [ -n "$ETCD" ] || return 0
    n=$1; rnd=$2; role=$3; shift 3
    eval "addr=\$ETCD_$role"
    run_wrk "$n" "$rnd" etcd "$S://$addr" "$@"
}
r=1
while [ $r -le "$ROUNDS" ]; do
    craftd_runs $r put leader craftd_put.lua
    etcd_run etcd_put $r leader etcd_put.lua
    five_runs $r put leader craftd_put.lua put etcd_put.lua
    craftd_runs $r get_lin follower craftd_get.lua BENCH_LEVEL=linearizable
    etcd_run etcd_range_lin $r follower etcd_range.lua
    five_runs $r get_lin follower craftd_get.lua range_lin etcd_range.lua BENCH_LEVEL=linearizable
    craftd_runs $r get_none follower craftd_get.lua BENCH_LEVEL=none
    etcd_run etcd_range_ser $r follower etcd_range.lua BENCH_SERIALIZABLE=1
    r=$((r+1))
done

# were the clusters still whole after the load? (and their WARN/ERROR lines)
for tag in craftd ${BASELINE:+baseline} ${FIVE:+craftd5}; do
    n=$(wc -l <"$T/$tag.nodes")
    $PYC wait-craftd-quick "$n" $(cluster_addrs $tag) >"$OUT/${tag}_after.txt" 2>&1 ||
        say "$tag cluster not healthy after the wrk runs"
    i=0
    while [ $i -lt "$n" ]; do
        grep -E ' (WARN|ERROR) ' "$T/$tag$i.log" | head -20 >"$OUT/$tag$i.warn" || true
        i=$((i+1))
    done
done
curl -s $CURL_TLS ${AUTH:+-u bench:bench-pass} "$S://127.0.0.1:$P/status" >"$OUT/craftd_status_after.json" 2>/dev/null || true

# ---- stop the clusters before the memory part (by PID)
stop_all

# ---- watchers, idle and fan-out (its own clusters; bench/watch.sh)
[ -n "${BENCH_SKIP_WATCH:-}$TLS$AUTH$QUICK" ] ||
    BENCH_WATCH_ETCD=$WATCH_ETCD sh "$BENCH_DIR/watch.sh" "$OUT" || say "watch part failed"

# ---- RSS with 10^6 keys, listing 1,000 of them (GET /keys; skipped if the
# node answers 404) and restart-to-serving time (single node)
if [ -z "$QUICK" ]; then
    say "craftd: loading $NKEYS keys into a single node"
    env -u BENCH_CA $PY rss-craftd "$CRAFTD" $((P+10)) "$T/rc" "$T/rss-craftd.log" "$PIDS" "$NKEYS" $CFLAGS_PLAIN \
        >"$OUT/rss_craftd.json" || say "craftd RSS part failed: $(tail -5 "$T/rss-craftd.log")"
    grep -E ' (WARN|ERROR) ' "$T/rss-craftd.log" | head -20 >"$OUT/rss-craftd.warn" || true
    rm -rf "$T/rc"
    # the same map under random overwrites: snapshots and their writer's
    # copied pages (bench/cow.py, docs/kv.md)
    say "craftd: memory during snapshots under overwrites of $NKEYS keys"
    env -u BENCH_CA python3 "$BENCH_DIR/cow.py" "$CRAFTD" $((P+20)) "$T/rw" "$T/cow-craftd.log" \
        "$PIDS" "$NKEYS" "${BENCH_COW_SECONDS:-30}" $CFLAGS_PLAIN \
        >"$OUT/cow_craftd.json" || say "craftd snapshot-memory part failed: $(tail -5 "$T/cow-craftd.log")"
    rm -rf "$T/rw"
fi
if [ -z "${BENCH_SKIP_ETCD_RSS:-}$QUICK" ] && [ -n "$ETCD" ]; then
    say "etcd: loading $NKEYS keys into a single member"
    env -u BENCH_CA $PY rss-etcd "$ETCD" $((P+1010)) "$T/re" "$T/rss-etcd.log" "$PIDS" "$NKEYS" \
        >"$OUT/rss_etcd.json" || say "etcd RSS part failed: $(tail -5 "$T/rss-etcd.log")"
    rm -rf "$T/re"
fi

# ---- leader changes under 60 s of full write load (bench/stability.sh;
# BENCH_STABILITY=0 skips it)
[ "${BENCH_STABILITY:-1}" = 0 ] || [ -n "$QUICK" ] || STAB_PORT=$((P+400)) CRAFTD=$CRAFTD STAB_FLAGS=$CFLAGS_PLAIN sh "$BENCH_DIR/stability.sh" | tee "$OUT/stability.txt" >&2 || say "stability run failed"

# ---- report
uptime >"$OUT/load_after.txt"
python3 "$BENCH_DIR/report.py" "$OUT" "$RESULTS" "tls=${TLS:+1}" "auth=${AUTH:+1}" "datadir=$T" \
    "conns=$CONNS" "threads=$THREADS" "duration=$DUR" "rounds=$ROUNDS" "nread=$NREAD" \
    "nkeys=$NKEYS" "craftd_flags=$CFLAGS_PLAIN" "etcd_version=$ETCD_VERSION" "craftd=build/craftd" \
    "baseline=${BASELINE:+$BASE_REV}" "baseline_sha=${BASELINE:+$BASE_SHA}" "baseline_note=$BASE_NOTE" \
    "baseline_flags=$BASE_FLAGS" "etcd_note=$ETCD_NOTE" "five=${FIVE:+1}" "quick=${QUICK:+1}"

# ---- failover: kill -9 of the leader, appended to the report (bench/failover.py)
[ -n "$QUICK" ] || python3 "$BENCH_DIR/failover.py" -n "${BENCH_FAILOVER_RUNS:-7}" \
    --craftd "$CRAFTD" --port $((P+600)) --markdown "$RESULTS" -- $CFLAGS_PLAIN >&2 ||
    say "failover part failed"

# ---- single-client latency, appended to the report (bench/latency.sh)
[ -n "$QUICK" ] || LAT_ETCD=$LAT_ETCD LAT_RESULTS="$RESULTS" LAT_PORT=$((P+500)) \
    make -s -C "$ROOT" bench-latency || say "latency part failed"
