"""The daemon as a process: the command line, -inmem, the data directory
lock, clean shutdown on SIGTERM/SIGINT and restart from disk."""
import os
import signal
import subprocess
import time

from conftest import (CRAFTD, assert_all_present, free_ports, get_key, missing_keys, set_keys,
                      wait_until)


def run_cli(*args, timeout=10):
    return subprocess.run([CRAFTD, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, text=True)


def test_cli(tmp_path):
    d = str(tmp_path / "data")
    for h in ("-h", "-help", "--help"):
        r = run_cli(h)
        assert r.returncode == 0, (h, r)
        # asked for: on stdout (craftd -h | less), nothing on stderr
        assert "-haddr" in r.stdout and "-raddr" in r.stdout and "-join" in r.stdout, r
        assert r.stderr == "", r
    r = run_cli("-version")
    assert r.returncode == 0 and r.stdout.startswith("craftd "), r

    r = run_cli("-bogus", d)
    assert r.returncode == 2, r
    assert "-bogus" in r.stderr and "-haddr" in r.stderr, r.stderr  # message + usage
    for args in (["-tick-ms", "abc", d], ["-inmem=maybe", d], ["-log-level", "loud", d],
                 [d, "-id", "x"], ["-id"]):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r)
        assert r.stderr.strip(), (args, r)

    r = run_cli()
    assert r.returncode == 1, r
    assert "director" in r.stderr.lower(), r.stderr
    r = run_cli("-id", "node0")
    assert r.returncode == 1, r
    assert not os.path.exists(d), "a failed command line must not create anything"

    # a data directory that is a file: refused, non-zero, with a message
    f = tmp_path / "file"
    f.write_text("x")
    hp, rp = free_ports(2)
    r = run_cli("-haddr", f"127.0.0.1:{hp}", "-raddr", f"127.0.0.1:{rp}", str(f))
    assert r.returncode != 0, r
    assert r.stderr.strip(), r
    assert str(f) in r.stderr, r  # the message names the path


def test_busy_port_does_not_claim_a_cluster(tmp_path):
    """A start that fails on a busy HTTP port says so, and does not first
    log that it bootstrapped a cluster."""
    import socket
    hp, rp = free_ports(2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", hp))
        s.listen()
        r = run_cli("-haddr", f"127.0.0.1:{hp}", "-raddr", f"127.0.0.1:{rp}",
                    str(tmp_path / "data"))
    assert r.returncode != 0, r
    assert "in use" in r.stderr, r.stderr
    assert "bootstrapped" not in r.stderr, r.stderr


def test_data_dir_created_0700(cluster, tmp_path):
    nested = str(tmp_path / "a" / "b" / "c")
    n = cluster.add("n", datadir=nested).start()
    n.wait_ready()
    assert os.path.isdir(nested)
    assert os.stat(nested).st_mode & 0o777 == 0o700, oct(os.stat(nested).st_mode)
    assert set_keys(n.haddr, {"k": "v"}).status == 200
    assert get_key(n.haddr, "k") == (200, "v")


def files_under(path):
    out = {}
    for root, _, names in os.walk(path):
        for name in names:
            p = os.path.join(root, name)
            out[os.path.relpath(p, path)] = os.path.getsize(p)
    return out


def test_json_log_format(cluster):
    """-log-format json: every line of the log is one JSON object with the
    time, the level, the node and the message, quotes in the id escaped."""
    n = cluster.add('j"son', extra=["-log-format", "json"]).start()
    n.wait_ready()
    assert set_keys(n.haddr, {"k": "v"}).status == 200
    assert n.stop() == 0
    import json
    lines = [ln for ln in n.log_text().splitlines()
             if ln.strip() and not ln.startswith("==== start:")]  # the harness's line
    assert len(lines) >= 5, lines
    for ln in lines:
        doc = json.loads(ln)
        assert sorted(doc) == ["level", "msg", "node", "ts"], doc
        assert doc["node"] == 'j"son' and doc["level"] in ("debug", "info", "warn", "error")
        assert doc["ts"].endswith("Z") and len(doc["ts"]) == 24, doc
    assert any("shutting down" in json.loads(ln)["msg"] for ln in lines)


def test_systemd_readiness(cluster, tmp_path):
    """Under systemd (Type=notify) the node sends READY=1 once it is ready
    (as /readyz says) and STOPPING=1 when SIGTERM starts its shutdown; here
    a datagram socket stands in for systemd's NOTIFY_SOCKET."""
    import socket
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    os.environ["NOTIFY_SOCKET"] = path
    try:
        n = cluster.add("notified").start()
    finally:
        del os.environ["NOTIFY_SOCKET"]
    msg = sock.recv(4096).decode()
    assert "READY=1" in msg.split("\n"), msg
    r = get_key(n.haddr, "nothing")  # it serves by then
    assert r[0] == 404, r
    n.signal(signal.SIGTERM)
    msg = sock.recv(4096).decode()
    assert msg == "STOPPING=1", msg
    assert n.proc.wait(timeout=10) == 0
    sock.close()


def test_inmem(cluster, report):
    n = cluster.add("mem", extra=["-inmem"]).start()
    n.wait_ready()
    for i in range(50):
        assert set_keys(n.haddr, {f"m{i}": f"v{i}"}).status == 200
    for i in range(50):
        assert get_key(n.haddr, f"m{i}") == (200, f"v{i}")
    running = files_under(n.dir)
    assert n.stop() == 0
    stopped = files_under(n.dir)
    report(f"-inmem files while running: {running}; after stop: {stopped}")
    for files in (running, stopped):
        # nothing but the directory (and at most an empty lock file)
        extra = {p: s for p, s in files.items() if not ("lock" in p.lower() and s == 0)}
        assert not extra, f"-inmem wrote to disk: {extra}"


def test_second_process_on_same_dir_refused(cluster):
    a = cluster.add("a").start()
    a.wait_ready()
    b = cluster.add("b", datadir=a.dir).start()  # other ports, same directory
    try:
        rc = b.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        raise AssertionError("a second craftd on the same data directory kept running")
    assert rc != 0, rc
    log = b.log_text().lower()
    assert "in use" in log or "lock" in log, b.log_tail(20)
    # the first one is unharmed
    assert set_keys(a.haddr, {"k": "v"}).status == 200
    assert get_key(a.haddr, "k") == (200, "v")


def test_sigterm_single_node_clean_and_restart(cluster):
    n = cluster.add("solo").start()
    n.wait_ready()
    acked = {}
    for i in range(200):
        if set_keys(n.haddr, {f"t{i}": f"v{i}"}).status == 200:
            acked[f"t{i}"] = f"v{i}"
    assert len(acked) == 200
    assert n.stop() == 0, "SIGTERM must exit 0"
    assert "shutting down" in n.log_text()
    before = len(n.log_text())
    n.start()
    n.wait_ready()
    # the membership entries replayed at restart are not news
    restarted = n.log_text()[before:]
    assert "restarting from" in restarted, restarted
    assert "added as" not in restarted, restarted
    lost = missing_keys(n.haddr, acked)
    assert not lost, f"lost {len(lost)} acknowledged writes over a restart, e.g. {lost[:5]}"
    # SIGINT is a clean stop as well
    n.signal(signal.SIGINT)
    assert n.proc.wait(timeout=10) == 0


def test_sigterm_whole_cluster_and_restart(cluster):
    nodes = cluster.start(3)
    acked = {}
    for i in range(100):
        addr = nodes[i % 3].haddr
        if set_keys(addr, {f"c{i}": f"v{i}"}).status == 200:
            acked[f"c{i}"] = f"v{i}"
    assert len(acked) == 100
    # the leader first: the others then stop without a leader, still cleanly
    leader = cluster.leader()
    order = [leader] + [n for n in nodes if n is not leader]
    for n in order:
        assert n.stop() == 0, f"{n.name} did not exit 0 on SIGTERM"
    # restart with the very same commands (two of them still carry -join)
    for n in nodes:
        n.start()
    for n in nodes:
        n.wait_ready(timeout=20)
    cluster.wait_members(nodes)
    assert_all_present(cluster, nodes, acked)
    assert set_keys(nodes[1].haddr, {"again": "1"}).status == 200
    for n in nodes:
        wait_until(f"{n.name} has again",
                   lambda n=n: get_key(n.haddr, "again", level="none") == (200, "1"), 5)


def writer_children(pid):
    """PIDs of the children of pid (the snapshot writer, while it runs)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def open_fds(pid):
    """pid's open descriptors and what they name; None once it has exited
    (a zombie not yet reaped lists none)."""
    try:
        fds = {fd: os.readlink(f"/proc/{pid}/fd/{fd}")
               for fd in os.listdir(f"/proc/{pid}/fd")}
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return fds if fds and state not in ("Z", "X") else None


def test_snapshot_writer_holds_nothing_of_its_parent(cluster, report):
    """The forked snapshot writer keeps only its snapshot file open: not the
    listening ports, the data directory's lock nor any connection, so that a
    node killed while it writes starts again at once (it found its ports
    taken until the orphan had died)."""
    n = cluster.add("snap", extra=["-snapshot-threshold", "20"]).start()
    n.wait_ready()
    seen = None
    b = 0
    while seen is None and b < 400:
        pairs = {f"s{b:03d}-{i:04d}": "v" * 16 for i in range(1000)}
        assert set_keys(n.haddr, pairs).status == 200
        b += 1
        for child in writer_children(n.pid):
            fds = open_fds(child)
            if fds and sum(1 for fd in fds if int(fd) > 2) > 1:
                # caught between its fork and its close_range? look again
                time.sleep(0.02)
                fds = open_fds(child)  # None: it has finished, try another
            if fds:
                seen = (child, fds)
                break
    assert seen is not None, "no snapshot writer seen in 400 batches: " + n.log_tail(20)
    child, fds = seen
    report(f"snapshot writer {child} after {b} batches holds {fds}")
    held = {fd: t for fd, t in fds.items() if int(fd) > 2}
    assert len(held) == 1, f"the writer holds more than its snapshot file: {fds}"
    (target,) = held.values()
    assert target.startswith(os.path.realpath(n.dir)), f"not a file of the data directory: {fds}"
    # Killed now, the node starts again at once on the same ports and lock.
    n.kill9()
    n.start()
    n.wait_ready(timeout=30)
    log = n.log_text()
    assert "Address already in use" not in log, n.log_tail(20)
    assert set_keys(n.haddr, {"after": "1"}).status == 200
