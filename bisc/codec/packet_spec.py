"""The MediaPacket wire format, declared once with construct.

This is the readable specification. It is too slow for the hot path (tens
of microseconds a header), so every codec in bisc is tested byte for byte
against it instead of using it.
"""

from __future__ import annotations

from typing import Any

import construct as cs

VERSION = 1
HEADER_SIZE = 15
FLAG_KEYFRAME = 0x01

MEDIA_PACKET = cs.Struct(
    "version" / cs.Const(VERSION, cs.Int8ub),
    "stream_id" / cs.Int8ub,
    "flags" / cs.Int8ub,  # bit 0: keyframe; other bits carried through
    "sequence" / cs.Int32ub,  # per stream, one per packet, wraps
    "timestamp" / cs.Int32ub,  # media clock: 48 kHz audio, 90 kHz video
    "fragment_index" / cs.Int16ub,
    "fragment_count" / cs.Int16ub,
    "payload" / cs.GreedyBytes,
    cs.Check(lambda ctx: ctx.fragment_count >= 1),
    cs.Check(lambda ctx: ctx.fragment_index < ctx.fragment_count),
)


def spec_encode(fields: dict[str, Any]) -> bytes:
    """Build a datagram from field values with the construct spec."""
    return bytes(MEDIA_PACKET.build(fields))


def spec_decode(data: bytes) -> dict[str, Any]:
    """Parse a datagram with the construct spec (raises construct errors)."""
    parsed = MEDIA_PACKET.parse(data)
    return {k: v for k, v in parsed.items() if not k.startswith("_")}
