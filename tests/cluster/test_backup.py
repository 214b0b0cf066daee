"""GET /backup and craftd -restore (docs/operations.md, "Backup and restore").

A backup taken from a follower restores into a new one-member cluster with
every key, value and revision (create_index, mod_index, version) as they
were; a truncated or altered file and a directory with state are refused
with nothing written; a backup taken while writes go on holds exactly the
writes at or below its X-Craftd-Index; a client that stalls or goes away
leaves no child process and no file descriptor behind.

CRAFTD_BACKUP_KEYS sets the number of keys of the round trip (default
100000; CRAFTD_BACKUP_KEYS=1000000 for the large run: about 20 s on two
shared cores, an 89 MB backup)."""
import base64
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.parse

from conftest import CRAFTD, http, key_path, set_keys, split_addr, wait_until

NKEYS = int(os.environ.get("CRAFTD_BACKUP_KEYS", "100000"))
BATCH = 5000


# ---- the snapshot format (docs/kv.md, "Snapshot, version 3") ---------------

def parse_backup(data):
    """(applied index, [member ids], {key: (value, create, mod, version,
    lease)}) of a backup; asserts its framing (the CRC is the restore's to
    check)."""
    assert data[:8] == b"CRAFTKVS", data[:16]
    version, flags, applied, n_members, n_keys = struct.unpack_from("<IIQIQ", data, 8)
    assert version == 3 and flags == 0
    off = 8 + 4 + 4 + 8 + 4 + 8
    members = []
    for _ in range(n_members):
        (raft_id,) = struct.unpack_from("<Q", data, off)
        off += 8
        strs = []
        for _ in range(3):
            (ln,) = struct.unpack_from("<I", data, off)
            off += 4
            strs.append(data[off:off + ln].decode())
            off += ln
        members.append(strs[0])
    (n_leases,) = struct.unpack_from("<Q", data, off)
    off += 8
    leases = set()
    for _ in range(n_leases):
        lease_id, _ttl = struct.unpack_from("<QQ", data, off)
        off += 16
        leases.add(lease_id)
    keys = {}
    for _ in range(n_keys):
        klen, vlen, create, mod, ver, lease = struct.unpack_from("<IIQQQQ", data, off)
        off += 8 + 32
        k = data[off:off + klen]
        off += klen
        v = data[off:off + vlen]
        off += vlen
        assert lease == 0 or lease in leases, (k, lease)
        keys[k.decode()] = (v.decode(), create, mod, ver, lease)
    assert off + 4 == len(data), f"{len(data) - off} bytes after the keys"
    return applied, members, keys


def get_backup(addr, timeout=60.0):
    r = http(addr, "GET", "/backup", timeout=timeout)
    assert r.status == 200, r
    assert r.headers.get("content-type") == "application/octet-stream", r.headers
    assert int(r.headers["content-length"]) == len(r.body)
    return int(r.headers["x-craftd-index"]), r.body


def list_all(addr):
    """{key: (value, mod_index)} of every key, page by page."""
    out, after = {}, None
    while True:
        q = "/keys?limit=10000" + ("&after=" + urllib.parse.quote(after, safe="")
                                   if after is not None else "")
        r = http(addr, "GET", q, timeout=30.0)
        assert r.status == 200, r
        doc = r.json()
        for e in doc["keys"]:
            out[e["key"]] = (e["value"], e["mod_index"])
        if not doc["more"]:
            return out
        after = doc["next"]


def meta(addr, key):
    r = http(addr, "GET", key_path(key) + "?meta")
    assert r.status == 200, r
    m = r.json()
    return (m["value"], m["create_index"], m["mod_index"], m["version"])


def write_keys(addr, n, prefix="k/", value=lambda i: f"value-{i:08d}-" + "x" * 24):
    for start in range(0, n, BATCH):
        pairs = {f"{prefix}{i:08d}": value(i) for i in range(start, min(n, start + BATCH))}
        r = set_keys(addr, pairs, timeout=30.0)
        assert r.status == 200, r


def restore(workdir, name, backup_path, extra=(), haddr="127.0.0.1:1", raddr="127.0.0.1:2"):
    """Runs craftd -restore into <workdir>/<name> for a file that must be
    refused: (exit code, stderr)."""
    p = subprocess.run([CRAFTD, "-id", name, "-haddr", haddr, "-raddr", raddr,
                        "-restore", backup_path, *extra, os.path.join(workdir, name)],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        if int(st.rpartition(")")[2].split()[1]) == pid:
            out.append(int(d))
    return out


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# ---- tests -------------------------------------------------------------------

def test_backup_from_follower_restores_every_key_and_revision(cluster, tmp_path):
    if NKEYS > 100000:
        signal.alarm(900)
    nodes = cluster.start(3)
    leader = cluster.leader()
    follower = next(n for n in nodes if n is not leader)
    write_keys(leader.haddr, NKEYS)
    # versions above 1, and create_index below mod_index
    updated = [f"k/{i:08d}" for i in range(0, NKEYS, max(1, NKEYS // 200))]
    for rnd in range(2):
        for k in updated:
            r = http(leader.haddr, "PUT", key_path(k), body=f"updated-{rnd}-{k}")
            assert r.status == 200, r
    # the follower has applied every write once a linearizable read returns
    last = updated[-1]
    r = http(follower.haddr, "GET", key_path(last))
    assert r.status == 200 and r.json() == {last: f"updated-1-{last}"}, r

    index, data = get_backup(follower.haddr)
    applied, members, keys = parse_backup(data)
    assert applied == index
    assert sorted(members) == sorted(n.id for n in nodes)
    assert len(keys) == NKEYS
    source = list_all(leader.haddr)
    assert {k: (v[0], v[2]) for k, v in keys.items()} == source
    for k in updated[:50]:
        v, create, mod, ver, _ = keys[k]
        assert ver == 3 and create < mod <= index, (k, keys[k])
        assert meta(leader.haddr, k) == (v, create, mod, ver)

    path = str(tmp_path / "backup.snap")
    with open(path, "wb") as f:
        f.write(data)
    new = cluster.add("restored", extra=["-restore", path]).start()
    new.wait_ready(timeout=60.0)
    st = new.status()
    old_st = leader.status()
    assert st["cluster_id"] != old_st["cluster_id"], (st, old_st)
    assert [m["id"] for m in st["members"]] == ["restored"], st
    assert "restored a backup at index" in new.log_text()

    # every key, value and mod_index, and the full revisions of every key in
    # a backup of the restored node
    assert list_all(new.haddr) == source
    index2, data2 = get_backup(new.haddr)
    applied2, members2, keys2 = parse_backup(data2)
    assert members2 == ["restored"]
    assert index2 > index  # its own entries follow the snapshot
    assert keys2 == keys
    for k in updated[:20]:
        assert meta(new.haddr, k) == keys[k][:4]
    # new writes get revisions above the backup's
    r = http(new.haddr, "PUT", key_path("after-restore"), body="new")
    assert r.status == 201, r
    assert r.json()["mod_index"] > index
    # a later start is a plain restart: no -restore
    new.stop()
    new.extra = []
    new.start().wait_ready()
    assert meta(new.haddr, updated[0]) == keys[updated[0]][:4]
    # and the new cluster grows as any other: a joiner gets the keys
    grown = cluster.add("grown", join=new.haddr).start()
    grown.wait_ready(timeout=60.0)
    cluster.wait_members([new, grown], timeout=60.0)
    k = updated[-1]
    assert wait_until("the joiner has the restored keys", lambda: http(
        grown.haddr, "GET", key_path(k) + "?level=none").status == 200, 30)
    assert meta(grown.haddr, k) == keys[k][:4]


def test_restore_refuses_bad_files_and_directories_with_state(cluster, tmp_path):
    node = cluster.add("node0").start()
    node.wait_ready()
    write_keys(node.haddr, 2000, value=lambda i: f"payload-{i:06d}-" + "y" * 40)
    index, data = get_backup(node.haddr)
    r = http(node.haddr, "POST", "/backup")
    assert r.status == 405 and r.headers.get("allow") == "GET" and r.error(), r
    m = http(node.haddr, "GET", "/metrics").body.decode()
    assert 'craftd_http_requests_total{route="/backup",method="GET",code="200"} 1' in m, m
    assert 'craftd_http_requests_total{route="/backup",method="POST",code="405"} 1' in m, m
    good = str(tmp_path / "good.snap")
    with open(good, "wb") as f:
        f.write(data)
    work = str(tmp_path / "restores")
    os.mkdir(work)

    trunc = str(tmp_path / "trunc.snap")
    with open(trunc, "wb") as f:
        f.write(data[:len(data) // 2])
    rc, err = restore(work, "t", trunc)
    assert rc != 0 and "truncated" in err and trunc in err, err
    assert not os.path.exists(os.path.join(work, "t")), "a refused restore wrote the directory"

    empty = str(tmp_path / "empty.snap")
    open(empty, "wb").close()
    rc, err = restore(work, "e", empty)
    assert rc != 0 and "not a craftd backup" in err, err

    flipped = bytearray(data)
    at = data.index(b"payload-001000-") + 10  # inside a value
    flipped[at] ^= 0x01
    bad = str(tmp_path / "flipped.snap")
    with open(bad, "wb") as f:
        f.write(flipped)
    rc, err = restore(work, "f", bad)
    assert rc != 0 and "corrupt" in err and "checksum" in err, err
    assert not os.path.exists(os.path.join(work, "f"))

    longer = str(tmp_path / "longer.snap")
    with open(longer, "wb") as f:
        f.write(data + b"\0")
    rc, err = restore(work, "l", longer)
    assert rc != 0 and "bytes follow the end" in err, err

    # a directory with state: the node's own, and one with any file in it
    rc, err = restore(os.path.dirname(node.dir), os.path.basename(node.dir), good)
    assert rc != 0 and "not empty" in err, err
    other = os.path.join(work, "o")
    os.mkdir(other)
    with open(os.path.join(other, "notes.txt"), "w") as f:
        f.write("keep me")
    rc, err = restore(work, "o", good)
    assert rc != 0 and "not empty" in err and "notes.txt" in err, err
    assert os.listdir(other) == ["notes.txt"]

    rc, err = restore(work, "j", good, extra=["-join", "127.0.0.1:1"])
    assert rc == 2 and "-restore" in err and "-join" in err, err

    # and the good file restores (exit code of a refused run above was not luck)
    new = cluster.add("fresh", extra=["-restore", good]).start()
    new.wait_ready(timeout=30.0)
    assert list_all(new.haddr) == {k: (v[0], v[2]) for k, v in parse_backup(data)[2].items()}


def test_backup_while_writing_holds_exactly_the_writes_up_to_its_index(cluster):
    node = cluster.add("node0").start()
    node.wait_ready()
    write_keys(node.haddr, 20000, prefix="base/")
    acked = {}  # key -> mod_index, each key written once
    stop = threading.Event()
    errors = []

    def writer(t):
        i = 0
        while not stop.is_set():
            k = f"w{t}/{i:07d}"
            try:
                r = http(node.haddr, "PUT", key_path(k), body="v")
            except OSError as e:
                errors.append(e)
                return
            if r.status == 201:
                acked[k] = r.json()["mod_index"]
            i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until("some writes", lambda: len(acked) > 300, 30)
        before = dict(acked)
        index, data = get_backup(node.haddr)
        wait_until("writes after the backup", lambda: len(acked) > len(before) + 300, 30)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    applied, _, keys = parse_backup(data)
    assert applied == index
    assert all(v[2] <= index for v in keys.values())
    assert all(k in keys for k in before), "a write acknowledged before the backup is missing"
    for k, mod in acked.items():
        if mod <= index:
            assert k in keys and keys[k][2] == mod, (k, mod, keys.get(k))
        else:
            assert k not in keys, (k, mod, index)
    assert any(mod > index for mod in acked.values())


def open_backup_stream(addr, wait_free=0.0):
    """A raw GET /backup that reads the head and one body byte, with a small
    receive buffer so that the server's writes back up. With wait_free, a 429
    (a backup still under way) is tried again for that many seconds."""
    host, port = split_addr(addr)
    deadline = time.monotonic() + wait_free
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect((host, port))
        s.sendall(f"GET /backup HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            assert chunk, f"connection closed after {head!r}"
            head += chunk
        if head.startswith(b"HTTP/1.1 429") and time.monotonic() < deadline:
            s.close()
            time.sleep(0.05)
            continue
        break
    assert head.startswith(b"HTTP/1.1 200"), head
    assert s.recv(1) == b"C"  # the first byte of CRAFTKVS
    return s


def test_stalled_or_vanished_backup_client_leaves_no_child_and_no_fd(cluster):
    # six request timeouts of 500 ms: a stalled client is cut after 3 s
    node = cluster.add("node0", extra=["-request-timeout-ms", "500"]).start()
    node.wait_ready()
    # ~12 MB of backup: more than the socket buffers hold
    write_keys(node.haddr, 100000, value=lambda i: f"{i:08d}" + "z" * 90)
    get_backup(node.haddr)  # warm up: whatever the first backup opens for good
    pid = node.pid
    # the server side of the warm-up connection closes soon after ours
    seen = []

    def settled():
        seen.append(nfds(pid))
        return len(seen) >= 5 and len(set(seen[-5:])) == 1
    wait_until("a steady fd count", settled, 10, interval=0.1)
    base = seen[-1]

    def ended():
        # every backup started has ended: its writer gone and its fd closed
        # is not enough (a stream that starts after the client has gone
        # holds the file until it fails, while the socket is already closed:
        # the same fd count, and the next backup answered 429)
        log = node.log_text()
        done = (log.count(" sent (") + log.count("not sent in full")
                + log.count("dropped: the client went away") + log.count("the writer failed"))
        return log.count(" bytes) started") == done

    def clean():
        return not children(pid) and nfds(pid) == base and ended()

    # goes away after one byte
    s = open_backup_stream(node.haddr)
    s.close()
    wait_until("no writer and no fd after a vanished client", clean, 10)

    # goes away at once, while the writer may still be writing
    for _ in range(3):
        host, port = split_addr(node.haddr)
        with socket.create_connection((host, port), timeout=10) as c:
            c.sendall(f"GET /backup HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        wait_until("no writer and no fd after a client gone at once", clean, 10)

    # stalls after one byte: the writer is gone soon (it wrote a file), the
    # others are refused meanwhile, and the stream is cut after the stall.
    # (The last client gone at once may not have reached the node when the
    # fd count said clean: its backup may start and be dropped now.)
    s = open_backup_stream(node.haddr, wait_free=10)
    try:
        wait_until("the writer exits while the client stalls", lambda: not children(pid), 10)
        r = http(node.haddr, "GET", "/backup")
        assert r.status == 429 and "one at a time" in r.error(), r
        t0 = time.monotonic()
        wait_until("the stalled stream is cut", clean, 15)
        assert time.monotonic() - t0 < 12
    finally:
        s.close()
    # and backups work again
    index, data = get_backup(node.haddr)
    assert len(parse_backup(data)[2]) == 100000
    assert clean()
    # a node stopping with a stalled backup client still stops cleanly
    s = open_backup_stream(node.haddr)
    try:
        assert node.stop(timeout=10.0) == 0
    finally:
        s.close()
    assert "not sent in full" in node.log_text().split("backup at index")[-1]
    # only the warm-up and the backup after the stall were sent in full; the
    # vanished, the stalled and the stopped ones were not (a client gone
    # before its stream started has its writer dropped, or its request is
    # refused before it reaches the node)
    log = node.log_text()
    assert log.count(" sent (") == 2, log
    assert log.count("not sent in full") >= 3, log


def test_backup_needs_the_admin_role(cluster, tmp_path):
    users = {"reader": ("r-pass", "read"), "writer": ("w-pass", "write"),
             "admin": ("a-pass", "admin")}
    lines = []
    for user, (pw, role) in users.items():
        h = subprocess.run(["openssl", "passwd", "-6", pw], check=True, capture_output=True,
                           text=True).stdout.strip()
        lines.append(f"{user}:{h}:{role}")
    path = tmp_path / "users"
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    node = cluster.add("node0", extra=["-auth-file", str(path)])
    node.start()

    def basic(user):
        tok = base64.b64encode(f"{user}:{users[user][0]}".encode()).decode()
        return {"Authorization": "Basic " + tok}
    wait_until("node0 serving", lambda: node.alive() and http_or_none(
        node.haddr, "/status", basic("reader")) == 200, 20)
    r = http(node.haddr, "GET", "/backup")
    assert r.status == 401 and r.error(), r
    for user in ("reader", "writer"):
        r = http(node.haddr, "GET", "/backup", headers=basic(user))
        assert r.status == 403 and r.json().get("role") == "admin", r
    r = http(node.haddr, "GET", "/backup", headers=basic("admin"), timeout=30.0)
    assert r.status == 200 and r.body[:8] == b"CRAFTKVS", r
    assert int(r.headers["x-craftd-index"]) == parse_backup(r.body)[0]


def http_or_none(addr, path, headers):
    try:
        return http(addr, "GET", path, headers=headers, timeout=2.0).status
    except OSError:
        return None
