"""The node gives freed memory back (src/node/memory.c): once after a
burst of writes pauses, not again while it stays quiet, and not after each
write of a trickle (each trim walks malloc's free lists on the loop)."""
import time

from conftest import http

PAUSED = "memory: trimmed after writes paused"


def trims(node):
    return node.log_text().count(PAUSED)


def wait_trims(node, want, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and trims(node) < want:
        time.sleep(0.1)
    return trims(node)


def test_trim_once_after_a_burst_not_per_trickle_write(cluster):
    node = cluster.start(1, extra=("-log-level", "debug"))[0]
    # A burst: 8 batches of 200 values of 1,000 bytes (1.6 MB of entries).
    for b in range(8):
        batch = {f"m{b}-{i:03d}": "x" * 1000 for i in range(200)}
        assert http(node.haddr, "POST", "/key", batch).status == 200
    assert wait_trims(node, 1, 5.0) == 1, node.log_text()[-2000:]
    # Quiet: no second trim for the same writes.
    time.sleep(2.5)
    assert trims(node) == 1
    # A trickle: small writes more than the quiet time apart free too
    # little to be worth a walk each.
    for i in range(3):
        assert http(node.haddr, "POST", "/key", {f"t{i}": "v"}).status == 200
        time.sleep(1.3)
    assert trims(node) == 1, node.log_text()[-2000:]
