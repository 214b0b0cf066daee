"""Seed corpus for fuzz_peer (tests/fuzz/fuzz_peer.c): valid connections in
the target's input format (mode byte, read size, bytes), so that the fuzzer
starts past the CRCs. Usage: peer_seeds.py <dir>."""
import os
import struct
import sys


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def hello(version):
    b = struct.pack("<IHHQQQQ", 0x54465243, version, 0, 7, 0xC1, 9, 3)
    if version == 3:
        b += bytes(range(32))
    return b + struct.pack("<I", crc32c(b))


def frame(payload):
    return struct.pack("<II", len(payload), crc32c(payload)) + payload


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
