"""Mutual TLS between nodes (-peer-tls-cert, -peer-tls-key, -peer-tls-ca) on
a real 3-node cluster: it forms, replicates and survives a leader kill; a
node whose certificate comes from another CA cannot take part; a client with
a valid certificate of one node cannot pose as another; a plain-TCP frame,
forged with valid handshake and CRC, is refused on the peer port. The
certificates are made per test by peer_tls_certs.sh (docs/security.md).
See docs/security.md ("Peer TLS")."""
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (get_key, kill_leader, set_keys, split_addr, wait_until,
                      assert_all_present)
from peerwire import closed_soon, frame, hello

HERE = os.path.dirname(os.path.abspath(__file__))


def make_certs(d, ca, *names):
    subprocess.run(["sh", os.path.join(HERE, "peer_tls_certs.sh"), d, ca, *names],
                   check=True)


@pytest.fixture
def certs(tmp_path):
    d = str(tmp_path / "certs")
    make_certs(d, "ca", "node0", "node1", "node2")
    # the same names, signed by another CA
    make_certs(d + "/other", "other-ca", "node0", "node1", "node2")
    return d


def tls_flags(d, cert, ca="ca"):
    return ["-peer-tls-cert", f"{d}/{cert}.pem", "-peer-tls-key", f"{d}/{cert}.key",
            "-peer-tls-ca", f"{d}/{ca}.pem"]


def start_tls_cluster(cluster, certs, n=3):
    nodes = []
    for i in range(n):
        name = f"node{i}"
        join = nodes[0].haddr if nodes else None
        node = cluster.add(name, join=join, extra=tls_flags(certs, name)).start()
        node.wait_ready()
        nodes.append(node)
    cluster.wait_members(nodes)
    return nodes


def raft_ids(node):
    st = node.status()
    return {m["id"]: int(m["raft_id"], 16) for m in st["members"]}


def fnv_name(name):
    h = 0xcbf29ce484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_tls_cluster_replicates_and_survives_leader_kill(cluster, certs):
    nodes = start_tls_cluster(cluster, certs)
    for n in nodes:
        assert "peer TLS on" in n.log_text(), n.log_tail()
    leader = cluster.leader()
    expected = {f"k{i}": f"v{i}" for i in range(50)}
    r = set_keys(leader.haddr, expected)
    assert r.status == 200, r
    assert_all_present(cluster, nodes, expected)

    new, took = kill_leader(cluster, leader)
    survivors = [n for n in nodes if n is not leader]
    more = {f"after{i}": str(i) for i in range(20)}
    r = set_keys(new.haddr, more)
    assert r.status == 200, r
    expected.update(more)
    assert_all_present(cluster, survivors, expected)
    for n in survivors:
        text = n.log_text()
        assert "does not name" not in text, n.log_tail()


def test_node_with_other_ca_cannot_take_part(cluster, certs):
    nodes = start_tls_cluster(cluster, certs)
    follower = next(n for n in nodes if not n.is_leader())
    follower.stop()
    # the same node, now with a certificate (for its own name) of another CA,
    # trusting both CAs so that it would accept the others
    other = certs + "/other"
    with open(f"{other}/both.pem", "w") as f:
        for p in (f"{certs}/ca.pem", f"{other}/other-ca.pem"):
            f.write(open(p).read())
    follower.extra = ["-peer-tls-cert", f"{other}/{follower.id}.pem",
                      "-peer-tls-key", f"{other}/{follower.id}.key",
                      "-peer-tls-ca", f"{other}/both.pem"]
    follower.start()
    leader = cluster.leader(among=[n for n in nodes if n is not follower])
    r = set_keys(leader.haddr, {"while-out": "1"})
    assert r.status == 200, r  # two of three commit it
    time.sleep(2.0)
    assert follower.alive(), follower.log_tail()
    assert get_key(follower.haddr, "while-out", level="none")[0] == 404, \
        "a node with another CA's certificate got the write"
    wait_until("the members log the refused handshake",
               lambda: any("peer TLS with" in n.log_text() and "failed" in n.log_text()
                           for n in nodes if n is not follower), 10.0)
    # back with its own certificate: it catches up
    follower.stop()
    follower.extra = tls_flags(certs, follower.id)
    follower.start()
    wait_until("the follower catches up",
               lambda: get_key(follower.haddr, "while-out", level="none") == (200, "1"),
               15.0)


def test_valid_certificate_cannot_pose_as_another_node(cluster, certs):
    nodes = start_tls_cluster(cluster, certs)
    target = nodes[0]
    ids = raft_ids(target)
    st = target.status()
    cid = int(st.get("cluster_id", "0"), 16)
    # node2's real certificate, but the handshake claims node1's Raft id
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(f"{certs}/node2.pem", f"{certs}/node2.key")
    ctx.load_verify_locations(f"{certs}/ca.pem")
    ctx.check_hostname = False
    raw = socket.create_connection(split_addr(target.raddr), timeout=5)
    s = ctx.wrap_socket(raw)
    s.sendall(hello(2, ids["node1"], ids["node0"], cid, fnv_name("node0")) +
              frame(b"\x00" * 32))
    assert closed_soon(s), "a connection posing as another node stays open"
    s.close()
    wait_until("the refusal is logged",
               lambda: "does not name" in target.log_text(), 5.0)
    # the cluster is fine
    r = set_keys(cluster.leader().haddr, {"still": "ok"})
    assert r.status == 200, r


def test_plain_tcp_forged_frame_refused(cluster, certs):
    nodes = start_tls_cluster(cluster, certs)
    target = nodes[0]
    ids = raft_ids(target)
    cid = int(target.status().get("cluster_id", "0"), 16)
    before = target.log_text().count("peer TLS with")
    s = socket.create_connection(split_addr(target.raddr), timeout=5)
    s.sendall(hello(2, ids["node1"], ids["node0"], cid, fnv_name("node0")) +
              frame(b"\x01" * 64))
    assert closed_soon(s), "a plain-TCP peer connection stays open"
    s.close()
    wait_until("the failed handshake is logged",
               lambda: target.log_text().count("peer TLS with") > before, 5.0)
    # many of them: the log line is rate-limited
    for _ in range(30):
        s = socket.create_connection(split_addr(target.raddr), timeout=5)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        closed_soon(s, 2.0)
        s.close()
    time.sleep(0.5)
    lines = target.log_text().count("peer TLS with") - before
    assert 1 <= lines <= 8, f"{lines} log lines for 31 bad connections"
    r = set_keys(cluster.leader().haddr, {"still": "ok"})
    assert r.status == 200, r


@pytest.mark.parametrize("cert,key,ca,says", [
    ("node0", "node1", "ca", "does not match"),
    ("missing", "node0", "ca", "No such file"),
    ("node0", "node0", "other/other-ca", "does not verify against the CA"),
    ("node1", "node1", "ca", "does not name this node (-id node0)"),
])
def test_bad_files_stop_the_node_before_its_directory(cluster, certs, cert, key, ca, says):
    node = cluster.add("node0", extra=[
        "-peer-tls-cert", f"{certs}/{cert}.pem", "-peer-tls-key", f"{certs}/{key}.key",
        "-peer-tls-ca", f"{certs}/{ca}.pem"]).start()
    wait_until("the node exits", lambda: not node.alive(), 10.0)
    assert node.proc.returncode != 0
    assert says in node.log_text(), node.log_tail()
    assert not os.path.exists(os.path.join(node.dir, "IDENTITY")), \
        "the node wrote its data directory before checking its TLS files"
