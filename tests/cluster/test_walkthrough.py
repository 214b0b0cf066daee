"""hraftd's README walkthrough, verbatim with `hraftd` -> `craftd` (only the
data directories are under the test's tmp_path instead of ~), on the fixed
ports 11000-11002 / 12000-12002; then kill -9 of the leader, failover, and
the old leader's restart and catch-up."""
import os

from conftest import (get_key, http, kill_leader, port_free, wait_until)

FAILOVER_LIMIT = 3.5  # seconds ("within ~3 s")


def test_readme_walkthrough_and_failover(cluster, tmp_path, report):
    busy = [p for p in (11000, 11001, 11002, 12000, 12001, 12002) if not port_free(p)]
    assert not busy, f"the walkthrough needs ports {busy} free (is another craftd running?)"

    d = {i: os.path.join(str(tmp_path), f"node{i}") for i in range(3)}
    # craftd -id node0 ~/node0
    n0 = cluster.add("node0", "localhost:11000", "localhost:12000",
                     argv=["-id", "node0", d[0]], datadir=d[0]).start()
    n0.wait_ready()
    # curl -XPOST localhost:11000/key -d '{"user1": "batman"}'
    r = http("localhost:11000", "POST", "/key", body='{"user1": "batman"}')
    assert r.status == 200, r
    # curl -XGET localhost:11000/key/user1
    r = http("localhost:11000", "GET", "/key/user1")
    assert r.status == 200, r
    assert r.json() == {"user1": "batman"}
    assert r.headers.get("content-type", "").startswith("application/json")
    # craftd -id node1 -haddr localhost:11001 -raddr localhost:12001 -join :11000 ~/node1
    # craftd -id node2 -haddr localhost:11002 -raddr localhost:12002 -join :11000 ~/node2
    nodes = [n0]
    for i in (1, 2):
        n = cluster.add(f"node{i}", f"localhost:{11000 + i}", f"localhost:{12000 + i}",
                        argv=["-id", f"node{i}", "-haddr", f"localhost:{11000 + i}",
                              "-raddr", f"localhost:{12000 + i}", "-join", ":11000", d[i]],
                        datadir=d[i]).start()
        n.wait_ready()
        nodes.append(n)
    cluster.wait_members(nodes)
    # curl -XGET localhost:11001/key/user1   (every node knows the key)
    assert get_key("localhost:11001", "user1") == (200, "batman")
    # curl -XPOST localhost:11000/key -d '{"user2": "robin"}'
    r = http("localhost:11000", "POST", "/key", body='{"user2": "robin"}')
    assert r.status == 200, r
    # curl -XGET localhost:11002/key/user2
    assert get_key("localhost:11002", "user2") == (200, "robin")

    # Kill the leader: a new one is elected, keys stay readable and writable.
    old = cluster.leader()
    new, took = kill_leader(cluster, old)
    report(f"failover after kill -9 of {old.id}: {took:.2f} s (new leader {new.id})")
    assert took <= FAILOVER_LIMIT, f"new leader after {took:.2f}s"
    survivors = [n for n in nodes if n is not old]
    for n in survivors:
        assert get_key(n.haddr, "user1") == (200, "batman"), n
        assert get_key(n.haddr, "user2") == (200, "robin"), n
    for i, n in enumerate(survivors):  # one of them is a follower: forwarded
        r = http(n.haddr, "POST", "/key", body={f"after{i}": f"kill{i}"})
        assert r.status == 200, (n, r)
    for n in survivors:
        for i in range(len(survivors)):
            assert get_key(n.haddr, f"after{i}") == (200, f"kill{i}"), n

    # Restart the old leader from its directory (same command): it catches up.
    old.start()
    old.wait_ready()
    for i in range(len(survivors)):
        wait_until(f"{old.name} has after{i}",
                   lambda i=i: get_key(old.haddr, f"after{i}", level="none")
                   == (200, f"kill{i}"), timeout=10)
    assert get_key(old.haddr, "user1") == (200, "batman")
    cluster.wait_members(nodes)
    r = http(old.haddr, "POST", "/key", body={"user3": "alfred"})
    assert r.status == 200, r
    for n in nodes:
        assert get_key(n.haddr, "user3") == (200, "alfred"), n
