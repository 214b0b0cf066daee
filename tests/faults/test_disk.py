"""Disks that lie, on real craftd processes: a stopped node's data directory
is damaged the way a disk that loses or zeroes acknowledged writes would
(docs/disk-format.md, docs/operations.md). The damaged node must refuse to
start, naming the file and the offset, and the cluster must lose no
acknowledged write. Repairing the node (a fresh incarnation) is not tested
here, only the refusal.

Run under the shared lock:
  python3 -m pytest -q tests/faults/test_disk.py
"""
import json
import os
import shutil
import subprocess
import time
from types import SimpleNamespace

from harness import request
from workload import check_set, counts, lincheck, never_written

SEG_HDR = 48      # segment header bytes
REC_HDR = 12      # record header bytes
SEG_BYTES = 64 << 20  # craftd's segment size


def segments(node):
    """The node's log segment files, oldest first (names sort by seq)."""
    return [os.path.join(node.dir, f) for f in sorted(os.listdir(node.dir))
            if f.startswith("log-")]


def record_ends(path):
    """Offsets at which the segment's records end, in order."""
    with open(path, "rb") as f:
        b = f.read()
    off, ends = SEG_HDR, []
    while off + REC_HDR <= len(b):
        n = int.from_bytes(b[off + 4:off + 8], "little")
        if off + REC_HDR + n > len(b):
            break
        off += REC_HDR + n
        ends.append(off)
    return ends


def zero_fill(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())
    return size


def start_refused(run, node, *want):
    """Start node on its damaged directory: it must exit non-zero at once,
    never serving, with an ERROR naming what `want` lists."""
    node.start()
    try:
        rc = node.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        node.kill9()
        raise AssertionError(f"{node.id} started on a damaged directory:\n"
                             + node.log_tail(20))
    node.killed = True  # its exit is the test's doing
    tail = node.log_tail(15)
    assert rc != 0, f"{node.id} exited {rc} on a damaged directory:\n{tail}"
    refusal = [l for l in tail.splitlines() if "Refusing to start" in l]
    assert refusal, f"{node.id}: no refusal in its log:\n{tail}"
    for w in ("data directory " + node.dir, "offset ", "-join <a member>") + want:
        assert w in refusal[-1], f"{node.id}: refusal lacks {w!r}:\n{refusal[-1]}"
    run.log(f"{node.id} refused to start (exit {rc}): {refusal[-1]}")
    return refusal[-1]


def follower(run):
    ld = run.cluster.wait_leader()
    return next(n for n in run.cluster.nodes if n is not ld)


def check_no_loss(run, nodes):
    """Stops the clients; on `nodes` (which must hold a quorum), every
    acknowledged set write is present and no failed one is; the register
    history is linearizable; no read saw a value never written."""
    run.workload.stop()
    ops = run.history.snapshot()
    with open(os.path.join(run.dir, "history.jsonl"), "w") as f:
        for op in ops:
            f.write(json.dumps(op) + "\n")
    view = SimpleNamespace(nodes=nodes,
                           leader_node=lambda: run.cluster.leader_node(nodes))
    s = check_set(view, ops)
    v, rc, out, _ = lincheck(ops, os.path.join(run.dir, "lincheck-input.jsonl"),
                             levels=("linearizable",))
    bad = never_written(ops)
    run.log(f"ops {counts(ops)}; set {s}; lincheck {v}")
    assert s["acked"] > 0, f"no set write was acknowledged (see {run.dir})"
    assert not s["missing"], f"acknowledged writes lost (see {run.dir}): {s['missing']}"
    assert not s["present_failed"], f"failed writes present: {s['present_failed']}"
    assert rc == 0, f"linearizability: {v} (see {run.dir})\n{out}"
    assert not bad, f"reads of values never written: {bad[:3]}"
    return s


def test_zeroed_newest_segment(run):
    """The issue's case: a follower's newest (here the only) segment is
    zero-filled while it is stopped, header and all."""
    run.start(3)
    time.sleep(2)
    f = follower(run)
    f.stop()
    segs = segments(f)
    size = zero_fill(segs[-1])
    run.log(f"{f.id} stopped; zero-filled {segs[-1]} ({size} bytes)")
    time.sleep(1)  # the cluster goes on with two nodes
    start_refused(run, f, os.path.basename(segs[-1]) + ", offset 0",
                  "longer than the segment's creation write")
    time.sleep(1)
    check_no_loss(run, [n for n in run.cluster.nodes if n is not f])


def big_writes(run, total):
    """About `total` bytes of log on every node: 512 KiB values, one key
    overwritten (the map stays small). Returns the last acknowledged."""
    last = None
    blob = "v" * (512 << 10)
    for i in range(total // len(blob) + 1):
        ld = run.cluster.wait_leader()
        value = f"{i:06d}" + blob
        st, _ = request(ld.haddr, "POST", "/key", {"big": value}, timeout=10)
        if st == 200:
            last = value
    return last


def test_truncated_middle_segment(run):
    """A follower's older segment loses its last record (cut at a record
    boundary, so the file itself looks clean): the next segment recorded
    its length when it was created."""
    run.start(3)
    last = big_writes(run, SEG_BYTES + (8 << 20))
    assert last is not None
    time.sleep(1)
    f = follower(run)
    f.stop()
    segs = segments(f)
    assert len(segs) >= 2, f"{f.id} has {len(segs)} segment(s)"
    ends = record_ends(segs[-2])
    assert ends and ends[-1] == os.path.getsize(segs[-2])
    os.truncate(segs[-2], ends[-2])
    run.log(f"{f.id} stopped; cut {segs[-2]} from {ends[-1]} to {ends[-2]} bytes")
    start_refused(run, f, os.path.basename(segs[-1]) + ", offset 48",
                  "truncated or extended")
    live = [n for n in run.cluster.nodes if n is not f]
    ld = run.cluster.wait_leader(live)
    st, doc = request(ld.haddr, "GET", "/key/big", timeout=10)
    assert st == 200 and doc == {"big": last}, "the last big write is lost"
    check_no_loss(run, live)


def test_two_zeroed_no_majority(run):
    """Two of three nodes lose their newest segment: before, they formed a
    majority without the acknowledged writes and overwrote the third.
    Now both refuse; the cluster stops rather than lie, and once their disks
    are restored nothing acknowledged is missing."""
    run.start(3)
    time.sleep(3)
    nodes = list(run.cluster.nodes)
    for n in nodes:
        n.stop()
    damaged = nodes[:2]
    saved = {}
    for n in damaged:
        seg = segments(n)[-1]
        saved[n.id] = os.path.join(run.cluster.datadir, f"{n.id}-saved-segment")
        shutil.copyfile(seg, saved[n.id])
        zero_fill(seg)
    nodes[2].start()
    for n in damaged:
        start_refused(run, n, os.path.basename(segments(n)[-1]) + ", offset 0")
    time.sleep(2)
    st = nodes[2].status()
    assert st and st.get("role") != "leader", f"{nodes[2].id} leads alone: {st}"
    # The disks come back: every acknowledged write is there.
    for n in damaged:
        shutil.move(saved[n.id], segments(n)[-1])
        n.start()
    run.cluster.wait_converged(timeout=45)
    check_no_loss(run, nodes)
