"""craftd -force-new-cluster (docs/operations.md, "A quorum lost for good").

A 3-node cluster loses two nodes for good (kill -9, directories never used
again): the third, restarted with -force-new-cluster, keeps every write it
has, also the one its log held uncommitted, accepts writes alone, lists
only itself, and logs each member it dropped. An old member restarted from
its directory is refused by the new cluster id: it neither joins nor leads
(no split brain), and its log says why. A restart without the flag is a
plain restart. Missing and empty directories, -join and -restore are
refused with nothing written."""
import os
import re
import subprocess
import time

from conftest import CRAFTD, http, key_path, leader_id, set_keys, wait_until


def members(st):
    return sorted((m["id"], m.get("voter", True)) for m in st["members"])


def run_refused(args, timeout=30):
    """A craftd run that must exit by itself: (exit code, stderr)."""
    p = subprocess.run([CRAFTD, *args], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def test_quorum_lost_for_good(cluster):
    # small snapshots: the old members are in the snapshot's configuration
    extra = ["-request-timeout-ms", "1500", "-snapshot-threshold", "8"]
    nodes = cluster.start(3, extra=extra)
    leader = cluster.leader()
    lost = [n for n in nodes if n is not leader]
    written = {f"k/{i:04d}": f"v{i}" for i in range(300)}
    for i in range(0, 300, 100):
        r = set_keys(leader.haddr, {k: written[k] for k in list(written)[i:i + 100]})
        assert r.status == 200, r
    old_st = leader.status()
    old_cluster = old_st["cluster_id"]
    assert old_cluster and len(old_st["members"]) == 3, old_st
    lost_ids = {n.id: (st_m["raft_id"], n.raddr) for n in lost
                for st_m in old_st["members"] if st_m["id"] == n.id}
    assert len(lost_ids) == 2, old_st

    # Two nodes gone for good; the leader appends a write it can no longer
    # commit (still leader for up to an election timeout).
    for n in lost:
        n.kill9()
    r = http(leader.haddr, "PUT", key_path("uncommitted"), body="kept", timeout=8)
    assert r.status != 200 and r.status != 201, r
    assert r.status == 503 and "may or may not" in r.body.decode(), \
        f"the write was not placed in the leader's log: {r}"
    leader.kill9()

    survivor = leader
    survivor.extra = extra + ["-force-new-cluster"]
    survivor.start()
    survivor.wait_ready(timeout=30)
    st = survivor.status()
    assert members(st) == [(survivor.id, True)], st
    assert st["cluster_id"] and st["cluster_id"] != old_cluster, (st, old_cluster)
    assert st["raft_id"] == next(m["raft_id"] for m in old_st["members"]
                                 if m["id"] == survivor.id), "the Raft id changed"
    assert "conflict" not in st and st.get("role") != "removed", st
    # every old write, and the uncommitted one, now committed
    for k, v in list(written.items())[::7] + [("k/0299", "v299")]:
        r = http(survivor.haddr, "GET", key_path(k))
        assert r.status == 200 and r.json() == {k: v}, (k, r)
    log = survivor.log_text().split("==== start:")[-1]
    r = http(survivor.haddr, "GET", key_path("uncommitted"))
    assert r.status == 200 and r.json() == {"uncommitted": "kept"}, r
    m = re.search(r"WARN .*-force-new-cluster: kept (\d+) entr(y|ies) \(index", log)
    assert m and int(m.group(1)) >= 1, log
    # one ERROR line per dropped member, with its id and address, a summary
    for name, (raft_id, raddr) in lost_ids.items():
        lines = [ln for ln in log.splitlines() if f"dropped voter {name} " in ln]
        assert len(lines) == 1 and " ERROR " in lines[0], log
        assert raft_id in lines[0] and raddr in lines[0], lines
    summary = [ln for ln in log.splitlines() if " is now cluster " in ln]
    assert len(summary) == 1 and " ERROR " in summary[0], log
    assert old_cluster in summary[0] and st["cluster_id"] in summary[0], summary
    assert "dropped 2 members (2 voters, 0 learners)" in summary[0], summary
    # it serves writes alone
    r = set_keys(survivor.haddr, {"after": "force"})
    assert r.status == 200, r
    r = http(survivor.haddr, "PUT", key_path("k/0001"), body="new")
    assert r.status == 200, r

    # An old member comes back with its directory: refused, it neither
    # joins nor leads, and it says why; the new cluster is unharmed.
    old = lost[0]
    old.extra = extra
    old.start()
    wait_until("the old member logs why it is refused",
               lambda: "-force-new-cluster" in old.log_text().split("==== start:")[-1], 20)
    wait_until("the new cluster logs the old member it refuses",
               lambda: "an old member of the cluster this node left"
               in survivor.log_text().split("==== start:")[-1], 20)
    time.sleep(3)  # a few election timeouts
    assert old.alive(), old.log_tail()
    ost = old.status()
    assert ost is not None and ost["cluster_id"] == old_cluster, ost
    assert leader_id(ost) in (None, survivor.id) and ost["leader"].get("id") != old.id, ost
    r = set_keys(old.haddr, {"split": "brain"})
    assert r.status != 200, r
    st = survivor.status()
    assert members(st) == [(survivor.id, True)] and leader_id(st) == survivor.id, st
    assert "conflict" not in st, st
    assert http(survivor.haddr, "GET", key_path("split")).status == 404
    r = set_keys(survivor.haddr, {"while-old-member-up": "yes"})
    assert r.status == 200, r
    old.stop()

    # A restart without the flag is a plain restart of the new cluster.
    new_cluster = st["cluster_id"]
    survivor.stop()
    survivor.extra = extra
    survivor.start()
    survivor.wait_ready(timeout=30)
    st = survivor.status()
    assert st["cluster_id"] == new_cluster and members(st) == [(survivor.id, True)], st
    log = survivor.log_text().split("==== start:")[-1]
    assert "dropped" not in log and "-force-new-cluster" not in log, log
    for k, v in [("k/0001", "new"), ("after", "force"), ("while-old-member-up", "yes"),
                 ("k/0150", "v150")]:
        r = http(survivor.haddr, "GET", key_path(k))
        assert r.status == 200 and r.json() == {k: v}, (k, r)
    r = set_keys(survivor.haddr, {"after-restart": "ok"})
    assert r.status == 200, r
    # and the new cluster grows as any other
    grown = cluster.add("grown", join=survivor.haddr, extra=extra).start()
    grown.wait_ready(timeout=30)
    cluster.wait_members([survivor, grown], timeout=30)
    assert wait_until("the joiner has the kept keys", lambda: http(
        grown.haddr, "GET", key_path("k/0299") + "?level=none").status == 200, 30)


def test_force_new_refusals(cluster, tmp_path):
    work = str(tmp_path / "refusals")
    os.mkdir(work)
    base = ["-id", "x", "-haddr", "127.0.0.1:1", "-raddr", "127.0.0.1:2",
            "-force-new-cluster"]

    missing = os.path.join(work, "missing")
    rc, err = run_refused(base + [missing])
    assert rc == 1 and "does not exist" in err and missing in err, err
    assert not os.path.exists(missing), "a refused run created the directory"

    empty = os.path.join(work, "empty")
    os.mkdir(empty)
    rc, err = run_refused(base + [empty])
    assert rc == 1 and "is empty" in err and empty in err, err
    assert os.listdir(empty) == []

    junk = os.path.join(work, "junk")
    os.mkdir(junk)
    with open(os.path.join(junk, "notes.txt"), "w") as f:
        f.write("no state here")
    rc, err = run_refused(base + [junk])
    assert rc == 1 and "holds no Raft state" in err, err
    assert "IDENTITY" not in os.listdir(junk)

    # a node with state: -join and -restore are refused before it is touched
    node = cluster.add("node0").start()
    node.wait_ready()
    r = set_keys(node.haddr, {"a": "1"})
    assert r.status == 200, r
    cid = node.status()["cluster_id"]
    node.stop()
    before = sorted(os.listdir(node.dir))
    rc, err = run_refused(base + ["-join", "127.0.0.1:3", node.dir])
    assert rc == 2 and "-force-new-cluster" in err and "-join" in err, err
    rc, err = run_refused(base + ["-restore", os.path.join(work, "b.snap"), node.dir])
    assert rc == 2 and "-force-new-cluster" in err and "-restore" in err, err
    rc, err = run_refused(base + ["-inmem", node.dir])
    assert rc == 2 and "-inmem" in err, err
    # never from the environment: the node restarts as it was
    env = dict(os.environ, CRAFTD_FORCE_NEW_CLUSTER="true")
    assert sorted(os.listdir(node.dir)) == before
    p = subprocess.Popen(node.args(), env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until("the node serves", lambda: leader_id(node.status()), 15)
        assert node.status()["cluster_id"] == cid
    finally:
        p.terminate()
        _, errb = p.communicate(timeout=15)
    assert b"-force-new-cluster" not in errb, errb
