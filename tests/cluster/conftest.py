"""Fixtures for tests that drive real craftd processes on loopback.

Each node runs build/craftd (or $CRAFTD) in its own data directory under the
test's tmp_path; its stderr goes to <name>.log there, and the logs of every
node are attached to the report of a failed test. Nodes are stopped by PID
at teardown (SIGTERM, then SIGKILL), never by name. Everything waits with a
deadline, and every test has a hard time limit (SIGALRM). HTTP calls wait
8 s by default: longer than the node's request timeout (5 s), so that its
503/504 is seen rather than a client-side timeout.

CRAFTD=build-asan/craftd runs the suite on the sanitizer build (any report
in a node's log fails the test); CRAFTD_CORE=1 makes crashed nodes dump core
into the test's tmp_path.
"""
import http.client as httpclient
import json
import os
import random
import resource
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CRAFTD = os.path.abspath(os.environ.get("CRAFTD", os.path.join(ROOT, "build", "craftd")))
TEST_TIME_LIMIT = 90  # seconds, per test
LOG_TAIL = 80  # log lines of each node shown for a failed test


# ---- HTTP ------------------------------------------------------------------

class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict, lower-case names
        self.body = body  # bytes

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def error(self):
        """The "error" string of a JSON error body (asserts its shape)."""
        doc = self.json()
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"], \
            f"not a JSON error body: {self.body!r}"
        return doc["error"]

    def __repr__(self):
        return f"<HTTP {self.status} {self.body[:200]!r}>"


def split_addr(addr):
    """("host", port) of "host:port"; an empty host is this host."""
    host, _, port = addr.rpartition(":")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def http(addr, method, path, body=None, timeout=8.0, headers=None):
    """One request on a fresh connection; raises OSError when nobody answers."""
    host, port = split_addr(addr)
    conn = httpclient.HTTPConnection(host, port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    except httpclient.HTTPException as e:  # a broken reply: as if nobody answered
        raise ConnectionError(f"{method} {addr}{path}: {type(e).__name__}: {e}") from e
    finally:
        conn.close()


def key_path(key, level=None):
    p = "/key/" + urllib.parse.quote(key, safe="")
    return p + (f"?level={level}" if level else "")


def get_key(addr, key, level=None, timeout=8.0):
    """(status, value or None)."""
    r = http(addr, "GET", key_path(key, level), timeout=timeout)
    if r.status == 200:
        doc = r.json()
        assert list(doc) == [key], f"GET {key}: unexpected body {r.body!r}"
        return 200, doc[key]
    return r.status, None


def set_keys(addr, pairs, timeout=8.0):
    return http(addr, "POST", "/key", body=json.dumps(pairs), timeout=timeout)


def status(addr, timeout=2.0):
    """The /status document, or None when the node does not answer 200."""
    try:
        r = http(addr, "GET", "/status", timeout=timeout)
    except OSError:
        return None
    if r.status != 200:
        return None
    try:
        return r.json()
    except ValueError:
        return None


def leader_id(st):
    """The leader's id from a /status document ("" or None: no leader)."""
    if not st:
        return None
    ld = st.get("leader") or {}
    return ld.get("id") or None


def wait_until(what, fn, timeout, interval=0.05):
    """Polls fn() until it returns something true; returns it or fails."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except OSError as e:
            last = e
            ok = False
        else:
            ok = bool(last)
        if ok:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# ---- Ports -----------------------------------------------------------------

def port_free(port, host="127.0.0.1"):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


_HANDED_OUT = set()


def free_ports(n):
    """n distinct ports that are free now, below the kernel's ephemeral range
    (so that no outgoing connection takes one before the node binds it) and
    never handed out before in this run (a stopped node's port stays its)."""
    ports = []
    rng = random.Random()
    for _ in range(5000):
        p = rng.randrange(20000, 32000)
        if p not in _HANDED_OUT and port_free(p):
            _HANDED_OUT.add(p)
            ports.append(p)
            if len(ports) == n:
                return ports
    raise RuntimeError("no free ports in 20000-32000")


# ---- Processes -------------------------------------------------------------

def _core_limit():
    """With CRAFTD_CORE=1 in the environment, crashed nodes dump core into
    the test's tmp_path (their cwd), for gdb."""
    if os.environ.get("CRAFTD_CORE") == "1":
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


class Node:
    """One craftd process (restartable) with its own data directory."""

    def __init__(self, name, workdir, haddr, raddr, id=None, join=None, extra=(),
                 argv=None, datadir=None):
        self.name = name
        self.id = id if id is not None else raddr
        self.haddr = haddr
        self.raddr = raddr
        self.join = join
        self.extra = list(extra)
        self.workdir = workdir  # the process's cwd: core files land there
        self.dir = datadir or os.path.join(workdir, name)
        self.log_path = os.path.join(workdir, name + ".log")
        # argv: the exact arguments (without the program) when given
        self.argv = argv
        self.proc = None

    def args(self):
        if self.argv is not None:
            return [CRAFTD] + list(self.argv)
        a = [CRAFTD, "-id", self.id, "-haddr", self.haddr, "-raddr", self.raddr]
        if self.join:
            a += ["-join", self.join]
        return a + self.extra + [self.dir]

    def start(self):
        assert not self.alive(), f"{self.name} already running"
        log = open(self.log_path, "ab")
        log.write(f"==== start: {' '.join(self.args())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.workdir, preexec_fn=_core_limit)
        log.close()
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill9(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout=10.0):
        """SIGTERM, wait; SIGKILL if it does not exit in time. Its exit code
        (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                pytest.fail(f"{self.name} (pid {self.pid}) ignored SIGTERM for {timeout}s")
        return self.proc.returncode

    def status(self, timeout=2.0):
        return status(self.haddr, timeout)

    def is_leader(self):
        st = self.status()
        return st is not None and leader_id(st) == (st.get("me") or {}).get("id") == self.id

    def wait_ready(self, timeout=15.0):
        """Until /status answers 200 and names a leader; fails early if the
        process exits."""
        def ready():
            if not self.alive():
                pytest.fail(f"{self.name} exited with {self.proc.returncode} while starting:\n"
                            + self.log_tail(30))
            return leader_id(self.status())
        return wait_until(f"{self.name} ready (/status with a leader)", ready, timeout)

    def state(self):
        """"running", "exited 0", "killed by SIGSEGV"..."""
        if self.proc is None:
            return "never started"
        rc = self.proc.poll()
        if rc is None:
            return "running"
        if rc < 0:
            return f"killed by {signal.Signals(-rc).name}"
        return f"exited {rc}"

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=LOG_TAIL):
        return "\n".join(self.log_text().splitlines()[-n:])

    def __repr__(self):
        return f"<{self.name} id={self.id} http={self.haddr} raft={self.raddr} pid={self.pid}>"


class Cluster:
    """The nodes a test started; finds leaders and stops everything."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.nodes = []

    def add(self, name, haddr=None, raddr=None, **kw):
        if haddr is None or raddr is None:
            hp, rp = free_ports(2)
            haddr = haddr or f"127.0.0.1:{hp}"
            raddr = raddr or f"127.0.0.1:{rp}"
        kw.setdefault("id", name)
        node = Node(name, self.workdir, haddr, raddr, **kw)
        self.nodes.append(node)
        return node

    def start(self, n, extra=(), join_via=0):
        """n nodes: the first bootstraps, the others join through node
        join_via (an index); returns them once all are voters."""
        first = self.add("node0", extra=extra).start()
        first.wait_ready()
        nodes = [first]
        for i in range(1, n):
            node = self.add(f"node{i}", join=nodes[join_via].haddr, extra=extra).start()
            node.wait_ready()
            nodes.append(node)
        self.wait_members(nodes)
        return nodes

    def live(self):
        return [n for n in self.nodes if n.alive()]

    def by_id(self, node_id):
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None

    def leader(self, among=None, timeout=10.0, not_id=None):
        """The live node that calls itself leader (and that the others name)."""
        def find():
            cands = [n for n in (among or self.live()) if n.alive()]
            for n in cands:
                st = n.status()
                if st and leader_id(st) == n.id and n.id != not_id:
                    return n
            return None
        return wait_until("a leader", find, timeout)

    def wait_members(self, nodes, timeout=15.0):
        """Until the leader lists every node as a member (a voter, when the
        status says so) and every node names that leader."""
        want = {n.id for n in nodes}

        def done():
            ld = self.leader(among=nodes, timeout=timeout)
            st = ld.status()
            if not st:
                return False
            members = st.get("members")
            if members is not None:
                ids = {m.get("id") for m in members if m.get("voter", True)}
                if not want <= ids:
                    return False
            return all(leader_id(n.status()) == ld.id for n in nodes)
        wait_until(f"members {sorted(want)}", done, timeout, interval=0.1)

    def stop_all(self):
        for n in self.nodes:
            try:
                n.stop(timeout=5.0)
            except BaseException:  # never leave a process behind
                if n.alive():
                    n.proc.kill()


def kill_leader(cluster, leader, timeout=10.0):
    """kill -9 the leader; (the new leader, seconds from the kill until a
    survivor calls itself leader)."""
    survivors = [n for n in cluster.live() if n is not leader]
    leader.kill9()
    t0 = time.monotonic()

    def elected():
        for n in survivors:
            st = status(n.haddr, timeout=0.5)
            if st and leader_id(st) == n.id:
                return n
        return None
    new = wait_until("a new leader after kill -9", elected, timeout, interval=0.02)
    return new, time.monotonic() - t0


def missing_keys(addr, expected, level=None):
    """The keys of expected that addr does not return with their value."""
    return [k for k, v in expected.items() if get_key(addr, k, level=level) != (200, v)]


def assert_all_present(cluster, nodes, expected, timeout=15.0, sample=5):
    """Every pair of expected is on every node of nodes. Fast: a barrier
    write through the leader, then level=none reads once each node has
    applied the barrier (so it has applied everything acknowledged before),
    plus a few linearizable reads per node."""
    leader = cluster.leader(among=nodes)
    token = f"{time.monotonic_ns()}"
    r = set_keys(leader.haddr, {"__barrier__": token})
    assert r.status == 200, f"barrier write on {leader.name}: {r}"
    for n in nodes:
        wait_until(f"{n.name} applied the barrier",
                   lambda n=n: get_key(n.haddr, "__barrier__", level="none") == (200, token),
                   timeout)
        lost = missing_keys(n.haddr, expected, level="none")
        assert not lost, f"{n.name} lacks {len(lost)} of {len(expected)} acknowledged " \
                         f"writes, e.g. {lost[:5]}"
        some = dict(list(expected.items())[-sample:])
        lost = missing_keys(n.haddr, some, level="linearizable")
        assert not lost, f"{n.name}: linearizable reads miss {lost}"


# ---- Fixtures and hooks ------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def craftd_binary():
    if not os.access(CRAFTD, os.X_OK):
        pytest.fail(f"{CRAFTD} is missing: run `make build/craftd` first")
    return CRAFTD


class TimeLimitExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def time_limit():
    """A hard limit per test so that nothing hangs the suite."""
    def expire(signum, frame):
        raise TimeLimitExceeded(f"test exceeded {TEST_TIME_LIMIT}s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_TIME_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def cluster(request, tmp_path):
    c = Cluster(str(tmp_path))
    request.node._craftd_cluster = c
    yield c
    c.stop_all()
    # a sanitizer build (CRAFTD=build-asan/craftd) reports into the logs
    for n in c.nodes:
        bad = [ln for ln in n.log_text().splitlines()
               if "Sanitizer" in ln or "runtime error:" in ln]
        if bad:
            pytest.fail(f"{n.name}: sanitizer report in its log: {bad[:3]}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    c = getattr(item, "_craftd_cluster", None)
    if c is None or not rep.failed:
        return
    for n in c.nodes:
        rep.sections.append((f"craftd log {n.name} ({n.log_path}) {n.state()}", n.log_tail()))


# ---- Measurements shown at the end of the run ----------------------------

_MEASUREMENTS = []


@pytest.fixture
def report(request):
    """report("failover: 1.23 s"): a line for the summary at the end."""
    def add(line):
        _MEASUREMENTS.append(f"{request.node.name}: {line}")
    return add


def pytest_terminal_summary(terminalreporter):
    if _MEASUREMENTS:
        terminalreporter.section("craftd measurements")
        for line in _MEASUREMENTS:
            terminalreporter.write_line(line)
