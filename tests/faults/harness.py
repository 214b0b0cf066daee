"""Processes and firewall for the fault-injection tests.

A FaultCluster runs 3..N craftd processes, node i (1-based) on its own
loopback address 127.0.0.(10+i), so that iptables rules on lo can cut the
peer traffic between any two nodes (craftd binds its outgoing peer
connections to its -raddr IP; clients connect from 127.0.0.1 and are never
cut). Every process is stopped by PID at teardown. The Firewall keeps all
its rules in one dedicated chain (CRAFTD_FAULTS) jumped to from INPUT, and
removes the jump, the rules and the chain at teardown; it never touches any
other rule.
"""
import http.client as httpclient
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CRAFTD = os.environ.get("CRAFTD", os.path.join(ROOT, "build", "craftd"))
LINCHECK = os.environ.get("LINCHECK", os.path.join(ROOT, "build", "lincheck"))
RESULTS = os.path.join(ROOT, "results", "faults")
CHAIN = "CRAFTD_FAULTS"

# Timing of the test clusters: 50 ms ticks, 10 ticks per election timeout
# (500 ms), requests answered within 2 s; clients wait up to 3 s. Tests
# that want snapshots (taken, installed on a lagging or new node, restored
# at restart) use SNAPSHOT_FLAGS: one every 300 entries; the others take
# none (a threshold above what a 15 s test writes, in entries and in bytes),
# so that a snapshot bug shows in the snapshot tests without hiding
# everything else.
# FAULTS_TIMING replaces the timing flags, to compare timings under the same
# faults (docs/operations.md, "Failover"); tests that wait out an election
# timeout assume the 500 ms of the default.
TIMING = os.environ.get("FAULTS_TIMING", "-tick-ms 50 -election-ticks 10").split()
BASE_FLAGS = TIMING + ["-request-timeout-ms", "2000"]
NODE_FLAGS = BASE_FLAGS + ["-snapshot-threshold", "10000000",
                           "-snapshot-log-bytes", str(1 << 40)]
SNAPSHOT_FLAGS = BASE_FLAGS + ["-snapshot-threshold", "300"]
CLIENT_TIMEOUT = 3.0


class HarnessError(AssertionError):
    pass


def wait_until(what, fn, timeout, interval=0.05):
    """Polls fn() until it returns something true; returns it or raises."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except OSError as e:
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:.1f}s waiting for {what} "
                               f"(last: {last!r})")
        time.sleep(interval)


# ---- HTTP ------------------------------------------------------------------

def request(addr, method, path, body=None, timeout=CLIENT_TIMEOUT):
    """(status, parsed JSON body or None). Raises OSError (ConnectionRefused,
    timeout, reset) when no answer came."""
    data = json.dumps(body).encode() if body is not None else None
    status, doc, _ = request_raw(addr, method, path, data, timeout=timeout)
    return status, doc


def request_raw(addr, method, path, body=None, headers=None, timeout=CLIENT_TIMEOUT):
    """As request(), with body as raw bytes (PUT /key/<k>) and request
    headers: (status, parsed JSON body or None, response headers as a dict
    with lower-case names)."""
    host, _, port = addr.rpartition(":")
    conn = httpclient.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
    except httpclient.HTTPException as e:
        raise ConnectionResetError(f"{method} {addr}{path}: {type(e).__name__}: {e}") from e
    finally:
        conn.close()
    try:
        doc = json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        doc = {"error": f"unparsable body {raw[:100]!r}"}
    return r.status, doc, hdrs


def key_path(key, level=None):
    p = "/key/" + urllib.parse.quote(key, safe="")
    return p + (f"?level={level}" if level else "")


def status(addr, timeout=1.0):
    try:
        st, doc = request(addr, "GET", "/status", timeout=timeout)
    except OSError:
        return None
    return doc if st == 200 and isinstance(doc, dict) else None


# ---- Addresses ---------------------------------------------------------------

def node_ip(i):
    return f"127.0.0.{10 + i}"


_HANDED_OUT = set()


def _bindable(ip, port, kind):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(ip):
    """A port of ip free now for TCP and UDP (a node's Raft port takes both),
    below the kernel's ephemeral range (so that no outgoing connection takes
    it before the node binds it), and never handed out before in this run:
    two calls once gave a node the same HTTP and Raft port (binding port 0
    twice can return the same one)."""
    rng = random.Random()
    for _ in range(5000):
        p = rng.randrange(20000, 32000)
        if (ip, p) in _HANDED_OUT:
            continue
        if _bindable(ip, p, socket.SOCK_STREAM) and _bindable(ip, p, socket.SOCK_DGRAM):
            _HANDED_OUT.add((ip, p))
            return p
    raise HarnessError(f"no free port on {ip} in 20000-32000")


# ---- Firewall ------------------------------------------------------------------

def iptables_usable():
    """None if iptables can be used here, else why not."""
    if os.geteuid() != 0:
        return "not root: iptables partitions need root (CI runs as root)"
    if shutil.which("iptables") is None:
        return "iptables is not installed (apt-get install -y iptables)"
    r = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"iptables does not work here: {r.stderr.strip()}"
    return None


class Firewall:
    """DROP rules in the dedicated chain CHAIN, jumped to from INPUT."""

    def __init__(self, log=print):
        self.log = log
        self.active = False

    def _ipt(self, *args, check=True):
        r = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise HarnessError(f"iptables {' '.join(args)}: {r.stderr.strip()}")
        return r.returncode == 0

    def setup(self):
        why = iptables_usable()
        if why:
            raise HarnessError(why)
        self.remove()  # a chain left by a crashed run
        self._ipt("-N", CHAIN)
        self._ipt("-I", "INPUT", "-j", CHAIN)
        self.active = True

    def drop(self, src_ip, dst_ip, probability=None, proto=None):
        """Drop packets from src_ip to dst_ip (all of them, or a random share;
        of every protocol, or of proto only, e.g. "udp")."""
        args = ["-A", CHAIN, "-s", src_ip, "-d", dst_ip]
        if proto is not None:
            args += ["-p", proto]
        if probability is not None:
            args += ["-m", "statistic", "--mode", "random", "--probability", f"{probability}"]
        self._ipt(*args, "-j", "DROP")

    def heal(self):
        if self.active:
            self._ipt("-F", CHAIN)

    def rules(self):
        r = subprocess.run(["iptables", "-S", CHAIN], capture_output=True, text=True)
        return [l for l in r.stdout.splitlines() if l.startswith("-A")]

    def remove(self):
        """The jump from INPUT, the rules and the chain: gone (idempotent)."""
        while self._ipt("-D", "INPUT", "-j", CHAIN, check=False):
            pass
        self._ipt("-F", CHAIN, check=False)
        self._ipt("-X", CHAIN, check=False)
        self.active = False


# ---- Processes -------------------------------------------------------------

def allow_core_dumps():
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass


class FaultNode:
    """One craftd process (restartable) on 127.0.0.(10+i)."""

    def __init__(self, i, datadir, logdir, join=None, flags=(), like=None):
        """Node i; or, with like=<a removed FaultNode>, a NEW node with the same
        id, addresses and log file but a fresh data directory."""
        self.i = i
        self.id = f"n{i}"
        self.ip = node_ip(i)
        self.gen = like.gen + 1 if like else 1
        self.haddr = like.haddr if like else f"{self.ip}:{free_port(self.ip)}"
        self.raddr = like.raddr if like else f"{self.ip}:{free_port(self.ip)}"
        self.dir = os.path.join(datadir, self.id if self.gen == 1 else f"{self.id}.g{self.gen}")
        self.log_path = os.path.join(logdir, f"{self.id}.log")
        self.core_dir = os.path.join(logdir, f"{self.id}.cwd")  # a crash leaves its core here
        self.join = join
        self.flags = list(flags)
        self.proc = None
        self.paused = False
        self.exits = []  # exit codes of deaths the tests did not cause
        self.killed = False

    def args(self):
        a = [CRAFTD, "-id", self.id, "-haddr", self.haddr, "-raddr", self.raddr]
        if self.join:
            a += ["-join", self.join]
        return a + self.flags + [self.dir]

    def start(self):
        assert not self.alive(), f"{self.id} already running"
        with open(self.log_path, "ab") as log:
            log.write(f"==== {time.strftime('%H:%M:%S')} start: {' '.join(self.args())}\n"
                      .encode())
            log.flush()
            os.makedirs(self.core_dir, exist_ok=True)
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=self.core_dir, preexec_fn=allow_core_dumps)
        self.paused = False
        self.killed = False
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def note(self, text):
        with open(self.log_path, "ab") as log:
            log.write(f"==== {time.strftime('%H:%M:%S')} nemesis: {text}\n".encode())

    def kill9(self):
        if self.proc is not None and self.proc.poll() is not None and not self.killed:
            self.exits.append(self.proc.returncode)  # it died by itself
        self.killed = True
        if self.alive():
            if self.paused:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.paused = False

    def pause(self):
        if self.alive():
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self):
        if self.alive() and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout=5.0):
        """SIGTERM (SIGCONT first if paused), then SIGKILL; by PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def status(self, timeout=1.0):
        return status(self.haddr, timeout)

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def __repr__(self):
        return f"<{self.id} {self.haddr} pid={self.pid}>"


class FaultCluster:
    """The craftd processes of one test."""

    def __init__(self, datadir, logdir, flags=None):
        self.datadir = datadir
        self.logdir = logdir
        self.flags = list(NODE_FLAGS if flags is None else flags)
        self.nodes = []    # the members (and a node while it joins)
        self.retired = []  # removed members: stopped, data directory wiped

    def all_nodes(self):
        return self.nodes + self.retired

    def add(self, join=None, like=None):
        i = like.i if like else max((n.i for n in self.all_nodes()), default=0) + 1
        node = FaultNode(i, self.datadir, self.logdir, join=join, flags=self.flags, like=like)
        self.nodes.append(node)
        return node

    def retire(self, node):
        """A removed member: stopped by PID, its data directory discarded; it
        leaves self.nodes (the clients stop picking it) for self.retired."""
        if node.proc is not None and node.proc.poll() is not None and not node.killed:
            node.exits.append(node.proc.returncode)  # it died by itself
        node.stop()
        node.killed = True
        shutil.rmtree(node.dir, ignore_errors=True)
        if node in self.nodes:
            self.nodes.remove(node)
        self.retired.append(node)

    def start(self, n):
        first = self.add().start()
        self.wait_leader([first], timeout=15)
        for _ in range(1, n):
            self.join_new()
        self.wait_converged()
        return self.nodes

    def join_new(self, timeout=20.0, via=None, like=None):
        """Start one more node (a fresh one, with like= a retired node's id and
        addresses) joining through a live member (via, or the first); returns
        it once the leader lists it as a voter and the node itself has had
        the answer to its join (removed before that answer, a node stops
        with an error, as it should: it never was a member)."""
        via = via or [n for n in self.nodes if n.alive() and not n.paused][0]
        node = self.add(join=via.haddr, like=like).start()

        def member():
            if not node.alive():
                raise HarnessError(f"{node.id} exited while joining:\n{node.log_tail(30)}")
            ld = self.leader_node()
            st = ld.status() if ld else None
            if not (st and any(m.get("id") == node.id and m.get("voter")
                               for m in st.get("members", []))):
                return False
            own = node.status(timeout=0.5)
            return own is not None and own.get("joining") is False
        wait_until(f"{node.id} a voter", member, timeout, interval=0.1)
        return node

    def live(self):
        return [n for n in self.nodes if n.alive()]

    def by_id(self, node_id):
        return next((n for n in self.nodes if n.id == node_id), None)

    def leader_node(self, among=None):
        """The node that calls itself leader with the highest term, or None."""
        best = None
        for n in among or self.live():
            if n.paused:
                continue
            st = n.status(timeout=0.5)
            if st and st.get("role") == "leader":
                if best is None or st.get("term", 0) > best[1]:
                    best = (n, st.get("term", 0))
        return best[0] if best else None

    def wait_leader(self, among=None, timeout=15.0):
        return wait_until("a leader", lambda: self.leader_node(among), timeout)

    def wait_converged(self, timeout=30.0):
        """Every node alive, one leader named by all, every node listing the
        same members (exactly self.nodes, all voters), all at the leader's
        commit index (applied). Under a running workload the commit index
        moves on between two status requests, so each node's applied index
        is read after the leader's commit index, not before: a node whose
        status came first would otherwise lag the leader's by the writes
        committed meanwhile, at every poll."""
        def done():
            for n in self.nodes:
                if not n.alive():
                    raise HarnessError(f"{n.id} is not running (exit {n.proc.returncode}):\n"
                                       + n.log_tail(30))
            sts = [n.status() for n in self.nodes]
            if not all(sts):
                return False
            leaders = {(s.get("leader") or {}).get("id") for s in sts}
            if len(leaders) != 1 or None in leaders or "" in leaders:
                return False
            lead = self.by_id(leaders.pop())
            lst = next(s for n, s in zip(self.nodes, sts) if n is lead)
            want = lst.get("commit_index", 0)
            want_members = {(n.id, n.raddr, True) for n in self.nodes}
            for s in sts:  # every node lists the same members, all voters
                if {(m.get("id"), m.get("raft_addr"), bool(m.get("voter")))
                        for m in s.get("members", [])} != want_members:
                    return False
            fresh = [n.status() for n in self.nodes]
            return all(s and s.get("applied_index", 0) >= want for s in fresh)
        return wait_until("the cluster to converge", done, timeout, interval=0.1)

    def stop_all(self):
        for n in self.all_nodes():
            try:
                n.stop()
            except BaseException:
                if n.alive():
                    n.proc.kill()
            try:
                os.rmdir(n.core_dir)  # only when empty: no core dumped
            except OSError:
                pass
