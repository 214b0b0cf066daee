"""Seed corpus for fuzz_peer (tests/fuzz/fuzz_peer.c): valid connections in
the target's input format (mode byte, read size, bytes), so that the fuzzer
starts past the CRCs. Usage: peer_seeds.py <dir>."""
import os
import struct
import sys

# The wire helpers are the security tests' (tests/security/peerwire.py), so
# that the seeds and the attacks write the same bytes.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "security"))
from peerwire import frame, hello as _hello  # noqa: E402


def hello(version):
    return _hello(version, 7, 9, cluster=0xC1, tag=3, nonce=bytes(range(32)))


PROOF = struct.pack("<IHH", 0x46505243, 3, 0) + bytes(32)
FRAMES = frame(b"") + frame(b"x" * 40) + frame(bytes(range(200)))
SEEDS = {
    "v2": bytes([0, 255]) + hello(2) + FRAMES,
    "v2-bytewise": bytes([0, 0]) + hello(2) + FRAMES,
    "v3-proved": bytes([3, 16]) + hello(3) + PROOF + FRAMES,
    "v3-unproved": bytes([1, 255]) + hello(3) + PROOF + FRAMES,
    "v2-to-token": bytes([1, 255]) + hello(2) + FRAMES,
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(data)
