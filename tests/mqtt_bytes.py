"""MQTT bytes written by hand, independently of the codec under test (iot_ingest/mqtt/packets.py),
for the codec's unit tests and the gateway's fuzz tests alike."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """MQTT's variable byte integer: 7 bits a byte, the high bit saying another follows."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def frame(first: int, body: bytes) -> bytes:
    """A packet: its first byte (type and flags), the remaining length, the body."""
    return bytes((first,)) + varint(len(body)) + body
