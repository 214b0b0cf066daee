# Sourced by bench/run.sh: starting, watching and stopping its loopback
# clusters, and reading their processes' CPU time. It expects T (the run's
# temporary folder), PIDS (the file of every PID started; the caller's EXIT
# trap stops them with stop_all), PYC (bench/helper.py as a craftd client),
# PY (the same for etcd), S (the client scheme), and say and die.
#
# Every cluster has a tag. Node i of cluster <tag> logs to $T/<tag><i>.log
# and keeps its data in $T/<tag>-d<i>; $T/<tag>.nodes lists "i addr pid", one
# node a line, which cpu_snap and check_alive read.

start_bg() { # logfile argv...: starts argv in the background, remembers its PID
    log=$1; shift
    "$@" >"$log" 2>&1 &
    echo $! >>"$PIDS"
}

craftd_cluster() { # tag binary n http-port raft-port flags...: n nodes (HTTP
    # hp+i, Raft rp+i), the first bootstraps, the others join it; prints
    # leader=<addr> and follower=<addr> once all n are voters
    tag=$1; bin=$2; n=$3; hp=$4; rp=$5; shift 5
    : >"$T/$tag.nodes"
    addrs=""
    i=0
    while [ $i -lt "$n" ]; do
        join=""
        [ $i = 0 ] || join="-join 127.0.0.1:$hp"
        start_bg "$T/$tag$i.log" "$bin" "$@" -id node$i -haddr 127.0.0.1:$((hp+i)) \
            -raddr 127.0.0.1:$((rp+i)) $join "$T/$tag-d$i"
        echo "$i 127.0.0.1:$((hp+i)) $!" >>"$T/$tag.nodes"
        addrs="$addrs 127.0.0.1:$((hp+i))"
        if [ $i = 0 ]; then
            $PYC wait-craftd 1 127.0.0.1:$hp >/dev/null ||
                die "$tag node0 did not start: $(tail -5 "$T/${tag}0.log")"
        fi
        i=$((i+1))
    done
    $PYC wait-craftd "$n" $addrs || die "$tag cluster not ready: $(tail -5 "$T/${tag}1.log")"
}

etcd_cluster() { # tag binary n client-port peer-port flags...: n members
    # (clients cp+i, peers pp+i); prints leader=<addr> and follower=<addr>
    tag=$1; bin=$2; n=$3; cp=$4; pp=$5; shift 5
    : >"$T/$tag.nodes"
    ic=""
    i=0
    while [ $i -lt "$n" ]; do
        ic="$ic${ic:+,}e$i=http://127.0.0.1:$((pp+i))"
        i=$((i+1))
    done
    addrs=""
    i=0
    while [ $i -lt "$n" ]; do
        start_bg "$T/$tag$i.log" "$bin" --name e$i --data-dir "$T/$tag-d$i" \
            --listen-client-urls $S://127.0.0.1:$((cp+i)) \
            --advertise-client-urls $S://127.0.0.1:$((cp+i)) "$@" \
            --listen-peer-urls http://127.0.0.1:$((pp+i)) \
            --initial-advertise-peer-urls http://127.0.0.1:$((pp+i)) \
            --initial-cluster "$ic" --initial-cluster-state new --initial-cluster-token "craftd-bench-$tag" \
            --logger zap --log-level warn
        echo "$i 127.0.0.1:$((cp+i)) $!" >>"$T/$tag.nodes"
        addrs="$addrs 127.0.0.1:$((cp+i))"
        i=$((i+1))
    done
    $PY wait-etcd $addrs || die "$tag cluster not ready: $(tail -5 "$T/${tag}0.log")"
}

cluster_addrs() { # tag: the HTTP addresses of its nodes, on one line
    awk '{printf "%s%s", sep, $2; sep = " "} END {print ""}' "$T/$1.nodes"
}

cpu_snap() { # tag: "addr pid ticks" per node, ticks = utime + stime from
    # /proc/<pid>/stat in clock ticks ("-" for a process that is gone); the
    # fields are counted after the ")" that ends the command name
    while read -r _i _addr _pid; do
        _t=$(sed 's/^.*) //' "/proc/$_pid/stat" 2>/dev/null | awk '{print $12 + $13}')
        echo "$_addr $_pid ${_t:--}"
    done <"$T/$1.nodes"
}

check_alive() { # tag what out-dir: after a run, did a node of cluster <tag>
    # die? (recorded once per node in <out-dir>/craftd_deaths.txt)
    while read -r _i _addr _pid; do
        if ! kill -0 "$_pid" 2>/dev/null && [ ! -e "$3/dead$1$_i" ]; then
            : >"$3/dead$1$_i"
            say "$1 node$_i (pid $_pid) is dead after $2"
            {
                echo "$1 node$_i (pid $_pid) died during or before $2. Last log lines:"
                tail -3 "$T/$1$_i.log"
                # the kernel names the crashing thread: a tid just above the pid
                dmesg 2>/dev/null | awk -v p="$_pid" 'match($0, /craftd\[[0-9]+\]/) {
                    t = substr($0, RSTART + 7, RLENGTH - 8) + 0
                    if (t >= p && t < p + 32) print substr($0, 1, 200) }' | head -2
            } >>"$3/craftd_deaths.txt"
        fi
    done <"$T/$1.nodes"
}

stop_all() { # SIGTERM to every PID started, up to 10 s each to exit, then
    # SIGKILL; the list is emptied, so that no later stop reaches a reused PID
    for pid in $(cat "$PIDS" 2>/dev/null); do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $(cat "$PIDS" 2>/dev/null); do
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
        kill -9 "$pid" 2>/dev/null || true
    done
    : >"$PIDS"
}
