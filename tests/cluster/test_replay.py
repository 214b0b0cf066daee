"""A restart's replay is applied in bounded batches, the node serving
between them (the core's max_apply_bytes, src/node/pump.c's applier): a
long log since the last snapshot no longer keeps the loop in one
iteration, deaf to requests and heartbeats, for as long as it takes to
apply. Seen from outside: while a restarted node replays, /status answers
with applied indexes between where it started and where it ends (applied
in one go, it answers at most with the commit index its state file
recorded, the point at which the replay waits for the election)."""
import time

from conftest import set_keys, status

KEYS_PER_ENTRY = 1000
ENTRIES = 300  # 300,000 keys: a few hundred ms of replay


def test_replay_serves_between_batches(cluster):
    # No snapshot at all: the restart applies every entry from the log.
    never = ("-snapshot-threshold", "1000000000",
             "-snapshot-log-bytes", str(1 << 40))
    node = cluster.start(1, extra=never)[0]
    for b in range(ENTRIES):
        pairs = {f"r{b:03d}-{i:04d}": "v" * 16 for i in range(KEYS_PER_ENTRY)}
        assert set_keys(node.haddr, pairs).status == 200
    last = status(node.haddr)["last_index"]
    node.kill9()

    node.start()
    seen = []  # (applied, snapshot) of each answer until it has applied all
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = status(node.haddr, timeout=5.0)
        if st is None:
            assert node.alive(), node.log_text()[-2000:]
            time.sleep(0.001)
            continue
        seen.append((st["applied_index"], st["snapshot_index"]))
        if st["applied_index"] >= last:
            break
    assert seen and seen[-1][0] >= last, (seen[-5:], node.log_text()[-2000:])
    # Answers that came while the replay was under way: neither where the
    # node starts (its snapshot, here none) nor where it ends. Applied in
    # one go, the replay leaves no answer in between.
    between = sorted({a for a, snap in seen if snap < a < last})
    # One such value may be the commit index the state file recorded: a
    # replay up to it, the rest after the election. More are batches.
    assert len(between) >= 3, \
        f"answers during the replay of {last} entries: {seen[:5]} ... {seen[-5:]}"
    assert node.status()["keys"] == ENTRIES * KEYS_PER_ENTRY
