"""Peer wire bytes as an attacker writes them (docs/wire-format.md): the
CRC-32C, a handshake, a frame, and a wait for the node to close the
connection. Shared by the security tests here and by the fuzz seed script
(tests/fuzz/peer_seeds.py); it imports nothing of the test harness."""
import hashlib
import hmac
import os
import socket
import ssl
import struct

MAGIC = 0x54465243  # "CRFT"


def crc32c(data):
    """CRC-32C (Castagnoli), as src/common/crc32c.c; bitwise: small inputs
    only."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def hello(version, sender, target, cluster=0, tag=0, nonce=None):
    """A handshake (src/transport/wire.c) of version 2, or 3 with a nonce
    (random if not given)."""
    b = struct.pack("<IHHQQQQ", MAGIC, version, 0, sender, cluster, target, tag)
    if version == 3:
        b += nonce if nonce is not None else os.urandom(32)
    return b + struct.pack("<I", crc32c(b))


def frame(payload):
    return struct.pack("<II", len(payload), crc32c(payload)) + payload


def datagram(sender, target, payload, key, seq=1):
    """A peer datagram (src/transport/wire.c) signed with key (32 bytes):
    the receiver takes it only under the key it gave sender's connection."""
    b = struct.pack("<IHHQQQ", 0x47445243, 1, 0, sender, target, seq) + payload
    return b + hmac.new(key, b"craftd datagram v1" + b, hashlib.sha256).digest()


def closed_soon(sock, timeout=5.0):
    """True once the peer has closed the connection (EOF or reset) within
    timeout seconds; False if it is still open then."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
