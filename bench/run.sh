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
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH_DIR=$ROOT/bench
export BENCH_DIR
CRAFTD=$ROOT/build/craftd
DUR=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
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
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
command -v etcdctl >/dev/null 2>&1 || need="$need etcd-client"
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
[ -x "$CRAFTD" ] || die "$CRAFTD is missing (run make first)"
ETCD=$(command -v etcd)
ETCD_VERSION=$("$ETCD" --version 2>/dev/null | sed -n 's/^etcd Version: //p')

# ---- ports must be free
python3 - "$P" <<'PYEOF' || die "a port in use on 127.0.0.1 (set BENCH_PORT to another base)"
import socket, sys
p = int(sys.argv[1])
ports = [b + off for off in (0, 1, 2, 10, 100, 101, 102, 110) for b in (p, p + 1000)]
ports += [p + off for off in (200, 201, 202, 300, 301, 302)]  # the baseline cluster
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
cleanup() {
    for pid in $(cat "$PIDS" 2>/dev/null); do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $(cat "$PIDS" 2>/dev/null); do
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        kill -9 "$pid" 2>/dev/null || true
    done
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

start_bg() { # logfile argv...: starts argv in the background, remembers its PID
    log=$1; shift
    "$@" >"$log" 2>&1 &
    echo $! >>"$PIDS"
}

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

craftd_cluster() { # tag binary http-port raft-port flags...: 3 nodes, the first
    # bootstraps, the others join it; logs and PID files $T/<tag><i>.log/.pid;
    # prints leader=<addr> and follower=<addr>
    tag=$1; bin=$2; hp=$3; rp=$4; shift 4
    start_bg "$T/${tag}0.log" "$bin" "$@" -id node0 -haddr 127.0.0.1:$hp -raddr 127.0.0.1:$rp "$T/${tag}-d0"
    echo $! >"$T/${tag}0.pid"
    $PYC wait-craftd 1 127.0.0.1:$hp >/dev/null || die "$tag node0 did not start: $(tail -5 "$T/${tag}0.log")"
    for i in 1 2; do
        start_bg "$T/$tag$i.log" "$bin" "$@" -id node$i -haddr 127.0.0.1:$((hp+i)) \
            -raddr 127.0.0.1:$((rp+i)) -join 127.0.0.1:$hp "$T/$tag-d$i"
        echo $! >"$T/$tag$i.pid"
    done
    $PYC wait-craftd 3 127.0.0.1:$hp 127.0.0.1:$((hp+1)) 127.0.0.1:$((hp+2)) ||
        die "$tag cluster not ready: $(tail -5 "$T/${tag}1.log")"
}

# ---- craftd: 3 nodes (and the baseline's 3)
C0=127.0.0.1:$P; C1=127.0.0.1:$((P+1)); C2=127.0.0.1:$((P+2))
out=$(craftd_cluster craftd "$CRAFTD" $P $((P+100)) $CFLAGS_EXTRA) || exit 1
eval "$(echo "$out" | sed 's/^/CRAFTD_/')"
say "craftd: 3 voters, leader $CRAFTD_leader, reads on follower $CRAFTD_follower"
if [ -n "$BASELINE" ]; then
    out=$(craftd_cluster baseline "$BASELINE" $((P+200)) $((P+300)) $BASE_FLAGS) || exit 1
    eval "$(echo "$out" | sed 's/^/BASELINE_/')"
    say "baseline $BASE_REV: 3 voters, leader $BASELINE_leader, reads on follower $BASELINE_follower"
fi

# ---- etcd: 3 members
E0=127.0.0.1:$((P+1000)); E1=127.0.0.1:$((P+1001)); E2=127.0.0.1:$((P+1002))
IC="e0=http://127.0.0.1:$((P+1100)),e1=http://127.0.0.1:$((P+1101)),e2=http://127.0.0.1:$((P+1102))"
for i in 0 1 2; do
    start_bg "$T/etcd$i.log" "$ETCD" --name e$i --data-dir "$T/e$i" \
        --listen-client-urls $S://127.0.0.1:$((P+1000+i)) \
        --advertise-client-urls $S://127.0.0.1:$((P+1000+i)) $ETCD_TLS \
        --listen-peer-urls http://127.0.0.1:$((P+1100+i)) \
        --initial-advertise-peer-urls http://127.0.0.1:$((P+1100+i)) \
        --initial-cluster "$IC" --initial-cluster-state new --initial-cluster-token craftd-bench \
        --logger zap --log-level warn
done
out=$($PY wait-etcd "$E0" "$E1" "$E2") || die "etcd cluster not ready: $(tail -5 "$T/etcd0.log")"
eval "$(echo "$out" | sed 's/^/ETCD_/')"
say "etcd $ETCD_VERSION: healthy, leader $ETCD_leader, reads on follower $ETCD_follower"

# ---- preload the read keys and check a sample of each workload
$PYC preload-craftd "$CRAFTD_leader" $NREAD || die "craftd preload failed"
$PY preload-etcd "$ETCD_leader" $NREAD || die "etcd preload failed"
$PYC check-craftd "$CRAFTD_leader" "$CRAFTD_follower" $NREAD || die "craftd sample check failed"
if [ -n "$BASELINE" ]; then
    $PY preload-craftd "$BASELINE_leader" $NREAD || die "baseline preload failed"
    $PY check-craftd "$BASELINE_leader" "$BASELINE_follower" $NREAD || die "baseline sample check failed"
fi
$PY check-etcd "$ETCD_leader" "$ETCD_follower" $NREAD || die "etcd sample check failed"

# ---- wrk runs, interleaved
WRK="wrk -t$THREADS -c$CONNS -d${DUR}s --latency"
{
    echo "craftd_put	$WRK -s bench/craftd_put.lua $S://<craftd leader>"
    echo "etcd_put	$WRK -s bench/etcd_put.lua $S://<etcd leader>"
    echo "craftd_get_lin	BENCH_LEVEL=linearizable $WRK -s bench/craftd_get.lua $S://<craftd follower>"
    echo "etcd_range_lin	$WRK -s bench/etcd_range.lua $S://<etcd follower>"
    echo "craftd_get_none	BENCH_LEVEL=none $WRK -s bench/craftd_get.lua $S://<craftd follower>"
    echo "etcd_range_ser	BENCH_SERIALIZABLE=1 $WRK -s bench/etcd_range.lua $S://<etcd follower>"
    [ -z "$BASELINE" ] || echo "baseline_*	each craftd_* command on the $BASE_REV cluster${BASE_FLAGS:+ (flags $BASE_FLAGS)}, back to back with it"
} >"$OUT/commands.tsv"

run_wrk() { # name round url script [VAR=value...]
    name=$1; round=$2; url=$3; script=$4; shift 4
    say "round $round: $name"
    env BENCH_RUN="$round" BENCH_NREAD=$NREAD BENCH_AUTHZ="$AUTHZ" "$@" \
        $WRK -s "$BENCH_DIR/$script" "$url" >"$OUT/$name.$round.txt" 2>&1 ||
        say "wrk failed for $name round $round: $(tail -3 "$OUT/$name.$round.txt")"
    grep '^BENCHJSON ' "$OUT/$name.$round.txt" | sed 's/^BENCHJSON //' >"$OUT/$name.$round.json" || true
}
check_alive() { # tag what: after a run, did a node of cluster <tag> die? (recorded once per node)
    for i in 0 1 2; do
        pid=$(cat "$T/$1$i.pid")
        if ! kill -0 "$pid" 2>/dev/null && [ ! -e "$OUT/dead$1$i" ]; then
            : >"$OUT/dead$1$i"
            say "$1 node$i (pid $pid) is dead after $2"
            {
                echo "$1 node$i (pid $pid) died during or before $2. Last log lines:"
                tail -3 "$T/$1$i.log"
                # the kernel names the crashing thread: a tid just above the pid
                dmesg 2>/dev/null | awk -v p="$pid" 'match($0, /craftd\[[0-9]+\]/) {
                    t = substr($0, RSTART + 7, RLENGTH - 8) + 0
                    if (t >= p && t < p + 32) print substr($0, 1, 200) }' | head -2
            } >>"$OUT/craftd_deaths.txt"
        fi
    done
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
        if [ $tag = craftd ]; then
            eval "addr=\$CRAFTD_$role"
        else
            eval "addr=\$BASELINE_$role"
        fi
        run_wrk ${tag}_$w "$rnd" "$S://$addr" "$script" "$@"
        check_alive $tag "${tag}_$w round $rnd"
    done
}
r=1
while [ $r -le "$ROUNDS" ]; do
    craftd_runs $r put leader craftd_put.lua
    run_wrk etcd_put $r "$S://$ETCD_leader" etcd_put.lua
    craftd_runs $r get_lin follower craftd_get.lua BENCH_LEVEL=linearizable
    run_wrk etcd_range_lin $r "$S://$ETCD_follower" etcd_range.lua
    craftd_runs $r get_none follower craftd_get.lua BENCH_LEVEL=none
    run_wrk etcd_range_ser $r "$S://$ETCD_follower" etcd_range.lua BENCH_SERIALIZABLE=1
    r=$((r+1))
done

# were the clusters still whole after the load?
$PYC wait-craftd-quick 3 "$C0" "$C1" "$C2" >"$OUT/craftd_after.txt" 2>&1 ||
    say "craftd cluster not healthy after the wrk runs"
curl -s $CURL_TLS ${AUTH:+-u bench:bench-pass} "$S://$C0/status" >"$OUT/craftd_status_after.json" 2>/dev/null || true
for i in 0 1 2; do
    grep -E ' (WARN|ERROR) ' "$T/craftd$i.log" | head -20 >"$OUT/craftd$i.warn" || true
done
if [ -n "$BASELINE" ]; then
    $PY wait-craftd-quick 3 127.0.0.1:$((P+200)) 127.0.0.1:$((P+201)) 127.0.0.1:$((P+202)) \
        >"$OUT/baseline_after.txt" 2>&1 || say "baseline cluster not healthy after the wrk runs"
    for i in 0 1 2; do
        grep -E ' (WARN|ERROR) ' "$T/baseline$i.log" | head -20 >"$OUT/baseline$i.warn" || true
    done
fi

# ---- stop the clusters before the memory part (by PID)
for pid in $(cat "$PIDS"); do kill "$pid" 2>/dev/null || true; done
for pid in $(cat "$PIDS"); do
    i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
done

# ---- watchers, idle and fan-out (its own clusters; bench/watch.sh)
[ -n "${BENCH_SKIP_WATCH:-}$TLS$AUTH" ] || sh "$BENCH_DIR/watch.sh" "$OUT" || say "watch part failed"

# ---- RSS with 10^6 keys, listing 1,000 of them (GET /keys; skipped if the
# node answers 404) and restart-to-serving time (single node)
say "craftd: loading $NKEYS keys into a single node"
env -u BENCH_CA $PY rss-craftd "$CRAFTD" $((P+10)) "$T/rc" "$T/rss-craftd.log" "$PIDS" "$NKEYS" $CFLAGS_PLAIN \
    >"$OUT/rss_craftd.json" || say "craftd RSS part failed: $(tail -5 "$T/rss-craftd.log")"
grep -E ' (WARN|ERROR) ' "$T/rss-craftd.log" | head -20 >"$OUT/rss-craftd.warn" || true
rm -rf "$T/rc"
if [ -z "${BENCH_SKIP_ETCD_RSS:-}" ]; then
    say "etcd: loading $NKEYS keys into a single member"
    env -u BENCH_CA $PY rss-etcd "$ETCD" $((P+1010)) "$T/re" "$T/rss-etcd.log" "$PIDS" "$NKEYS" \
        >"$OUT/rss_etcd.json" || say "etcd RSS part failed: $(tail -5 "$T/rss-etcd.log")"
    rm -rf "$T/re"
fi

# ---- BENCH_STABILITY=1: leader changes under 60 s of full write load (bench/stability.sh)
[ -z "${BENCH_STABILITY:-}" ] || STAB_PORT=$((P+400)) CRAFTD=$CRAFTD STAB_FLAGS=$CFLAGS_PLAIN sh "$BENCH_DIR/stability.sh" | tee "$OUT/stability.txt" >&2 || say "stability run failed"

# ---- report
uptime >"$OUT/load_after.txt"
python3 "$BENCH_DIR/report.py" "$OUT" "$RESULTS" "tls=${TLS:+1}" "auth=${AUTH:+1}" "datadir=$T" \
    "conns=$CONNS" "threads=$THREADS" "duration=$DUR" "rounds=$ROUNDS" "nread=$NREAD" \
    "nkeys=$NKEYS" "craftd_flags=$CFLAGS_PLAIN" "etcd_version=$ETCD_VERSION" "craftd=build/craftd" \
    "baseline=${BASELINE:+$BASE_REV}" "baseline_sha=${BASELINE:+$BASE_SHA}" "baseline_note=$BASE_NOTE" \
    "baseline_flags=$BASE_FLAGS"

# ---- single-client latency, appended to the report (bench/latency.sh)
LAT_RESULTS="$RESULTS" LAT_PORT=$((P+500)) make -s -C "$ROOT" bench-latency || say "latency part failed"
