#!/bin/sh
# `make bench`: craftd against etcd 3.4 on loopback, 3-node clusters, wrk with
# 64 connections. Writes bench/RESULTS.md and prints its summary. A benchmark,
# not a test: it fails only when something cannot be started or answers wrong.
# Environment knobs: BENCH_DURATION (s per wrk run, 10), BENCH_ROUNDS (3),
# BENCH_NKEYS (keys for the RSS/restart part, 1000000), BENCH_PORT (31000),
# BENCH_SKIP_ETCD_RSS=1 to skip etcd's RSS/restart part, BENCH_CRAFTD_FLAGS (extra
# craftd flags for every node, empty by default: craftd runs with its defaults),
# BENCH_RESULTS (the report file, bench/RESULTS.md), BENCH_TLS=1 to run both
# clusters' client side over HTTPS (certificates from a CA made with openssl;
# craftd: -tls-cert/-tls-key/-join-ca, etcd: --cert-file/--key-file; peers stay
# plain; report in bench/RESULTS-tls.md; the RSS part stays plain HTTP),
# BENCH_AUTH=1 to give craftd users (-auth-file with one yescrypt user, every
# request with HTTP Basic: the cost of the check cache; etcd runs without
# users; report in bench/RESULTS-auth.md, or RESULTS-tls-auth.md with both).
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
[ -x "$CRAFTD" ] || die "$CRAFTD is missing (run make first)"
ETCD=$(command -v etcd)
ETCD_VERSION=$("$ETCD" --version 2>/dev/null | sed -n 's/^etcd Version: //p')

# ---- ports must be free
python3 - "$P" <<'PYEOF' || die "a port in use on 127.0.0.1 (set BENCH_PORT to another base)"
import socket, sys
p = int(sys.argv[1])
for off in (0, 1, 2, 10, 100, 101, 102, 110):
    for base in (p, p + 1000):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", base + off))
        except OSError:
            sys.exit("bench: port %d is in use" % (base + off))
        finally:
            s.close()
PYEOF

T=$(mktemp -d /tmp/craftd-bench.XXXXXX)
PIDS=$T/pids
: >"$PIDS"
OUT=$T/out
mkdir -p "$OUT"
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

# ---- craftd: 3 nodes
C0=127.0.0.1:$P; C1=127.0.0.1:$((P+1)); C2=127.0.0.1:$((P+2))
start_bg "$T/craftd0.log" "$CRAFTD" $CFLAGS_EXTRA -id node0 -haddr "$C0" -raddr 127.0.0.1:$((P+100)) "$T/c0"
echo $! >"$T/craftd0.pid"
$PYC wait-craftd 1 "$C0" >/dev/null || die "craftd node0 did not start: $(tail -5 "$T/craftd0.log")"
start_bg "$T/craftd1.log" "$CRAFTD" $CFLAGS_EXTRA -id node1 -haddr "$C1" -raddr 127.0.0.1:$((P+101)) -join "$C0" "$T/c1"
echo $! >"$T/craftd1.pid"
start_bg "$T/craftd2.log" "$CRAFTD" $CFLAGS_EXTRA -id node2 -haddr "$C2" -raddr 127.0.0.1:$((P+102)) -join "$C0" "$T/c2"
echo $! >"$T/craftd2.pid"
out=$($PYC wait-craftd 3 "$C0" "$C1" "$C2") || die "craftd cluster not ready: $(tail -5 "$T/craftd1.log")"
eval "$(echo "$out" | sed 's/^/CRAFTD_/')"
say "craftd: 3 voters, leader $CRAFTD_leader, reads on follower $CRAFTD_follower"

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
} >"$OUT/commands.tsv"

run_wrk() { # name round url script [VAR=value...]
    name=$1; round=$2; url=$3; script=$4; shift 4
    say "round $round: $name"
    env BENCH_RUN="$round" BENCH_NREAD=$NREAD BENCH_AUTHZ="$AUTHZ" "$@" \
        $WRK -s "$BENCH_DIR/$script" "$url" >"$OUT/$name.$round.txt" 2>&1 ||
        say "wrk failed for $name round $round: $(tail -3 "$OUT/$name.$round.txt")"
    grep '^BENCHJSON ' "$OUT/$name.$round.txt" | sed 's/^BENCHJSON //' >"$OUT/$name.$round.json" || true
}
check_alive() { # after a run: did a craftd node die? (recorded once per node)
    for i in 0 1 2; do
        pid=$(cat "$T/craftd$i.pid")
        if ! kill -0 "$pid" 2>/dev/null && [ ! -e "$OUT/dead$i" ]; then
            : >"$OUT/dead$i"
            say "craftd node$i (pid $pid) is dead after $1"
            {
                echo "node$i (pid $pid) died during or before $1. Last log lines:"
                tail -3 "$T/craftd$i.log"
                # the kernel names the crashing thread: a tid just above the pid
                dmesg 2>/dev/null | awk -v p="$pid" 'match($0, /craftd\[[0-9]+\]/) {
                    t = substr($0, RSTART + 7, RLENGTH - 8) + 0
                    if (t >= p && t < p + 32) print substr($0, 1, 200) }' | head -2
            } >>"$OUT/craftd_deaths.txt"
        fi
    done
}
r=1
while [ $r -le "$ROUNDS" ]; do
    run_wrk craftd_put $r "$S://$CRAFTD_leader" craftd_put.lua
    check_alive "craftd_put round $r"
    run_wrk etcd_put $r "$S://$ETCD_leader" etcd_put.lua
    run_wrk craftd_get_lin $r "$S://$CRAFTD_follower" craftd_get.lua BENCH_LEVEL=linearizable
    check_alive "craftd_get_lin round $r"
    run_wrk etcd_range_lin $r "$S://$ETCD_follower" etcd_range.lua
    run_wrk craftd_get_none $r "$S://$CRAFTD_follower" craftd_get.lua BENCH_LEVEL=none
    check_alive "craftd_get_none round $r"
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

# ---- stop the clusters before the memory part (by PID)
for pid in $(cat "$PIDS"); do kill "$pid" 2>/dev/null || true; done
for pid in $(cat "$PIDS"); do
    i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
done

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

# ---- report
python3 "$BENCH_DIR/report.py" "$OUT" "$RESULTS" "tls=${TLS:+1}" "auth=${AUTH:+1}" \
    "conns=$CONNS" "threads=$THREADS" "duration=$DUR" "rounds=$ROUNDS" "nread=$NREAD" \
    "nkeys=$NKEYS" "craftd_flags=$CFLAGS_PLAIN" "etcd_version=$ETCD_VERSION" "craftd=$CRAFTD"
