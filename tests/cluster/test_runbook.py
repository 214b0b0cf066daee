"""The runbooks of docs/operations.md ("Runbooks"), step by step.

Each test follows one runbook in the order the page gives its steps, with
the same programs: craftd with the flags the page shows, craftctl
(build/craftctl) where the page uses it, and the HTTP requests the page
sends with curl (sent here with the suite's client). Addresses are the
suite's loopback ports instead of 10.0.0.x. The comments name the step
(R1.3 = runbook 1, step 3). At each step the test checks what the page
says the operator should see, and at the end that no acknowledged write
was lost.

CRAFTD_OLD=<path of an older craftd> makes test_rolling_upgrade start the
cluster on that binary and upgrade it to CRAFTD; CRAFTD_UPGRADE_FROM=<git
revision> builds that revision first, as bench/run.sh builds its baseline
(`git archive <rev> | tar -x -C dir && make -C dir build/craftd`, about
30 s on 2 cores). Without either the upgrade restarts each node on the
same binary, which exercises the procedure but not a change of version."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import (CRAFTD, assert_all_present, free_ports, http, leader_id, set_keys,
                      status, wait_until)
from test_ops import parse_metrics, value

CRAFTCTL = os.path.join(os.path.dirname(CRAFTD), "craftctl")


def ctl(endpoints, *args, timeout=30):
    """craftctl --endpoints a,b,c args...: (exit code, stdout, stderr)."""
    r = subprocess.run([CRAFTCTL, "--endpoints", ",".join(endpoints), *args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def member_rows(endpoints):
    """`craftctl -o json member list`: {id: member}."""
    rc, out, err = ctl(endpoints, "-o", "json", "member", "list")
    assert rc == 0, (rc, out, err)
    return {m["id"]: m for m in json.loads(out)}


def voters_are(endpoints, names):
    """True once `craftctl member list` shows exactly these names, all voters."""
    rows = member_rows(endpoints)
    return set(rows) == set(names) and all(m["voter"] for m in rows.values())


def readyz(addr):
    try:
        return http(addr, "GET", "/readyz", timeout=2)
    except OSError:
        return None


def wait_readyz(node, timeout=30):
    """Until `curl <node>/readyz` answers 200 (fails early if it exits)."""
    def ready():
        assert node.alive(), f"{node.name} exited: {node.log_tail(20)}"
        r = readyz(node.haddr)
        return r is not None and r.status == 200 and r.json()["ready"]
    wait_until(f"{node.name} /readyz 200", ready, timeout)


def health_ok(nodes):
    """`craftctl health` over these nodes: exit 0, every line "ready"."""
    rc, out, _ = ctl([n.haddr for n in nodes], "health")
    return rc == 0 and len(out.splitlines()) == len(nodes) and \
        all(ln.endswith(" ready") for ln in out.splitlines())


def write_batches(addr, prefix, n, expected, batch=100):
    """n acknowledged keys (POST /key, batch pairs an entry) into expected."""
    for base in range(0, n, batch):
        pairs = {f"{prefix}{i:05d}": f"v{i}-{prefix}" for i in range(base, min(n, base + batch))}
        r = set_keys(addr, pairs)
        assert r.status == 200, r
        expected.update(pairs)


def move_aside(node):
    """mv <dir> <dir>.damaged-<time>; the directory is kept, not deleted."""
    aside = f"{node.dir}.damaged-{int(time.time())}"
    shutil.move(node.dir, aside)
    return aside


def raft_id_of(endpoints, name):
    return member_rows(endpoints)[name]["raft_id"]


# ---- Runbook 1: replace a failed node ---------------------------------------

def test_replace_failed_node(cluster):
    nodes = cluster.start(3)
    eps = [n.haddr for n in nodes]
    expected = {}
    write_batches(nodes[0].haddr, "r1/", 300, expected)

    # R1 (a): node2 failed for good (its machine is gone).
    failed = nodes[2]
    failed.kill9()
    stay = [nodes[0], nodes[1]]
    stay_eps = [n.haddr for n in stay]
    # R1.1: craftctl member list shows it still counted as a voter.
    assert failed.id in member_rows(stay_eps)
    # R1.2: craftctl member remove node2, sent to members that stay.
    rc, out, err = ctl(stay_eps, "member", "remove", failed.id)
    assert rc == 0, (rc, out, err)
    assert voters_are(stay_eps, [n.id for n in stay])
    write_batches(stay[0].haddr, "r1b/", 100, expected)
    # R1.3: a new node with an empty directory and -join <a member>.
    new = cluster.add("node3", join=stay[1].haddr).start()
    # R1.4: member list shows it a voter; craftctl health: all ready.
    wait_until("node3 a voter", lambda: voters_are(stay_eps, ["node0", "node1", "node3"]), 40)
    nodes = stay + [new]
    wait_until("craftctl health all ready", lambda: health_ok(nodes), 20)
    assert_all_present(cluster, nodes, expected)

    # R1 (b): node1's disk is replaced: the same name comes back empty.
    wiped = nodes[1]
    old_raft_id = raft_id_of([nodes[0].haddr], wiped.id)
    # R1.5: stop it (it may be dead already).
    wiped.stop()
    # R1.6: move its directory aside.
    move_aside(wiped)
    # R1.7: start it with its usual flags plus -join <a member> (node1
    # started with -join: the same command).
    assert wiped.join
    wiped.start()
    # R1.8: a voter again, under a new raft_id; all nodes name one leader.
    eps = [n.haddr for n in nodes]

    def readded():
        rows = member_rows([nodes[0].haddr])
        m = rows.get(wiped.id)
        return m and m["voter"] and m["raft_id"] != old_raft_id and len(rows) == 3
    wait_until("node1 re-added under a new Raft id", readded, 40)
    assert "joined the cluster" in wiped.log_text()
    wait_until("one leader", lambda: len({leader_id(status(a)) for a in eps}) == 1
               and leader_id(status(eps[0])), 10)
    wait_readyz(wiped)
    assert_all_present(cluster, nodes, expected)


# ---- Runbook 2: a majority lost for good -----------------------------------

def test_majority_lost_for_good(cluster):
    nodes = cluster.start(5)
    expected = {}
    write_batches(nodes[0].haddr, "r2/", 500, expected)
    leader = cluster.leader()
    old_cluster = leader.status()["cluster_id"]
    # Three of five lost for good, among them the leader: no quorum.
    lost = [leader] + [n for n in nodes if n is not leader][:2]
    survivors = [n for n in nodes if n not in lost]
    for n in lost:
        n.kill9()
    for n in survivors:  # what the page says the operator sees
        wait_until(f"{n.name}: /readyz 503 no leader known",
                   lambda n=n: (lambda r: r is not None and r.status == 503
                                and "no leader known" in r.json()["error"])(readyz(n.haddr)), 15)
    r = set_keys(survivors[0].haddr, {"r2/after-loss": "x"}, timeout=12)
    assert r.status == 503, r
    # R2.2: the survivor with the highest last_index in /status.
    last = {n.name: status(n.haddr)["last_index"] for n in survivors}
    pick = max(survivors, key=lambda n: last[n.name])
    other = next(n for n in survivors if n is not pick)
    # R2.3: stop every survivor; a copy of the chosen one's directory.
    for n in survivors:
        n.stop()
    shutil.copytree(pick.dir, pick.dir + ".before-force", symlinks=True)
    # R2.4: start it once with its flags, without -join, plus
    # -force-new-cluster.
    usual_join, pick.join = pick.join, None
    pick.extra = ["-force-new-cluster"]
    pick.start()
    wait_readyz(pick)
    st = pick.status()
    assert [m["id"] for m in st["members"]] == [pick.id], st
    assert st["cluster_id"] and st["cluster_id"] != old_cluster, st
    assert "is now cluster" in pick.log_text(), pick.log_tail()
    assert st["last_index"] > last[pick.name], (st, last)
    # R2.5: restarted with its usual flags, without -force-new-cluster.
    pick.stop()
    pick.extra = []
    pick.join = usual_join
    pick.start()
    wait_readyz(pick)
    assert pick.status()["cluster_id"] == st["cluster_id"]
    # R2.6: the other survivor's directory aside, it joins afresh; and one
    # new node. R2.7: `craftctl member list`: three voters, all ready.
    move_aside(other)
    other.join = pick.haddr
    other.start()
    fresh = cluster.add("fresh", join=pick.haddr).start()
    grown = [pick, other, fresh]
    wait_until("three voters", lambda: voters_are([pick.haddr], [n.id for n in grown]), 40)
    wait_until("craftctl health all ready", lambda: health_ok(grown), 20)
    # Every write acknowledged before the loss is there.
    assert_all_present(cluster, grown, expected)


# ---- Runbook 3: move a cluster to new addresses -------------------------------

def test_move_to_new_addresses(cluster):
    nodes = cluster.start(3)
    expected = {}
    write_batches(nodes[0].haddr, "r3/", 300, expected)

    # What does not work (the page says so): restarting a member from its
    # directory with a new -raddr/-haddr. The others keep its old
    # addresses; it hears no leader, and -join is ignored with state.
    n2 = nodes[2]
    n2.stop()
    old_addrs = (n2.haddr, n2.raddr)
    hp, rp = free_ports(2)
    n2.haddr, n2.raddr = f"127.0.0.1:{hp}", f"127.0.0.1:{rp}"
    n2.start()
    wait_until("node2 at its new address answers /readyz", lambda: readyz(n2.haddr), 10)
    time.sleep(3)  # a few election timeouts
    r = readyz(n2.haddr)
    assert r.status == 503 and not r.json()["has_leader"], r
    assert member_rows([nodes[0].haddr])[n2.id]["raft_addr"] == old_addrs[1]
    # ... and it says why, naming the address the cluster knows
    assert f"runs with -raddr {n2.raddr}, but the cluster knows it at {old_addrs[1]}" \
        in n2.log_text(), n2.log_text()[-2000:]
    n2.stop()
    n2.haddr, n2.raddr = old_addrs
    n2.start()
    wait_readyz(n2)

    # R3.1-R3.4 for each old member in turn: a new member at the new
    # address joins, becomes a voter, the old one is removed and stopped.
    current = list(nodes)
    for i, old in enumerate(nodes):
        stays = [n for n in current if n is not old]
        new = cluster.add(f"new{i}", join=stays[0].haddr).start()  # R3.1
        names = [n.id for n in current] + [new.id]
        wait_until(f"new{i} a voter", lambda: voters_are([stays[0].haddr], names), 40)  # R3.2
        rc, out, err = ctl([n.haddr for n in stays], "member", "remove", old.id)  # R3.3
        assert rc == 0, (rc, out, err)
        current = stays + [new]
        assert voters_are([new.haddr], [n.id for n in current])
        old.stop()  # R3.4
        wait_until("craftctl health all ready", lambda: health_ok(current), 20)
        write_batches(new.haddr, f"r3-{i}/", 50, expected)
    # R3.5: clients and scrapers now use the new addresses only.
    assert {n.name for n in current} == {"new0", "new1", "new2"}
    assert_all_present(cluster, current, expected)


# ---- Runbook 4: rolling upgrade ------------------------------------------------

def older_craftd(tmp_path):
    """The craftd to upgrade from: $CRAFTD_OLD, or one built from the
    revision $CRAFTD_UPGRADE_FROM (about 30 s), or None."""
    old_bin = os.environ.get("CRAFTD_OLD")
    rev = os.environ.get("CRAFTD_UPGRADE_FROM")
    if rev and not old_bin:
        src = tmp_path / "older-src"
        src.mkdir()
        root = os.path.join(os.path.dirname(DOC), "..")
        arch = subprocess.run(["git", "-C", root, "archive", rev], capture_output=True,
                              timeout=60)
        assert arch.returncode == 0, arch.stderr
        subprocess.run(["tar", "-x", "-C", str(src)], input=arch.stdout, check=True, timeout=60)
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        mk = subprocess.run(["make", "-C", str(src), "-s", "-j2", "build/craftd"], env=env,
                            capture_output=True, text=True, timeout=600)
        assert mk.returncode == 0, mk.stdout + mk.stderr
        old_bin = str(src / "build" / "craftd")
    if old_bin:
        assert os.access(old_bin, os.X_OK), f"{old_bin} is not a program"
    return old_bin


def test_rolling_upgrade(cluster, tmp_path, report):
    old_bin = older_craftd(tmp_path)
    report(f"rolling upgrade from {old_bin or 'the same binary'}")

    def on(node, binary):
        """node's command line, with this craftd."""
        node.args = lambda node=node: [binary] + type(node).args(node)[1:]
        node.binary = os.path.realpath(binary)

    def runs(node):
        """The program the node's process runs."""
        return os.path.realpath(f"/proc/{node.pid}/exe")

    first = cluster.add("node0")
    on(first, old_bin or CRAFTD)
    first.start().wait_ready()
    nodes = [first]
    for i in (1, 2):
        n = cluster.add(f"node{i}", join=first.haddr)
        on(n, old_bin or CRAFTD)
        nodes.append(n.start())
        n.wait_ready()
    cluster.wait_members(nodes)
    assert [runs(n) for n in nodes] == [n.binary for n in nodes]
    expected = {}
    write_batches(first.haddr, "r4/", 200, expected)
    leader = cluster.leader()
    followers = [n for n in nodes if n is not leader]
    versions = set()

    def upgrade(node, step):
        node.stop()  # R4.2 (SIGTERM)
        on(node, CRAFTD)  # R4.3: the new binary, the same flags and directory
        node.start()
        assert runs(node) == os.path.realpath(CRAFTD)
        wait_readyz(node)  # R4.4
        wait_until("craftctl health all ready", lambda: health_ok(nodes), 20)
        versions.add(node.status()["version"])
        write_batches(next(n for n in nodes if n is not node).haddr, f"r4-{step}/", 50, expected)

    # R4.1: all ready before starting.
    wait_until("craftctl health all ready", lambda: health_ok(nodes), 20)
    for i, n in enumerate(followers):  # followers first
        upgrade(n, i)
    # R4.5: the leader last, after a transfer to an upgraded follower.
    rc, out, err = ctl([n.haddr for n in nodes], "transfer", followers[0].id)
    assert rc == 0, (rc, out, err)
    wait_until("the transfer", lambda: cluster.leader().id == followers[0].id, 10)
    upgrade(leader, "leader")
    assert len(versions) == 1, versions
    assert_all_present(cluster, nodes, expected)


# ---- The operator's journey ("Done means" of the page) ------------------------

ALERT_FAMILIES = {  # what the page's alerts use
    "craftd_raft_is_leader": "gauge",
    "craftd_raft_term": "gauge",
    "craftd_raft_commit_index": "gauge",
    "craftd_raft_applied_index": "gauge",
    "craftd_raft_leader_changes_total": "counter",
    "craftd_raft_proposals_total": "counter",
    "craftd_http_requests_total": "counter",
    "craftd_storage_fsync_duration_seconds": "histogram",
    "process_start_time_seconds": "gauge",
}


def test_operator_journey(cluster, tmp_path):
    # J2: a 3-node cluster: node0 bootstraps, the others -join it.
    nodes = cluster.start(3)
    eps = [n.haddr for n in nodes]
    assert voters_are(eps, ["node0", "node1", "node2"])
    wait_until("craftctl health all ready", lambda: health_ok(nodes), 20)
    expected = {}
    write_batches(nodes[1].haddr, "j/", 1000, expected)

    # J3: scrape /metrics of each node, check it with promtool, and the
    # families the alerts use; exactly one node reports is_leader 1.
    promtool = shutil.which("promtool")
    leaders = 0
    for n in nodes:
        r = http(n.haddr, "GET", "/metrics")
        assert r.status == 200, r
        fams = parse_metrics(r.body.decode())
        for name, typ in ALERT_FAMILIES.items():
            assert fams.get(name, {}).get("type") == typ, (n.name, name, fams.get(name))
        leaders += value(fams, "craftd_raft_is_leader")
        assert value(fams, "craftd_raft_applied_index") <= value(fams, "craftd_raft_commit_index")
        if promtool:
            p = subprocess.run([promtool, "check", "metrics"], input=r.body,
                               capture_output=True, timeout=30)
            assert p.returncode == 0, p.stdout + p.stderr
    assert leaders == 1

    # J4: craftctl backup; the file holds every write so far.
    backup = str(tmp_path / "craftd.snap")
    rc, out, err = ctl(eps, "-o", "json", "backup", backup)
    assert rc == 0, (rc, out, err)
    at = json.loads(out)["index"]
    backed_up = dict(expected)
    write_batches(nodes[0].haddr, "after-backup/", 100, expected)

    # J5: two nodes lost for good; the survivor is forced into a new
    # cluster (runbook 2) and two fresh nodes join it.
    lost, survivor = nodes[:2], nodes[2]
    for n in lost:
        n.kill9()
    survivor.stop()
    usual_join, survivor.join = survivor.join, None
    survivor.extra = ["-force-new-cluster"]
    survivor.start()
    wait_readyz(survivor)
    survivor.stop()
    survivor.extra = []
    survivor.join = usual_join
    survivor.start()
    wait_readyz(survivor)
    fresh = [cluster.add(f"fresh{i}", join=survivor.haddr).start() for i in (1, 2)]
    grown = [survivor] + fresh
    wait_until("three voters", lambda: voters_are([survivor.haddr], [n.id for n in grown]), 40)
    wait_until("craftctl health all ready", lambda: health_ok(grown), 20)
    assert_all_present(cluster, grown, expected)

    # J6: the backup restored elsewhere: a new one-member cluster with
    # exactly the keys of the backup, each with its value.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    restored = cluster.add("restored", extra=["-restore", backup],
                           datadir=str(elsewhere / "data")).start()
    wait_readyz(restored, timeout=60)
    st = restored.status()
    assert [m["id"] for m in st["members"]] == ["restored"], st
    assert st["applied_index"] >= at, (st, at)
    rc, out, err = ctl([restored.haddr], "list")
    assert rc == 0, (rc, err)
    got = dict(ln.split("\t", 1) for ln in out.splitlines())
    assert got == backed_up, (len(got), len(backed_up),
                              sorted(set(got) ^ set(backed_up))[:5])


# ---- The page itself: its commands are ones craftd and craftctl take -------

DOC = os.path.join(os.path.dirname(CRAFTD), "..", "docs", "operations.md")


def runbook_commands():
    """(section, command line) of every craftd and craftctl line in the
    fenced blocks of the page's "Runbooks" (continuations joined, trailing
    comments dropped)."""
    text = open(DOC).read()
    start = text.index("\n## Runbooks\n")
    end = text.index("\n## ", start + 1)
    section, out, in_block, pending = "", [], False, ""
    for line in text[start:end].splitlines():
        s = line.strip()
        if s.startswith("### "):
            section = s[4:]
        elif s.startswith("```"):
            in_block = not in_block
        elif in_block:
            s = pending + s
            if s.endswith("\\"):
                pending = s[:-1] + " "
                continue
            pending = ""
            s = s.split("  #")[0].strip()
            if s.split()[:1] in (["craftd"], ["craftctl"]):
                out.append((section, s))
    return out


def test_runbook_commands_are_ones_craftd_and_craftctl_take():
    cmds = runbook_commands()
    assert len(cmds) >= 15, cmds
    helptext = subprocess.run([CRAFTD, "-h"], capture_output=True, text=True).stdout
    flags = set(re.findall(r"^  (-[a-z-]+)", helptext, re.M))
    assert "-join" in flags and "-force-new-cluster" in flags, helptext[:300]
    for section, cmd in cmds:
        words = cmd.split()
        if words[0] == "craftd":
            used = [w for w in words[1:] if w.startswith("-")]
            assert set(used) <= flags, (section, cmd, set(used) - flags)
            assert not ({"-join", "-force-new-cluster"} <= set(used)), (section, cmd)
            assert "-id" in used and "-haddr" in used and "-raddr" in used, (section, cmd)
            assert words[-1].startswith("/var/lib/craftd/"), (section, cmd)
        else:
            rest = words[1:]
            while rest and rest[0] in ("--endpoints", "-o"):
                rest = rest[2:]
            assert rest, (section, cmd)
            r = subprocess.run([CRAFTCTL, rest[0], "--help"], capture_output=True, text=True)
            assert r.returncode == 0, (section, cmd, r.stderr)
            if rest[0] == "member":
                assert rest[1] in ("list", "remove"), (section, cmd)  # never add: see the page
    # every runbook names the test that runs it, and that test is here
    text = open(DOC).read()
    for name in re.findall(r"test_runbook\.py::(test_\w+)", text):
        assert callable(globals().get(name)), name
