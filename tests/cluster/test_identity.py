"""Identity of nodes (docs/identity.md) on real processes: a voter whose data
directory was wiped comes back as a new incarnation and is re-added (never
counted before it has caught up), a wiped node started without -join cannot
pass for the member, -inmem voters rejoin, removed nodes stay out until they
are joined again, and the repair of a damaged directory leaves the cluster
whole.

test_wiped_voter_rejoins fails on craftd before incarnations: there the
wiped node voted with an empty log for a node lacking acknowledged writes
(run it with CRAFTD=<that binary> to see)."""
import json
import os
import socket
import shutil
import time

import pytest

from conftest import (assert_all_present, get_key, http, leader_id, set_keys,
                      status, wait_until)


def write_keys(addr, prefix, n):
    acked = {}
    for i in range(n):
        k, v = f"{prefix}{i}", f"v{i}"
        r = set_keys(addr, {k: v})
        assert r.status == 200, f"write {k}: {r}"
        acked[k] = v
    return acked


def member(st, name):
    """The member entry of name in a /status document, or None."""
    for m in (st or {}).get("members", []):
        if m.get("id") == name:
            return m
    return None


def wait_voter(cluster, nodes, name, not_raft_id=None, timeout=40.0):
    """Until the leader lists name as a voter (under another Raft id than
    not_raft_id, when given) and every node of nodes names that leader."""
    def done():
        ld = cluster.leader(among=nodes, timeout=timeout)
        m = member(ld.status(), name)
        if not m or not m.get("voter"):
            return False
        if not_raft_id is not None and m.get("raft_id") == not_raft_id:
            return False
        return all(leader_id(n.status()) == ld.id for n in nodes)
    wait_until(f"{name} a voter", done, timeout, interval=0.2)


def wipe(node):
    shutil.rmtree(node.dir)


def test_wiped_voter_rejoins(cluster, report):
    """node2 misses writes; node1, which has them, is wiped; node0, which
    has them too, is down. node1 restarted with -join must not help node2
    win an election: it is a stranger until re-added. Once node0 is back,
    node1 is re-added (learner, then voter) and nothing acknowledged is
    lost."""
    n0, n1, n2 = cluster.start(3)
    acked = write_keys(n0.haddr, "a", 20)
    old_id = member(n0.status(), "node1").get("raft_id")
    n2.stop()
    wait_until("a leader without node2", lambda: cluster.leader(among=[n0, n1]), 15)
    ld = cluster.leader(among=[n0, n1])
    acked.update(write_keys(ld.haddr, "w", 30))  # on node0 and node1 only
    n1.stop()
    wipe(n1)
    n0.stop()
    n2.start()
    n1.join = n2.haddr
    n1.start()
    # Long enough for an election (timeouts are 1-2 s): node2 lacks the
    # writes and must not lead with the wiped node's vote.
    time.sleep(5)
    st2 = n2.status()
    assert st2 is not None
    led = leader_id(st2)
    n0.start()
    cluster.wait_members([n0, n1, n2], timeout=40)
    # Before incarnations this fails: node2 led with node1's vote and its
    # log, without the writes, overwrote node0's.
    assert_all_present(cluster, [n0, n1, n2], acked)
    assert led is None, f"node2 led without the acknowledged writes: {st2}"
    wait_voter(cluster, [n0, n1, n2], "node1", not_raft_id=old_id)
    st = cluster.leader().status()
    m1 = member(st, "node1")
    assert m1["raft_id"] == n1.status()["raft_id"] != old_id, (m1, old_id)
    assert sorted(m["id"] for m in st["members"]) == ["node0", "node1", "node2"]
    assert "earlier incarnation of this node" in n1.log_text(), n1.log_tail(30)
    assert "rejoins as a new incarnation" in n2.log_text()  # it took the /join
    report(f"node1 re-added as {m1['raft_id']} (was {old_id}); "
           f"{len(acked)} acknowledged writes all present")


def test_wiped_voter_without_join_conflicts(cluster, report):
    """node2 wiped and started without -join bootstraps a cluster of its
    own, with a new cluster id: the real cluster's messages are refused, it
    says so (ERROR, /status conflict), refuses client requests, stays so
    after a restart, and the real cluster loses nothing. The repair (move
    the directory aside, -join) brings it back."""
    n0, n1, n2 = cluster.start(3)
    acked = write_keys(n0.haddr, "c", 30)
    cid = n0.status()["cluster_id"]
    assert len(cid) == 16 and cid == n2.status()["cluster_id"]
    n2.stop()
    wipe(n2)
    n2.join = None
    n2.start()

    def conflicted():
        st = n2.status()
        return st if st and st.get("conflict") else None
    st = wait_until("node2 reports the conflict", conflicted, 15)
    assert st["cluster_id"] not in ("", cid), st
    assert st["conflict"]["cluster_id"] == cid, st
    log = n2.log_text()
    assert "ERROR" in log and "conflict:" in log and "-join" in log, n2.log_tail(20)
    assert "move its data directory" in log
    # The real cluster says who answers at node2's address.
    ld = cluster.leader(among=[n0, n1])
    wait_until("the leader logs the refusal",
               lambda: "refuses this cluster" in ld.log_text(), 10)
    # node2 passes for nobody.
    r = set_keys(n2.haddr, {"x": "1"})
    assert r.status == 409 and "conflict" in r.error(), r
    r = http(n2.haddr, "GET", "/key/c1")
    assert r.status == 409, r
    # The real cluster goes on with its two voters and loses nothing.
    acked.update(write_keys(ld.haddr, "d", 20))
    assert_all_present(cluster, [n0, n1], acked)
    # Durable: a restart keeps refusing.
    n2.stop()
    n2.start()
    st = wait_until("node2 restarted", lambda: n2.status(), 10)
    assert st.get("conflict"), st
    assert set_keys(n2.haddr, {"x": "1"}).status == 409
    # The repair of docs/operations.md.
    n2.stop()
    os.rename(n2.dir, n2.dir + ".conflict")
    n2.join = n0.haddr
    n2.start()
    wait_voter(cluster, [n0, n1, n2], "node2")
    assert_all_present(cluster, [n0, n1, n2], acked)
    st = n2.status()
    assert st["cluster_id"] == cid and not st.get("conflict"), st
    report(f"conflict seen, {len(acked)} writes kept, node2 repaired")


def test_inmem_voter_restarted_rejoins(cluster, report):
    """Every -inmem start is a new incarnation: a restarted -inmem voter is
    re-added under a new Raft id and gets the data back."""
    n0, n1, n2 = cluster.start(3, extra=["-inmem"])
    acked = write_keys(n0.haddr, "m", 40)
    old_id = n2.status()["raft_id"]
    n2.kill9()
    ld = cluster.leader(among=[n0, n1])
    acked.update(write_keys(ld.haddr, "n", 10))
    n2.join = ld.haddr
    n2.start()
    wait_voter(cluster, [n0, n1, n2], "node2", not_raft_id=old_id)
    assert_all_present(cluster, [n0, n1, n2], acked)
    st = n2.status()
    assert st["raft_id"] != old_id and st["incarnation"] != "0" * 16, st
    report(f"-inmem node2 rejoined as {st['raft_id']} (was {old_id})")


def removed(node):
    st = node.status()
    return st if st and st.get("role") == "removed" else None


def test_removed_node_stays_out(cluster, report):
    """A removed node learns it (here from a member's /status: the leader
    stops sending to it at once), reports role removed, answers client
    requests with 410, never campaigns, stays removed across a restart, and
    comes back only when started with -join."""
    n0, n1, n2 = cluster.start(3)
    acked = write_keys(n0.haddr, "r", 20)
    old_id = n2.status()["raft_id"]
    ld = cluster.leader()
    t0 = time.monotonic()
    r = http(ld.haddr, "POST", "/remove", body={"id": "node2"})
    assert r.status == 200, r
    st = wait_until("node2 knows it was removed", lambda: removed(n2), 15)
    report(f"node2 knew it was removed {time.monotonic() - t0:.1f} s after the "
           f"/remove: {st['removed']['why']}")
    assert "reports leader" in st["removed"]["why"], st
    for method, path, body in (("GET", "/key/r1", None), ("POST", "/key", {"z": "1"}),
                               ("DELETE", "/key/r1", None), ("GET", "/key/r1?level=none", None)):
        r = http(n2.haddr, method, path, body=body)
        assert r.status == 410, (method, path, r)
        assert "removed" in r.error() and "-join" in r.error(), r
    # Restarted without -join: still removed, from its own directory, and
    # it never disturbs the cluster: no term moves.
    n2.stop()
    term = ld.status()["term"]
    n2.join = None  # with -join it would rejoin (below)
    n2.start()
    st = wait_until("node2 restarted", lambda: n2.status(), 10)
    assert st["role"] == "removed", st
    time.sleep(5)  # several election timeouts
    assert ld.status()["term"] == term and ld.is_leader()
    assert n2.status()["term"] == st["term"]
    since = n2.log_text().rsplit("==== start", 1)[1]
    assert "candidate" not in since, since[-2000:]
    assert set_keys(n2.haddr, {"z": "1"}).status == 410
    acked.update(write_keys(ld.haddr, "s", 10))
    # Restarted with -join: a member again, as a new incarnation.
    n2.stop()
    n2.join = ld.haddr
    n2.start()
    wait_voter(cluster, [n0, n1, n2], "node2", not_raft_id=old_id)
    assert_all_present(cluster, [n0, n1, n2], acked)
    assert n2.status()["role"] in ("follower", "leader")


def test_removed_while_down_and_leader_self_removal(cluster, report):
    """A node removed while it was down (it missed the entry) learns it from
    a member once it runs again; a leader that removes itself learns it from
    the entry, hands over, and is removed too."""
    n0, n1, n2, n3 = cluster.start(4)
    acked = write_keys(n0.haddr, "q", 10)
    n3.stop()
    ld = cluster.leader(among=[n0, n1, n2])
    assert http(ld.haddr, "POST", "/remove", body={"id": "node3"}).status == 200
    n3.start()
    st = wait_until("node3 knows it was removed", lambda: removed(n3), 15)
    assert "reports leader" in st["removed"]["why"], st
    # The leader removes itself.
    ld = cluster.leader(among=[n0, n1, n2])
    rest = [n for n in (n0, n1, n2) if n is not ld]
    assert http(ld.haddr, "POST", "/remove", body={"id": ld.id}).status == 200
    st = wait_until(f"{ld.name} knows it was removed", lambda: removed(ld), 15)
    assert "entry at index" in st["removed"]["why"], st
    new = cluster.leader(among=rest)
    acked.update(write_keys(new.haddr, "p", 10))
    assert_all_present(cluster, rest, acked)
    assert sorted(m["id"] for m in new.status()["members"]) == sorted(n.id for n in rest)


def corrupt_middle_of_log(datadir):
    segs = sorted(f for f in os.listdir(datadir) if f.startswith("log-"))
    assert segs, os.listdir(datadir)
    path = os.path.join(datadir, segs[0])
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 3)
        b = f.read(1)
        f.seek(size // 3)
        f.write(bytes([b[0] ^ 0xff]))


def test_damaged_directory_repair(cluster, report):
    """A damaged log (or identity file) stops the node with an error; moving
    the directory aside and starting with -join brings it back as a new
    incarnation with all the data, and the cluster is whole again."""
    n0, n1, n2 = cluster.start(3)
    acked = write_keys(n0.haddr, "e", 60)
    old_id = n2.status()["raft_id"]
    n2.stop()
    corrupt_middle_of_log(n2.dir)
    n2.start()
    rc = n2.proc.wait(timeout=10)
    assert rc != 0, n2.log_tail(10)
    assert "corrupt" in n2.log_text().lower(), n2.log_tail(10)
    ld = cluster.leader(among=[n0, n1])
    acked.update(write_keys(ld.haddr, "f", 10))
    os.rename(n2.dir, n2.dir + ".damaged")
    n2.join = ld.haddr
    n2.start()
    wait_voter(cluster, [n0, n1, n2], "node2", not_raft_id=old_id)
    assert_all_present(cluster, [n0, n1, n2], acked)
    # A damaged identity file: the node cannot know its Raft id and says
    # what to do.
    n1.stop()
    with open(os.path.join(n1.dir, "IDENTITY"), "r+b") as f:
        f.seek(20)
        f.write(b"\xff")
    n1.start()
    assert n1.proc.wait(timeout=10) != 0
    log = n1.log_text()
    assert "IDENTITY" in log and "-join" in log, n1.log_tail(10)
    old1 = member(cluster.leader(among=[n0, n2]).status(), "node1")["raft_id"]
    os.rename(n1.dir, n1.dir + ".damaged")
    n1.join = n0.haddr
    n1.start()
    wait_voter(cluster, [n0, n1, n2], "node1", not_raft_id=old1)
    assert_all_present(cluster, [n0, n1, n2], acked)
    st = cluster.leader().status()
    assert sorted((m["id"], m["voter"]) for m in st["members"]) == \
        [("node0", True), ("node1", True), ("node2", True)]
    report(f"{len(acked)} writes kept through two repairs")


OLD_CRAFTD = os.environ.get("CRAFTD_OLD")


@pytest.mark.skipif(not OLD_CRAFTD, reason="set CRAFTD_OLD to a craftd from before "
                    "incarnations to test the upgrade of its data directories")
def test_directories_from_before_incarnations(cluster, report):
    """A cluster made by a craftd before incarnations (no IDENTITY, Raft ids
    the hashes of the names) runs on after an upgrade with incarnation 0 and
    no cluster id, and a wiped member is still re-added as a new
    incarnation."""
    import conftest
    new = conftest.CRAFTD
    conftest.CRAFTD = os.path.abspath(OLD_CRAFTD)
    try:
        n0, n1, n2 = cluster.start(3)
        acked = write_keys(n0.haddr, "o", 30)
        for n in (n0, n1, n2):
            n.stop()
    finally:
        conftest.CRAFTD = new
    for n in (n0, n1, n2):
        assert not os.path.exists(os.path.join(n.dir, "IDENTITY"))
        n.start()
    cluster.wait_members([n0, n1, n2], timeout=20)
    st = n0.status()
    assert st["cluster_id"] == "" and st["incarnation"] == "0" * 16, st
    assert_all_present(cluster, [n0, n1, n2], acked)
    old_id = member(st, "node2")["raft_id"]
    n2.stop()
    wipe(n2)
    n2.start()  # with -join (it joined at first)
    wait_voter(cluster, [n0, n1, n2], "node2", not_raft_id=old_id)
    acked.update(write_keys(n0.haddr, "u", 5))
    assert_all_present(cluster, [n0, n1, n2], acked)
    assert os.path.exists(os.path.join(n0.dir, "IDENTITY"))
    report(f"upgraded cluster kept {len(acked)} writes; wiped node2 re-added "
           f"as {member(n0.status(), 'node2')['raft_id']} (was {old_id})")


def test_gone_join_does_not_evict_new_incarnation(cluster, report):
    """A /join whose client went away is dropped. Here an earlier -inmem
    incarnation of node2 asked to join and died before the answer; the
    member that got the request must not keep working for it. Before the
    fix it did, until the request's deadline: it removed node2's live
    incarnation (to add the dead one), and node2, seeing itself removed,
    left the cluster for good."""
    n0, n1, n2 = cluster.start(3, extra=["-inmem", "-request-timeout-ms", "30000"])
    acked = write_keys(n0.haddr, "g", 100)  # the dead learner is never promoted
    old_id = n2.status()["raft_id"]
    n2.kill9()
    ld = cluster.leader(among=[n0, n1])
    # The dead incarnation's join: sent in full, then the client is gone.
    host, port = ld.haddr.rsplit(":", 1)
    body = json.dumps({"id": n2.id, "addr": n2.raddr, "http_addr": n2.haddr,
                       "incarnation": "1"}).encode()
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"POST /join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    time.sleep(0.3)
    s.close()
    time.sleep(1.0)  # the member notices the client is gone (100 ms sweeps)
    n2.join = ld.haddr
    n2.start()
    wait_voter(cluster, [n0, n1, n2], "node2", not_raft_id=old_id)
    new_id = n2.status()["raft_id"]
    t_end = time.monotonic() + 8
    while time.monotonic() < t_end:
        st = n2.status()
        assert st and st.get("role") != "removed", st
        m = member(cluster.leader(among=[n0, n1, n2]).status(), "node2")
        assert m and m.get("raft_id") == new_id, m
        time.sleep(0.2)
    assert_all_present(cluster, [n0, n1, n2], acked)
    report(f"node2 stayed a member as {new_id} after a gone client's join")


def test_join_never_readds_a_removed_raft_id(cluster, report):
    """Raft ids never come back. A join whose Raft id was added and then
    removed while it still waited (here by POST /remove; also by a
    concurrent join of another incarnation of the name) is answered with an
    error; it must not add that Raft id again: a node that saw itself
    removed stays out, and the cluster would count a member that never
    answers."""
    n0, n1, n2 = cluster.start(3)
    write_keys(n0.haddr, "j", 100)  # the learner below is never promoted
    n2.stop()
    ld = cluster.leader(among=[n0, n1])
    rid = None
    body = json.dumps({"id": "node9", "addr": "127.0.0.1:9", "incarnation": "1"}).encode()
    host, port = ld.haddr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=20)
    s.sendall(b"POST /join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    wait_until("node9 a learner", lambda: member(ld.status(), "node9"), 10)
    rid = member(ld.status(), "node9")["raft_id"]
    r = http(ld.haddr, "POST", "/remove", body={"id": "node9"})
    assert r.status == 200, r
    t_end = time.monotonic() + 3
    while time.monotonic() < t_end:
        m = member(ld.status(), "node9")
        assert m is None, f"Raft id {rid} was removed and added again: {m}"
        time.sleep(0.1)
    answer = s.recv(4096)
    s.close()
    assert answer.startswith(b"HTTP/1.1 409"), answer
    report(f"node9 ({rid}) removed while joining stays out; its join got 409")

