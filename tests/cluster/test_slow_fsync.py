"""A slow disk does not cost leadership: with every fsync of every node
delayed (CRAFTD_TEST_FSYNC_DELAY_MS, a test knob read by craftd's main),
heartbeats and their answers still go out while a batch is being made
durable, so no follower's election timer fires and check-quorum keeps
seeing a quorum. Writes are as slow as the disk; the term does not move.

Elections after 10-19 ticks, a heartbeat every tick. One test, with 25 ms
ticks (elections after 250-475 ms), delays fsync by 3 heartbeat intervals
(75 ms); the other, with 20 ms ticks (200-380 ms), by more than the longest
election timeout (400 ms): before heartbeats stopped waiting for the disk,
its followers' timers fired during every write."""
import os
import threading
import time

import pytest

from conftest import http, leader_id, set_keys, status




def terms(nodes):
    out = {}
    for n in nodes:
        st = status(n.haddr, timeout=2.0)
        out[n.name] = (st or {}).get("term"), leader_id(st)
    return out


def writes_keep_term(cluster, report, tick_ms, delay_ms, seconds, settle=0.0):
    t0 = time.monotonic()
    nodes = cluster.start(3, extra=["-tick-ms", str(tick_ms), "-election-ticks", "10"])
    time.sleep(max(0.0, t0 + settle - time.monotonic()))
    leader = cluster.leader()
    start = terms(nodes)
    term0 = start[leader.name][0]
    assert term0, f"no term in /status: {start}"
    acked, failed = [0], []
    halt = threading.Event()

    def writer(addr, tag):
        i = 0
        while not halt.is_set():
            i += 1
            try:
                r = set_keys(addr, {f"{tag}{i}": "x"}, timeout=10.0)
            except OSError as e:
                failed.append(repr(e))
                continue
            if r.status == 200:
                acked[0] += 1
            else:
                failed.append(r.status)

    follower = next(n for n in nodes if n is not leader)
    threads = [threading.Thread(target=writer, args=(a, t), daemon=True)
               for a, t in ((leader.haddr, "l"), (follower.haddr, "f"))]
    for t in threads:
        t.start()
    seen = set()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for name, (term, lead) in terms(nodes).items():
                seen.add((term, lead))
            time.sleep(0.2)
    finally:
        halt.set()
        for t in threads:
            t.join(timeout=15)
    changes = int(next(
        (ln.split()[-1] for ln in http(leader.haddr, "GET", "/metrics").body.decode().splitlines()
         if ln.startswith("craftd_raft_leader_changes_total")), "-1"))
    report(f"{tick_ms} ms ticks, fsync +{delay_ms} ms on every node: {acked[0]} writes in {seconds} s, "
           f"{len(failed)} failed, terms/leaders seen {sorted(seen, key=str)}, "
           f"leader changes on {leader.name}: {changes}")
    assert seen == {(term0, leader.id)}, \
        f"the term or leader moved with fsync +{delay_ms} ms: {sorted(seen, key=str)}"
    assert acked[0] >= 2, f"only {acked[0]} writes acknowledged"
    assert not failed, f"writes failed: {failed[:5]}"


def test_fsync_three_heartbeats_keeps_leader(cluster, report, monkeypatch):
    monkeypatch.setenv("CRAFTD_TEST_FSYNC_DELAY_MS", "75")
    writes_keep_term(cluster, report, 25, 75, 10)


@pytest.mark.skipif(not os.environ.get("LONG"), reason="LONG=1: 20 s")
def test_fsync_past_election_timeout_keeps_leader(cluster, report, monkeypatch):
    """From 6 s after start (the cluster forms first: a campaign whose vote
    takes longer than an election timeout to be durable starts over, so no
    election could be won on such a disk)."""
    monkeypatch.setenv("CRAFTD_TEST_FSYNC_DELAY_MS", "400")
    monkeypatch.setenv("CRAFTD_TEST_FSYNC_DELAY_AFTER_MS", "6000")
    writes_keep_term(cluster, report, 20, 400, 6, settle=9.5)
