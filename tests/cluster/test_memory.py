"""The node gives freed memory back (src/node/memory.c): once after a
burst of writes pauses, not again while it stays quiet, and not after each
write of a trickle (each trim walks malloc's free lists on the loop). When
the log since the last snapshot is worth it, the pause brings a snapshot
(which frees the log, then trims) instead of a trim alone."""
import time

from conftest import http

PAUSED = "memory: trimmed after writes paused"
SNAPPED = "memory: trimmed after a snapshot"


def trims(node):
    text = node.log_text()
    return text.count(PAUSED) + text.count(SNAPPED)


def wait_trims(node, want, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and trims(node) < want:
        time.sleep(0.1)
    return trims(node)


def settle(node, quiet_s=2.5, timeout=30):
    """Waits until the node has logged no trim for quiet_s (the pause's
    snapshot or trim, however slow the build, is over)."""
    deadline = time.monotonic() + timeout
    last, since = trims(node), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = trims(node)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise AssertionError("the node kept trimming: " + node.log_text()[-2000:])


def test_trim_once_after_a_burst_not_per_trickle_write(cluster):
    node = cluster.start(1, extra=("-log-level", "debug"))[0]
    # A burst: 8 batches of 200 values of 1,000 bytes (1.6 MB of entries).
    for b in range(8):
        batch = {f"m{b}-{i:03d}": "x" * 1000 for i in range(200)}
        assert http(node.haddr, "POST", "/key", batch).status == 200
    assert wait_trims(node, 1, 5.0) == 1, node.log_text()[-2000:]
    # 1.6 MB of log, no snapshot yet: the pause took one, which trimmed.
    assert node.log_text().count(SNAPPED) == 1, node.log_text()[-2000:]
    # Quiet: no second trim for the same writes.
    time.sleep(2.5)
    assert trims(node) == 1
    # A trickle: small writes more than the quiet time apart free too
    # little to be worth a walk each.
    for i in range(3):
        assert http(node.haddr, "POST", "/key", {f"t{i}": "v"}).status == 200
        time.sleep(1.3)
    assert trims(node) == 1, node.log_text()[-2000:]


def test_pause_below_a_sixteenth_of_the_snapshot_only_trims(cluster):
    """Once a snapshot exists, a pause snapshots again only when the log
    since is a sixteenth of it: 1.2 MB of log after a 30 MB snapshot is
    trimmed, not snapshotted."""
    node = cluster.start(1, extra=("-log-level", "debug"))[0]
    for b in range(30):  # 30 MB: snapshots (each once the log is a quarter)
        batch = {f"big{b}-{i:03d}": "y" * 1000 for i in range(1000)}
        assert http(node.haddr, "POST", "/key", batch).status == 200
    settle(node)  # the pause after the load: its snapshot, if the rest was worth one
    assert "snapshot at index" in node.log_text(), node.log_text()[-2000:]
    snaps = node.log_text().count("snapshot at index")
    trims0 = trims(node)
    for b in range(6):  # 1.2 MB: over the trim's 1 MiB, under 30 MB / 16
        batch = {f"s{b}-{i:03d}": "z" * 1000 for i in range(200)}
        assert http(node.haddr, "POST", "/key", batch).status == 200
    assert wait_trims(node, trims0 + 1, 5.0) == trims0 + 1, node.log_text()[-2000:]
    assert node.log_text().count("snapshot at index") == snaps, node.log_text()[-2000:]
    assert node.log_text().count(PAUSED) >= 1


def test_trim_once_after_the_start(cluster):
    """Reading the snapshot and the log back at a start leaves free pages
    behind: the node trims once it has nothing left to apply, then not
    again while nothing changes."""
    node = cluster.start(1, extra=("-log-level", "debug"))[0]
    started = "memory: trimmed after the start"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and started not in node.log_text():
        time.sleep(0.05)
    assert node.log_text().count(started) == 1, node.log_text()[-2000:]
    for b in range(4):
        batch = {f"s{b}-{i:03d}": "x" * 100 for i in range(100)}
        assert http(node.haddr, "POST", "/key", batch).status == 200
    node.stop()
    node.start()
    node.wait_ready()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and node.log_text().count(started) < 2:
        time.sleep(0.05)
    time.sleep(1.5)
    assert node.log_text().count(started) == 2, node.log_text()[-2000:]
