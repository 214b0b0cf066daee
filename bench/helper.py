#!/usr/bin/env python3
"""Helpers for bench/run.sh (stdlib only): wait for the craftd and etcd
clusters, find leaders and followers, preload keys, check sample answers, and
measure RSS (at a tenth, three tenths and all of the keys loaded), the time to
list 1,000 keys under a prefix, and restart-to-serving time of a single node
holding 10^6 keys.
Every subcommand prints its results as `key=value` lines or JSON on stdout;
progress and errors go to stderr; a failure exits non-zero."""

import base64
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def split_addr(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def tls_context():
    """With BENCH_CA set (BENCH_TLS=1 in run.sh), every request is HTTPS
    trusting that CA; None otherwise."""
    ca = os.environ.get("BENCH_CA")
    return ssl.create_default_context(cafile=ca) if ca else None


class Client:
    """A keep-alive HTTP/1.1 client for one host:port (reconnects on error);
    HTTPS when BENCH_CA is set."""

    def __init__(self, addr, timeout=10.0):
        self.addr = addr
        self.timeout = timeout
        self.conn = None
        self.tls = tls_context()

    def request(self, method, path, body=None, headers=None):
        host, port = split_addr(self.addr)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        authz = os.environ.get("BENCH_AUTHZ")  # craftd's users (BENCH_AUTH=1)
        if authz:
            headers = dict(headers or {}, Authorization="Basic " + authz)
        for attempt in range(2):
            if self.conn is None:
                if self.tls is not None:
                    self.conn = http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                            context=self.tls)
                else:
                    self.conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def b64(s):
    return base64.b64encode(s.encode()).decode()


# ---------------------------------------------------------------- craftd


def craftd_status(addr):
    st, data = Client(addr, timeout=2).request("GET", "/status")
    if st != 200:
        raise OSError("status %d" % st)
    return json.loads(data)


def wait_craftd(addrs, voters, deadline_s=60):
    """Waits until every node reports `voters` voters and the same leader;
    prints leader=<http> and follower=<http>."""
    end = time.time() + deadline_s
    last = None
    while time.time() < end:
        try:
            sts = [craftd_status(a) for a in addrs]
            leaders = {s.get("leader_http") for s in sts}
            nvot = [sum(1 for m in s.get("members", []) if m.get("voter")) for s in sts]
            if len(leaders) == 1 and None not in leaders and "" not in leaders \
                    and all(n == voters for n in nvot):
                leader = leaders.pop()
                followers = [a for a in addrs if a != leader]
                print("leader=" + leader)
                print("follower=" + (followers[0] if followers else leader))
                return 0
            last = (leaders, nvot)
        except (OSError, ValueError, http.client.HTTPException) as e:
            last = e
        time.sleep(0.1)
    log("craftd cluster not ready after %ds: %r" % (deadline_s, last))
    return 1


def batches(prefix, vprefix, n, size, first=0):
    """Keys first..n-1 in batches of size."""
    for start in range(first, n, size):
        yield {"%s%015d" % (prefix, i): "%s%015d" % (vprefix, i)
               for i in range(start, min(n, start + size))}


def rss_steps(nkeys):
    """The key counts at which RSS is read while loading nkeys: a tenth,
    three tenths and all (10^5, 3*10^5, 10^6 for the default 10^6),
    rounded to whole batches of 1000."""
    steps = sorted({max(1000, nkeys * f // 10000 * 1000) for f in (1, 3)} | {nkeys})
    return [k for k in steps if k <= nkeys]


def parallel_post(addr, path, bodies, nthreads, make_body):
    """POSTs every body (via make_body) on nthreads keep-alive connections;
    raises on the first non-200 answer."""
    bodies = list(bodies)
    errors = []
    lock = threading.Lock()
    it = iter(bodies)

    def worker():
        c = Client(addr, timeout=60)
        while not errors:
            with lock:
                b = next(it, None)
            if b is None:
                break
            try:
                st, data = c.request("POST", path, body=make_body(b))
            except (OSError, http.client.HTTPException) as e:
                errors.append("%s: %r" % (path, e))
                break
            if st != 200:
                errors.append("%s -> %d %s" % (path, st, data[:200]))
                break
        c.close()

    ts = [threading.Thread(target=worker) for _ in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise RuntimeError(errors[0])


def preload_craftd(addr, n):
    parallel_post(addr, "/key", batches("r", "v", n, 1000), 2, lambda b: b)


def check_craftd(leader, follower, n):
    """A sample of what wrk will do, checked by value."""
    c = Client(leader)
    st, data = c.request("POST", "/key", body={"check000000000k": "check000000000v"})
    assert st == 200, ("craftd POST", st, data)
    key = "r%015d" % (n - 1)
    for level in ("linearizable", "none"):
        st, data = Client(follower).request("GET", "/key/%s?level=%s" % (key, level))
        assert st == 200 and json.loads(data) == {key: "v%015d" % (n - 1)}, \
            ("craftd GET", level, st, data)
    st, data = Client(follower).request("GET", "/key/check000000000k?level=linearizable")
    assert st == 200 and json.loads(data) == {"check000000000k": "check000000000v"}, \
        ("craftd read-your-write via follower", st, data)
    log("craftd sample requests answered 200 with the right values")


# ---------------------------------------------------------------- etcd


def etcd_member(addr):
    st, data = Client(addr, timeout=2).request("POST", "/v3/maintenance/status", body={})
    if st != 200:
        raise OSError("status %d" % st)
    d = json.loads(data)
    return d["header"]["member_id"], d.get("leader")


def wait_etcd(addrs, deadline_s=60):
    """Waits for /health on every member and an agreed leader; prints leader= and follower=."""
    end = time.time() + deadline_s
    last = None
    while time.time() < end:
        try:
            ok = True
            for a in addrs:
                st, data = Client(a, timeout=2).request("GET", "/health")
                if st != 200 or json.loads(data).get("health") not in ("true", True):
                    ok = False
                    last = (a, st, data)
            if ok:
                ms = {a: etcd_member(a) for a in addrs}
                leaders = {l for _, l in ms.values()}
                if len(leaders) == 1 and leaders != {None} and leaders != {"0"}:
                    lid = leaders.pop()
                    leader = [a for a, (mid, _) in ms.items() if mid == lid]
                    if leader:
                        followers = [a for a in addrs if a != leader[0]]
                        print("leader=" + leader[0])
                        print("follower=" + (followers[0] if followers else leader[0]))
                        return 0
                last = ms
        except (OSError, ValueError, KeyError, http.client.HTTPException) as e:
            last = e
        time.sleep(0.1)
    log("etcd cluster not ready after %ds: %r" % (deadline_s, last))
    return 1


def etcd_txn(pairs):
    return {"success": [{"requestPut": {"key": b64(k), "value": b64(v)}}
                        for k, v in pairs.items()]}


def preload_etcd(addr, n, per_txn=100):
    parallel_post(addr, "/v3/kv/txn", batches("r", "v", n, per_txn), 2, etcd_txn)


def etcd_get(client, key, serializable=False):
    body = {"key": b64(key)}
    if serializable:
        body["serializable"] = True
    st, data = client.request("POST", "/v3/kv/range", body=body)
    if st != 200:
        return st, None
    kvs = json.loads(data).get("kvs") or []
    return st, (base64.b64decode(kvs[0]["value"]).decode() if kvs else None)


def check_etcd(leader, follower, n):
    c = Client(leader)
    st, data = c.request("POST", "/v3/kv/put",
                         body={"key": b64("check000000000k"), "value": b64("check000000000v")})
    assert st == 200 and "header" in json.loads(data), ("etcd put", st, data)
    key = "r%015d" % (n - 1)
    for ser in (False, True):
        st, val = etcd_get(Client(follower), key, ser)
        assert st == 200 and val == "v%015d" % (n - 1), ("etcd range", ser, st, val)
    st, val = etcd_get(Client(follower), "check000000000k")
    assert st == 200 and val == "check000000000v", ("etcd read-your-write", st, val)
    log("etcd sample requests answered 200 with the right values")


# ---------------------------------------------------------------- RSS and restart


def children(pid):
    """The PIDs of pid's children (a snapshot or backup writer): [] if none
    or pid is gone."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def rss_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def dir_kib(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total // 1024


class Proc:
    """A child process logging to logpath, its PID also written to pidfile
    when there is one (run.sh's trap kills what is listed there if this
    script dies). bench/failover.py's nodes are these too."""

    def __init__(self, argv, logpath, pidfile=None):
        self.logf = open(logpath, "ab")
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                  stderr=subprocess.STDOUT)
        if pidfile is not None:
            with open(pidfile, "a") as f:
                f.write("%d\n" % self.p.pid)

    def kill9(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.logf.close()


def wait_serving(probe, proc, deadline_s=120):
    """Seconds from proc's start until probe() is true (polled every 2 ms)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.p.poll() is not None:
            raise RuntimeError("process exited with %s while starting" % proc.p.returncode)
        try:
            if probe():
                return time.monotonic() - proc.t0
        except (OSError, ValueError, http.client.HTTPException):
            pass
        time.sleep(0.002)
    raise RuntimeError("not serving after %ds" % deadline_s)


LIST_N = 200  # listings timed per run


def time_listing(list_once, nkeys):
    """Times LIST_N listings of the 1,000 keys under a prefix among the
    loaded ones ("m%015d": "m%012d" holds 1,000), one after the other on one
    keep-alive connection; list_once(prefix) -> (status, keys returned).
    A 404 on the first one (a server without listing) skips the part."""
    blocks = nkeys // 1000
    if blocks == 0:
        return {"list_skipped": "fewer than 1000 keys loaded"}
    lat = []
    for i in range(LIST_N):
        prefix = "m%012d" % ((i * 7919) % blocks)
        t = time.monotonic()
        st, got = list_once(prefix)
        lat.append(time.monotonic() - t)
        if st == 404 and i == 0:
            return {"list_skipped": "GET /keys answered 404: this build serves no listing"}
        assert st == 200 and got == 1000, ("listing", prefix, st, got)
    lat.sort()
    return {"list_n": LIST_N,
            "list_p50_ms": round(lat[len(lat) // 2] * 1000, 2),
            "list_p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2),
            "list_per_s": round(len(lat) / sum(lat), 1)}


def rss_phase(kind, make_argv, addr, nkeys, batch, nthreads, load_path, make_body, probe,
              datadir, logpath, pidfile, list_once=None, observe=None):
    res = {"kind": kind, "keys": nkeys}
    proc = Proc(make_argv(), logpath, pidfile)
    try:
        res["first_start_s"] = round(wait_serving(lambda: probe(expect=None), proc), 3)
        load_s, done, res["rss_steps"] = 0.0, 0, []
        for upto in rss_steps(nkeys):  # RSS at each step, 2 s after its load
            t = time.monotonic()
            parallel_post(addr, load_path, batches("m", "x", upto, batch, done), nthreads,
                          make_body)
            load_s += time.monotonic() - t
            done = upto
            time.sleep(2)
            res["rss_steps"].append([upto, round(rss_kib(proc.p.pid)["VmRSS"] / 1024, 1)])
        res["load_s"] = round(load_s, 2)
        assert probe(expect="x%015d" % (nkeys - 1)), "last key not readable after the load"
        r = rss_kib(proc.p.pid)
        res["rss_mib"] = round(r["VmRSS"] / 1024, 1)
        res["hwm_mib"] = round(r["VmHWM"] / 1024, 1)
        res["disk_mib"] = round(dir_kib(datadir) / 1024, 1)
        if observe is not None:
            res["after_load"] = observe()
        if list_once is not None:  # after the RSS: its buffers are not counted
            res.update(time_listing(list_once, nkeys))
            if "list_skipped" in res:
                log("%s listing skipped: %s" % (kind, res["list_skipped"]))
        proc.kill9()
        proc.logf.close()
        proc = Proc(make_argv(), logpath, pidfile)
        res["restart_to_serving_s"] = round(
            wait_serving(lambda: probe(expect="x%015d" % (nkeys - 1)), proc), 3)
        time.sleep(1)
        r = rss_kib(proc.p.pid)
        res["rss_after_restart_mib"] = round(r["VmRSS"] / 1024, 1)
        if observe is not None:
            res["after_restart"] = observe()
    finally:
        proc.stop()
    return res


def craftd_samples(addr):
    """The unlabelled samples of GET /metrics: {name: value}."""
    st, data = Client(addr, timeout=10).request("GET", "/metrics")
    if st != 200:
        raise OSError("metrics %d" % st)
    out = {}
    for line in data.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
            out[parts[0]] = float(parts[1])
    return out


def loop_and_snapshots(addr):
    """The longest busy loop iteration since start, and the snapshots
    taken (count, mean seconds)."""
    m = craftd_samples(addr)
    n = int(m.get("craftd_snapshot_duration_seconds_count", 0))
    return {"loop_longest_ms": round(m.get("craftd_loop_longest_busy_seconds", 0) * 1000, 1),
            "snapshots": n,
            "snapshot_mean_s": round(m["craftd_snapshot_duration_seconds_sum"] / n, 2)
            if n else None}


def rss_craftd(binary, port, datadir, logpath, pidfile, nkeys, extra):
    haddr = "127.0.0.1:%d" % port
    argv = [binary, "-id", "solo", "-haddr", haddr, "-raddr", "127.0.0.1:%d" % (port + 100)] \
        + extra + [datadir]

    def probe(expect):
        if expect is None:  # just up, with a leader (the node elects itself)
            return craftd_status(haddr).get("role") == "leader"
        c = Client(haddr, timeout=5)
        key = "m%015d" % (nkeys - 1)
        st, data = c.request("GET", "/key/%s?level=none" % key)
        c.close()
        return st == 200 and json.loads(data) == {key: expect}

    lister = Client(haddr, timeout=10)

    def list_once(prefix):  # GET /keys (the HTTP contract's ordered listing)
        st, data = lister.request("GET", "/keys?prefix=%s&limit=1000" % prefix)
        return st, (len(json.loads(data)["keys"]) if st == 200 else None)

    res = rss_phase("craftd", lambda: argv, haddr, nkeys, 1000, 4, "/key", lambda b: b, probe,
                    datadir, logpath, pidfile, list_once, lambda: loop_and_snapshots(haddr))
    lister.close()
    res["argv"] = " ".join(argv)
    return res


def rss_etcd(binary, port, datadir, logpath, pidfile, nkeys):
    caddr = "127.0.0.1:%d" % port
    argv = [binary, "--name", "solo", "--data-dir", datadir,
            "--listen-client-urls", "http://" + caddr, "--advertise-client-urls", "http://" + caddr,
            "--listen-peer-urls", "http://127.0.0.1:%d" % (port + 100),
            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % (port + 100),
            "--initial-cluster", "solo=http://127.0.0.1:%d" % (port + 100),
            "--max-txn-ops", "1000", "--logger", "zap", "--log-level", "warn"]

    def probe(expect):
        c = Client(caddr, timeout=5)
        if expect is None:
            st, data = c.request("GET", "/health")
            c.close()
            return st == 200 and json.loads(data).get("health") == "true"
        st, val = etcd_get(c, "m%015d" % (nkeys - 1), serializable=True)
        c.close()
        return st == 200 and val == expect

    lister = Client(caddr, timeout=10)

    def list_once(prefix):  # a range [prefix, prefix with its last byte + 1)
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        st, data = lister.request("POST", "/v3/kv/range", body={
            "key": b64(prefix), "range_end": b64(end), "limit": 1000})
        return st, (len(json.loads(data).get("kvs") or []) if st == 200 else None)

    res = rss_phase("etcd", lambda: argv, caddr, nkeys, 1000, 4, "/v3/kv/txn", etcd_txn, probe,
                    datadir, logpath, pidfile, list_once)
    lister.close()
    res["argv"] = " ".join(argv)
    return res


# ---------------------------------------------------------------- main


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "wait-craftd":
        return wait_craftd(args[1:], int(args[0]))
    if cmd == "wait-craftd-quick":
        return wait_craftd(args[1:], int(args[0]), deadline_s=5)
    if cmd == "wait-etcd":
        return wait_etcd(args)
    if cmd == "preload-craftd":
        preload_craftd(args[0], int(args[1]))
        return 0
    if cmd == "preload-etcd":
        preload_etcd(args[0], int(args[1]))
        return 0
    if cmd == "check-craftd":
        check_craftd(args[0], args[1], int(args[2]))
        return 0
    if cmd == "check-etcd":
        check_etcd(args[0], args[1], int(args[2]))
        return 0
    if cmd == "rss-craftd":  # binary port datadir log pidfile nkeys [extra flags...]
        print(json.dumps(rss_craftd(args[0], int(args[1]), args[2], args[3], args[4],
                                    int(args[5]), args[6:])))
        return 0
    if cmd == "rss-etcd":  # binary port datadir log pidfile nkeys
        print(json.dumps(rss_etcd(args[0], int(args[1]), args[2], args[3], args[4],
                                  int(args[5]))))
        return 0
    log("unknown subcommand " + cmd)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (AssertionError, RuntimeError, OSError) as e:
        log("%s failed: %r" % (sys.argv[1], e))
        sys.exit(1)
