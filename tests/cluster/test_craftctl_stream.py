"""craftctl's long-running and failure paths (docs/craftctl.md): watch on a
real cluster (puts and deletes written through another node, resumed with
no gap and no duplicate when the node it follows is killed, exit 5 on a
410 or an error event, exit 0 on SIGINT, a resume in the middle of an
entry against two fake nodes), the lease commands with a key
attached by put --lease, restore from a backup, a write whose connection
breaks after it was sent (exit 4, never resent to the next endpoint), and
a backup to a full disk."""
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import CRAFTD, free_ports, get_key, http, wait_until

CRAFTCTL = os.path.join(os.path.dirname(CRAFTD), "craftctl")


def ctl(endpoints, *args, stdin=None, timeout=20):
    r = subprocess.run([CRAFTCTL, "--endpoints", ",".join(endpoints), *args],
                       input=stdin, capture_output=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


class Running:
    """craftctl in the background, its stdout lines collected as they come."""

    def __init__(self, endpoints, *args):
        self.proc = subprocess.Popen([CRAFTCTL, "--endpoints", ",".join(endpoints), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for ln in self.proc.stdout:
            self.lines.put(ln.decode("utf-8", "replace").rstrip("\n"))

    def take(self, n, timeout=15.0):
        out, end = [], time.monotonic() + timeout
        while len(out) < n:
            left = end - time.monotonic()
            assert left > 0, f"only {len(out)} of {n} lines: {out}"
            try:
                out.append(self.lines.get(timeout=left))
            except queue.Empty:
                pass
        return out

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=10)
        self.t.join(timeout=5)
        return rc, self.proc.stderr.read().decode("utf-8", "replace")


def test_watch_follows_and_resumes_on_another_node(cluster):
    nodes = cluster.start(3)
    leader = cluster.leader()
    followers = [n for n in nodes if n is not leader]
    watched, writer = followers[0], leader
    # The watch follows the first endpoint; the writes go through another node.
    w = Running([watched.haddr, followers[1].haddr, leader.haddr], "-o", "json",
                "watch", "--prefix", "w/")
    time.sleep(0.5)  # the stream is open (no --from: only new changes)
    assert ctl([writer.haddr], "put", "w/a", "1")[0] == 0
    assert ctl([writer.haddr], "put", "other", "x")[0] == 0  # not under the prefix
    assert ctl([writer.haddr], "put", "w/b", "2")[0] == 0
    assert ctl([writer.haddr], "del", "w/a")[0] == 0
    got = [json.loads(x) for x in w.take(3)]
    assert [(e["event"], e["key"]) for e in got] == [("put", "w/a"), ("put", "w/b"),
                                                      ("delete", "w/a")], got
    assert got[0]["value"] == "1" and got[1]["value"] == "2"
    assert got[0]["index"] < got[1]["index"] < got[2]["index"]

    # Writes go on while the followed node is stopped (it sends nothing of
    # them), one entry of three keys among them; then it dies. The watch
    # resumes at the next endpoint after the last index it printed, and so
    # gets the writes it missed.
    watched.signal(signal.SIGSTOP)
    txn = {"compare": [], "success": [
        {"op": "put", "key": f"w/t{i}", "value": str(i)} for i in range(3)]}
    assert ctl([writer.haddr], "txn", stdin=json.dumps(txn).encode())[0] == 0
    for i in range(5):
        assert ctl([writer.haddr], "put", f"w/after{i}", str(i))[0] == 0
    assert w.lines.empty(), list(w.lines.queue)
    watched.kill9()
    more = [json.loads(x) for x in w.take(8)]
    assert [e["key"] for e in more] == ["w/t0", "w/t1", "w/t2"] + [
        f"w/after{i}" for i in range(5)], more
    assert len({e["index"] for e in more[:3]}) == 1  # one entry, one id
    idx = [e["index"] for e in got + more]
    assert idx == sorted(idx) and len(set(idx)) == len(idx) - 2, idx
    time.sleep(0.5)
    assert w.lines.empty(), list(w.lines.queue)  # no duplicate after the resume
    rc, err = w.stop()
    assert rc == 0, err
    assert "resuming after index" in err, err

    # --from replays history, table output: "<index>\t<type>\t<key>[\t<value>]"
    w2 = Running([writer.haddr], "watch", "--from", str(got[0]["index"] - 1), "w/b")
    line = w2.take(1)[0].split("\t")
    assert line == [str(got[1]["index"]), "put", "w/b", "2"], line
    assert w2.stop()[0] == 0


def test_watch_compacted_is_exit_5(cluster):
    node = cluster.add("n1", extra=["-watch-history-events", "8"]).start()
    node.wait_ready()
    for i in range(40):
        assert ctl([node.haddr], "put", f"k{i}", "v")[0] == 0
    rc, out, err = ctl([node.haddr], "watch", "--from", "1", "--prefix", "")
    assert rc == 5 and out == b"" and "410" in err and "compacted" in err, (rc, out, err)


class FakeNode:
    """A socket that answers each connection with handler(conn, request):
    the bytes of every request it read are kept."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", free_ports(1)[0]))
        self.sock.listen(8)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.requests = []
        self.handler = handler
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                req = b""
                while b"\r\n\r\n" not in req:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    req += chunk
                head = req.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
                want = 0
                for ln in head.split("\r\n"):
                    if ln.startswith("content-length:"):
                        want = int(ln.split(":")[1])
                while len(req.split(b"\r\n\r\n", 1)[-1]) < want:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    req += chunk
                self.requests.append(req)
                self.handler(conn, req)

    def close(self):
        self.sock.close()


def test_watch_error_event_is_exit_5():
    """An `event: error` ends the watch with exit 5 and the server's reason,
    after the events before it; CRLF line ends and events cut across reads
    are taken."""
    def sse(conn, req):
        body = (b"id: 7\r\nevent: put\r\ndata: {\"key\":\"a\",\"value\":\"1\",\"create_index\":7,"
                b"\"mod_index\":7,\"version\":1}\r\n\r\n"
                b"event: error\r\ndata: {\"error\":\"too slow\",\"index\":7}\r\n\r\n")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"X-Craftd-Index: 6\r\nConnection: close\r\n\r\n")
        for i in range(0, len(body), 5):  # split mid-line
            conn.sendall(body[i:i + 5])
            time.sleep(0.002)
        time.sleep(1)

    fake = FakeNode(sse)
    try:
        rc, out, err = ctl([fake.addr], "watch", "a")
    finally:
        fake.close()
    assert rc == 5 and out == b"7\tput\ta\t1\n" and "too slow" in err, (rc, out, err)


def sse_put(index, key, value):
    return (f"id: {index}\nevent: put\ndata: " + json.dumps(
        {"key": key, "value": value, "create_index": index, "mod_index": index,
         "version": 1}) + "\n\n").encode()


def test_watch_resumes_in_the_middle_of_an_entry():
    """A stream cut between two events of one entry: the watch resumes
    before that entry (Last-Event-ID: the index before it) and skips the
    events of it that it printed, so every event comes out once."""
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"X-Craftd-Index: 5\r\nConnection: close\r\n\r\n")

    def first(conn, req):  # entry 6 whole, then the first of entry 7's two events
        conn.sendall(head + sse_put(6, "x", "0") + sse_put(7, "a", "1"))

    def second(conn, req):  # from after 6: entry 7 whole, entry 8, then an end
        conn.sendall(head + sse_put(7, "a", "1") + sse_put(7, "b", "2") + sse_put(8, "c", "3")
                     + b"event: error\ndata: {\"error\":\"too slow\",\"index\":8}\n\n")
        time.sleep(0.5)

    f1, f2 = FakeNode(first), FakeNode(second)
    try:
        rc, out, err = ctl([f1.addr, f2.addr], "watch", "--prefix", "")
    finally:
        f1.close()
        f2.close()
    assert rc == 5, (rc, out, err)
    assert out.decode().splitlines() == ["6\tput\tx\t0", "7\tput\ta\t1", "7\tput\tb\t2",
                                         "8\tput\tc\t3"], (out, err)
    assert b"last-event-id: 6\r\n" in f2.requests[0].lower(), f2.requests
    assert b"from=" not in f1.requests[0].split(b"\r\n")[0], f1.requests


def test_write_cut_after_it_was_sent_is_exit_4_and_not_resent(cluster):
    """A node that reads the whole write and closes without an answer: the
    write may have been applied, so craftctl exits 4 and does not send it
    to the next endpoint. A read cut the same way moves on."""
    nodes = cluster.start(1)
    fake = FakeNode(lambda conn, req: None)  # reads the request, then closes
    try:
        rc, out, err = ctl([fake.addr, nodes[0].haddr], "put", "cut", "v1")
        assert rc == 4 and "may or may not have been applied" in err, (rc, out, err)
        assert len(fake.requests) == 1 and fake.requests[0].endswith(b"v1"), fake.requests
        assert get_key(nodes[0].haddr, "cut")[0] == 404  # not resent
        for args in (["lease", "grant", "30"], ["del", "cut"], ["txn"]):
            rc, _, err = ctl([fake.addr, nodes[0].haddr], *args, stdin=b"{}")
            assert rc == 4 and "may or may not" in err, (args, rc, err)
        rc, out, _ = ctl([nodes[0].haddr], "lease", "list")
        assert out.decode().splitlines() == ["ID                   TTL"], out
        # a read is safe to send again: it moves on to the node
        assert ctl([nodes[0].haddr], "put", "cut", "v2")[0] == 0
        n = len(fake.requests)
        rc, out, err = ctl([fake.addr, nodes[0].haddr], "get", "cut")
        assert (rc, out) == (0, b"v2\n"), (rc, out, err)
        assert len(fake.requests) == n + 1
    finally:
        fake.close()


def test_lease_round_trip(cluster):
    nodes = cluster.start(3)
    eps = [n.haddr for n in nodes]
    rc, out, err = ctl(eps, "lease", "grant", "30")
    assert rc == 0, err
    lease = out.decode().strip()
    assert lease.isdigit(), out
    rc, out, err = ctl(eps, "put", "--lease", lease, "sess/alice", "here")
    assert rc == 0, err
    assert ctl(eps, "put", "sess/bob", "free")[0] == 0  # no lease
    rc, out, _ = ctl(eps, "lease", "show", lease)
    lines = out.decode().splitlines()
    assert rc == 0 and lines[0] == f"id: {lease}" and lines[1] == "ttl: 30", lines
    assert lines[-2:] == ["keys:", "  sess/alice"], lines
    rc, out, _ = ctl(eps, "-o", "json", "lease", "show", lease)
    doc = json.loads(out)
    assert doc["keys"] == ["sess/alice"] and 0 < doc["remaining_ms"] <= 30000, doc
    rc, out, _ = ctl(eps, "-o", "json", "lease", "grant", "60")
    other = json.loads(out)["id"]
    rc, out, _ = ctl(eps, "lease", "list")
    rows = [ln.split() for ln in out.decode().splitlines()]
    assert rows == [["ID", "TTL"], [lease, "30"], [other, "60"]], rows
    rc, out, _ = ctl(eps, "-o", "json", "lease", "list")
    assert [x["id"] for x in json.loads(out)["leases"]] == [lease, other]
    rc, out, _ = ctl(eps, "lease", "keepalive", lease)
    assert (rc, out) == (0, f"lease {lease} kept alive, ttl 30\n".encode()), (rc, out)
    # --every: one keepalive per period until SIGINT
    k = Running(eps, "-o", "json", "lease", "keepalive", "--every", "1", lease)
    got = [json.loads(x) for x in k.take(2, timeout=10)]
    assert got == [{"id": lease, "ttl": 30}] * 2, got
    rc, err = k.stop()
    assert rc == 0, err
    # --every on a lease that goes: exit 1 once it is gone
    k = Running(eps, "lease", "keepalive", "--every", "1", other)
    k.take(1)
    assert ctl(eps, "lease", "revoke", other)[0] == 0
    assert k.proc.wait(timeout=10) == 1
    # revoke deletes the key attached, not the other one
    rc, out, _ = ctl(eps, "lease", "revoke", lease)
    assert (rc, out) == (0, b"revoked, deleted 1\n"), (rc, out)
    assert ctl(eps, "get", "sess/alice")[0] == 1
    assert ctl(eps, "get", "sess/bob")[1] == b"free\n"
    for args in (["show", lease], ["keepalive", lease], ["revoke", lease]):
        rc, _, err = ctl(eps, "lease", *args)
        assert rc == 1 and "404" in err, (args, rc, err)
    for args in (["grant", "0"], ["grant", "x"], ["show", "0"], ["keepalive", "--every", "0", "1"],
                 ["frob"], []):
        assert ctl(eps, "lease", *args)[0] == 2, args


def test_restore_round_trip(cluster, tmp_path):
    nodes = cluster.start(1)
    eps = [nodes[0].haddr]
    for i in range(50):
        assert ctl(eps, "put", f"r/{i:03d}", str(i))[0] == 0
    backup = tmp_path / "store.backup"
    assert ctl(eps, "backup", str(backup))[0] == 0
    hport, rport = free_ports(2)
    data = tmp_path / "restored"
    log = open(tmp_path / "restore.log", "wb")
    p = subprocess.Popen([CRAFTCTL, "restore", str(backup), str(data), "-id", "r1",
                          "-haddr", f"127.0.0.1:{hport}", "-raddr", f"127.0.0.1:{rport}"],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        new = [f"127.0.0.1:{hport}"]
        wait_until("the restored node", lambda: ctl(new, "health")[0] == 0, 30)
        rc, out, _ = ctl(new, "list", "--count", "r/")
        assert (rc, out) == (0, b"50\n")
        assert ctl(new, "get", "r/042")[1] == b"42\n"
        rc, out, _ = ctl(new, "-o", "json", "member", "list")
        assert [m["id"] for m in json.loads(out)] == ["r1"]
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=15)
        log.close()
    # the directory is not empty any more: refused, exit 1, nothing changed
    before = sorted(os.listdir(data))
    r = subprocess.run([CRAFTCTL, "restore", str(backup), str(data), "-id", "r1", "-haddr",
                        f"127.0.0.1:{hport}", "-raddr", f"127.0.0.1:{rport}"],
                       capture_output=True, timeout=20)
    assert r.returncode == 1 and b"not empty" in r.stdout + r.stderr, r
    assert sorted(os.listdir(data)) == before
    # a damaged backup: refused before anything is written
    bad = tmp_path / "bad.backup"
    raw = bytearray(backup.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    r = subprocess.run([CRAFTCTL, "restore", str(bad), str(tmp_path / "d2"), "-id", "r2",
                        "-haddr", f"127.0.0.1:{hport}", "-raddr", f"127.0.0.1:{rport}"],
                       capture_output=True, timeout=20)
    assert r.returncode == 1 and b"corrupt" in r.stdout + r.stderr, r
    assert not (tmp_path / "d2").exists()
    rc, _, err = ctl([], "restore", str(backup))
    assert rc == 2, err


def test_backup_to_a_full_disk(cluster, tmp_path):
    """A 1 MiB tmpfs (needs root to mount) and a backup of about 2 MB: a
    clear error, a non-zero exit, no part file left."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        nodes = cluster.start(1)
        txn = {"compare": [], "success": [
            {"op": "put", "key": f"big/{i:04d}", "value": "x" * 1000} for i in range(100)]}
        for base in range(20):
            for op in txn["success"]:
                op["key"] = op["key"].split("#")[0] + f"#{base}"
            assert ctl([nodes[0].haddr], "txn", stdin=json.dumps(txn).encode())[0] == 0
        rc, out, err = ctl([nodes[0].haddr], "backup", str(mnt / "full.backup"))
        assert rc == 4 and "No space left on device" in err, (rc, out, err)
        assert os.listdir(mnt) == [], os.listdir(mnt)
        rc, _, err = ctl([nodes[0].haddr], "backup", str(tmp_path / "ok.backup"))
        assert rc == 0 and (tmp_path / "ok.backup").stat().st_size > 2_000_000, err
    finally:
        subprocess.run(["umount", str(mnt)])


def test_help_of_the_new_commands():
    for cmd in ("watch", "lease", "restore"):
        rc, out, err = ctl(["127.0.0.1:1"], cmd, "--help")
        assert rc == 0 and out.startswith(b"usage: craftctl " + cmd.encode()), (cmd, out, err)
    for args in (["watch"], ["watch", ""], ["watch", "--from", "x", "k"], ["lease"],
                 ["restore"], ["restore", "f"]):
        rc, _, err = ctl(["127.0.0.1:1"], *args)
        assert rc == 2 and err, (args, rc, err)
