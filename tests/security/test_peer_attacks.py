"""A hostile process against the Raft (peer) port of a real 3-node cluster
that has a cluster token: forged frames and handshakes, connection floods
with partial huge frames, random bytes; and a node with a wrong token. The
cluster must stay available, lose no acknowledged write, keep its leader
and term, bound its memory and log. See docs/security.md ("Peer port")."""
import hashlib
import hmac
import json
import os
import random
import socket
import struct
import threading
import time

import pytest

from conftest import get_key, http, set_keys, split_addr, wait_until
from peerwire import MAGIC, closed_soon, datagram, frame, hello

TOKEN = "peer-attack-test-token-8c1f"
EXTRA = ("-cluster-token", TOKEN)

# ---- the wire, as an attacker writes it (docs/wire-format.md; the
# handshake and frame are in peerwire.py) ----


def raft_msg(mtype, frm, to, term, commit=0):
    """A Raft message with from, to, term and (if non-zero) commit."""
    mask = (1 << 1) | (1 << 2) | (1 << 3) | ((1 << 6) if commit else 0)
    b = struct.pack("<BBBH", 1, mtype, 0, mask) + struct.pack("<QQQ", frm, to, term)
    if commit:
        b += struct.pack("<Q", commit)
    return b


HEARTBEAT, APP = 7, 1


def send_raw(addr, data, wait=0.3):
    """Connect, send, wait a little; True if the node closed the connection."""
    s = socket.create_connection(split_addr(addr), timeout=5)
    try:
        s.sendall(data)
        return closed_soon(s, wait)
    finally:
        s.close()


def rid(node):
    return int(node.status()["raft_id"], 16)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def craftd_lines(node):
    """Lines the node wrote (not the harness's "==== start" lines, which
    show the command line the test ran)."""
    return [ln for ln in node.log_text().splitlines() if not ln.startswith("====")]


def craftd_raft_id(node):
    """The Raft id (hex) the node's start-up line gives."""
    for ln in craftd_lines(node):
        if "identity: " in ln and "Raft id " in ln:
            return ln.split("Raft id ")[1].split(",")[0]
    raise AssertionError(f"{node.name} logged no identity line")


def peer_port_lines(node):
    return [ln for ln in craftd_lines(node)
            if "closing peer connection" in ln or "refusing peer connection" in ln]


class Writer:
    """Writes k0, k1, ... through the leader in the background; remembers
    which writes were acknowledged."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.acked = {}
        self.failed = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop.is_set():
            k, v = f"k{i}", f"v{i}"
            i += 1
            try:
                ld = self.cluster.leader(timeout=5)
                r = set_keys(ld.haddr, {k: v}, timeout=5)
                if r.status == 200:
                    self.acked[k] = v
                else:
                    self.failed += 1
            except Exception:
                self.failed += 1
            time.sleep(0.02)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join(10)


def check_all_acked(cluster, acked):
    ld = cluster.leader()
    missing = [k for k, v in acked.items() if get_key(ld.haddr, k) != (200, v)]
    assert not missing, f"acknowledged writes lost: {missing[:10]}"


@pytest.fixture
def nodes(cluster):
    return cluster.start(3, extra=EXTRA)


def test_token_cluster_forms_and_keeps_secret(cluster, nodes):
    ld = cluster.leader()
    assert set_keys(ld.haddr, {"a": "1"}).status == 200
    for n in nodes:
        wait_until("replicated", lambda n=n: get_key(n.haddr, "a", level="none") == (200, "1"),
                   10)
        assert TOKEN not in "\n".join(craftd_lines(n)), f"{n.name} logged the token"
        assert TOKEN not in str(n.status()), f"{n.name} shows the token in /status"
        with open(f"/proc/{n.pid}/cmdline", "rb") as f:
            assert TOKEN.encode() not in f.read(), f"{n.name}: token visible in cmdline"
        assert any("cluster token proved" in ln for ln in craftd_lines(n))
        # loopback: no warning about an open Raft port
        assert not any("anyone who reaches it" in ln for ln in craftd_lines(n))


def test_forged_frames_and_handshakes(cluster, nodes):
    ld = cluster.leader()
    st = ld.status()
    term, cluster_id = st["term"], int(st["cluster_id"], 16)
    followers = [n for n in nodes if n is not ld]
    fake = 0x1234567890ABCDEF
    top = (1 << 64) - 1
    before = {n.name: sum("connected from" in ln for ln in craftd_lines(n)) for n in nodes}
    with Writer(cluster) as w:
        time.sleep(0.5)
        for f in followers:
            fid, lid = rid(f), rid(ld)
            # a forged HEARTBEAT with the highest term from a made-up member,
            # over the plain handshake and over a v3 hello with no proof
            hb = frame(raft_msg(HEARTBEAT, fake, fid, top, commit=10 ** 9))
            assert send_raw(f.raddr, hello(2, fake, fid, cluster_id) + hb)
            assert send_raw(f.raddr, hello(3, fake, fid, cluster_id) + hb)
            # a forged APP from the leader's id
            app = frame(raft_msg(APP, lid, fid, top))
            assert send_raw(f.raddr, hello(2, lid, fid, cluster_id) + app)
            # the same HEARTBEAT from the leader's id as UDP datagrams to the
            # peer port, signed with a made-up key and with the key every
            # token holder can derive (a datagram counts only under the key
            # the follower gave the leader's connection), numbered far
            # ahead of the real ones
            fake_hb = raft_msg(HEARTBEAT, lid, fid, top, commit=10 ** 9)
            token_key = hmac.new(TOKEN.encode(), b"craftd cluster token v1",
                                 hashlib.sha256).digest()
            host, port = split_addr(f.raddr)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                for key in (os.urandom(32), token_key):
                    for seq in range(1, 21):
                        u.sendto(datagram(lid, fid, fake_hb, key, seq=1 << 40 | seq),
                                 (host, port))
            # forged handshakes with the leader's id and a made-up proof
            for _ in range(20):
                proof = struct.pack("<IHH", 0x46505243, 3, 0) + os.urandom(32)
                assert send_raw(f.raddr, hello(3, lid, fid, cluster_id) + proof + app,
                                wait=0.2)
        # toward the leader, from a follower's id
        fid = rid(followers[0])
        assert send_raw(ld.raddr, hello(2, fid, rid(ld), cluster_id) +
                        frame(raft_msg(HEARTBEAT, fid, rid(ld), top)))
        time.sleep(1.0)
    assert cluster.leader() is ld, "the leader was deposed"
    for n in nodes:
        assert n.status()["term"] == term, f"{n.name}: term moved"
        # the real connections were never evicted
        now = sum("connected from" in ln for ln in craftd_lines(n))
        assert now == before[n.name], f"{n.name}: a peer reconnected"
    assert w.acked, "no write acknowledged during the attack"
    assert w.failed == 0, f"{w.failed} writes failed during the attack"
    check_all_acked(cluster, w.acked)
    for n in nodes:
        assert len(peer_port_lines(n)) <= 12, f"{n.name}: peer-port log not bounded"


def test_connection_flood_with_partial_huge_frames(cluster, nodes, report):
    ld = cluster.leader()
    f = [n for n in nodes if n is not ld][0]
    st = ld.status()
    cluster_id, fid = int(st["cluster_id"], 16), rid(f)
    rss0 = rss_kib(f.pid)
    socks = []
    with Writer(cluster) as w:
        for i in range(200):
            s = socket.create_connection(split_addr(f.raddr), timeout=5)
            if i % 3 == 1:
                # a v3 hello, then the header of a 4 MiB frame and some of it
                # (read as the proof: it fails)
                s.sendall(hello(3, 1000 + i, fid, cluster_id) +
                          struct.pack("<II", 4 << 20, 0) + b"\0" * 65536)
            elif i % 3 == 2:
                # a v3 hello, then silence: the limits or the handshake
                # deadline cut it
                s.sendall(hello(3, 1000 + i, fid, cluster_id))
            else:
                # the header of a huge frame and the start of it, no handshake
                s.sendall(struct.pack("<II", 16 << 20, 0) + b"\0" * 65536)
            socks.append(s)
        time.sleep(1.0)
        rss1 = rss_kib(f.pid)
        # every attacker connection is cut: by the limits, the bad magic or
        # the handshake deadline (5 s)
        deadline = time.monotonic() + 12
        open_ = list(socks)
        while open_ and time.monotonic() < deadline:
            still = []
            for s in open_:
                s.settimeout(0.01)
                try:
                    if s.recv(4096) == b"":
                        s.close()
                        continue
                    still.append(s)
                except socket.timeout:
                    still.append(s)
                except OSError:
                    s.close()
            open_ = still
            time.sleep(0.2)
        assert not open_, f"{len(open_)} attacker connections still open"
        cut_s = 12 - (deadline - time.monotonic())
    assert cut_s < 8, "the handshake deadline did not cut the silent ones"
    report(f"200 attacker connections all cut {cut_s:.1f} s after the flood; follower RSS "
           f"+{rss1 - rss0} KiB; {len(peer_port_lines(f))} peer-port log lines; "
           f"{len(w.acked)} writes acknowledged meanwhile")
    assert rss1 - rss0 < 32 * 1024, f"RSS grew by {rss1 - rss0} KiB under the flood"
    assert cluster.leader() is ld
    assert w.acked and w.failed == 0, f"{w.failed} writes failed"
    check_all_acked(cluster, w.acked)
    assert len(peer_port_lines(f)) <= 15, "peer-port log not bounded"


def test_random_bytes(cluster, nodes, report):
    rnd = random.Random(7)
    ld = cluster.leader()
    with Writer(cluster) as w:
        for n in nodes:
            for i in range(150):
                data = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
                if i % 3 == 0:  # a valid magic first, to get past the first check
                    data = struct.pack("<I", MAGIC) + data
                try:
                    send_raw(n.raddr, data, wait=0.01)
                except OSError:
                    pass
        time.sleep(0.5)
    assert cluster.leader() is ld
    assert w.acked and w.failed == 0
    check_all_acked(cluster, w.acked)
    counts = [len(peer_port_lines(n)) for n in nodes]
    report(f"150 random-byte connections per node: peer-port log lines {counts}")
    for n, c in zip(nodes, counts):
        assert 1 <= c <= 12, f"{n.name}: {c} peer-port lines"


def join_proof(token, body):
    """What a node holding token sends in X-Craftd-Join-Proof for body."""
    key = hmac.new(token.encode(), b"craftd cluster token v1", hashlib.sha256).digest()
    return hmac.new(key, b"craftd join v1" + body, hashlib.sha256).hexdigest()


def post_join(addr, body, proof=None):
    headers = {"Content-Type": "application/json"}
    if proof is not None:
        headers["X-Craftd-Join-Proof"] = proof
    r = http(addr, "POST", "/join", body=body, headers=headers)
    return r.status, r.json()


def test_wrong_token_cannot_join_nor_connect(cluster, nodes):
    ld = cluster.leader()
    assert set_keys(ld.haddr, {"before": "x"}).status == 200
    members_before = sorted(m["id"] for m in ld.status()["members"])
    # /join over HTTP without the token's proof, with a made-up proof, with
    # the proof of another body or of another token: 403, nothing proposed.
    body = json.dumps({"id": "ghost", "addr": "127.0.0.99:12999"}).encode()
    other = json.dumps({"id": "ghost2", "addr": "127.0.0.98:12998"}).encode()
    for proof in (None, "0" * 64, "zz", join_proof(TOKEN, other),
                  join_proof("not-the-token", body), join_proof(TOKEN, body)[:-1]):
        for n in nodes:
            st, doc = post_join(n.haddr, body, proof)
            assert st == 403 and "cluster token" in doc.get("error", ""), (proof, st, doc)
    # a node started with a wrong token is refused at its join and stops
    bad = cluster.add("intruder", join=ld.haddr,
                      extra=("-cluster-token", "not-the-token")).start()
    wait_until("the intruder stops", lambda: not bad.alive(), 20)
    assert "HTTP 403" in bad.log_text()
    bad_id = "%016x" % int(craftd_raft_id(bad), 16)  # how logs name a peer without a name
    for n in nodes:
        assert not any(f"peer {who} connected from" in ln for ln in craftd_lines(n)
                       for who in (bad_id, "intruder"))
    # the cluster is unharmed: same members, same leader, writes go on
    assert sorted(m["id"] for m in cluster.leader().status()["members"]) == members_before
    assert cluster.leader() is ld
    assert set_keys(ld.haddr, {"after": "y"}).status == 200
    refused = [ln for n in nodes for ln in craftd_lines(n)
               if "refused a /join" in ln]
    assert refused, "no node logged the refused joins"
    for n in nodes:
        assert len([ln for ln in craftd_lines(n) if "refused a /join" in ln]) <= 3
        assert len(peer_port_lines(n)) <= 12


def test_token_from_environment_is_wiped(cluster):
    """A token given by CRAFTD_CLUSTER_TOKEN is used, then overwritten in
    the process's environment block (/proc/<pid>/environ) and dropped."""
    secret = "env-token-5f2e91"
    os.environ["CRAFTD_CLUSTER_TOKEN"] = secret
    try:
        node = cluster.add("envtok").start()
    finally:
        del os.environ["CRAFTD_CLUSTER_TOKEN"]
    node.wait_ready()
    assert any("cluster token" in ln for ln in craftd_lines(node)), node.log_tail(10)
    with open(f"/proc/{node.pid}/environ", "rb") as f:
        env = f.read()
    assert secret.encode() not in env, "the token stays readable in /proc/<pid>/environ"
    assert secret not in node.log_text()
