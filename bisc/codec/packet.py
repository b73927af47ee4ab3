"""MediaPacket codec: the pure-Python reference.

Layout (big-endian, 15-byte header, then the payload), as declared in
`packet_spec`:

    version u8 | stream_id u8 | flags u8 | sequence u32 | timestamp u32 |
    fragment_index u16 | fragment_count u16 | payload ...
"""

from __future__ import annotations

import struct
from typing import Any

from bisc.errors import PacketError

VERSION = 1
HEADER_SIZE = 15
FLAG_KEYFRAME = 0x01

_HEADER = struct.Struct(">BBBIIHH")
_FIELD_LIMITS = (
    ("stream_id", 0xFF),
    ("sequence", 0xFFFFFFFF),
    ("timestamp", 0xFFFFFFFF),
    ("fragment_index", 0xFFFF),
    ("fragment_count", 0xFFFF),
    ("flags", 0xFF),
)


def _check_fields(values: tuple[Any, ...]) -> None:
    """Raise PacketError for the first field that does not fit its width."""
    for (name, limit), value in zip(_FIELD_LIMITS, values, strict=False):
        if not isinstance(value, int) or isinstance(value, bool):
            raise PacketError(f"{name} must be an int")
        if not 0 <= value <= limit:
            raise PacketError(f"{name} out of range: {value!r}")


def _check_fragment(index: int, count: int) -> None:
    if count == 0:
        raise PacketError("media packet fragment_count is 0")
    if index >= count:
        raise PacketError(f"media packet fragment_index {index} out of range for fragment_count {count}")


class MediaPacket:
    """One datagram of a media stream: header fields and payload."""

    __slots__ = (
        "flags",
        "fragment_count",
        "fragment_index",
        "payload",
        "sequence",
        "stream_id",
        "timestamp",
    )

    stream_id: int
    sequence: int
    timestamp: int
    fragment_index: int
    fragment_count: int
    flags: int
    payload: bytes

    def __init__(
        self,
        stream_id: int,
        sequence: int,
        timestamp: int,
        fragment_index: int,
        fragment_count: int,
        flags: int,
        payload: bytes,
    ) -> None:
        _check_fields((stream_id, sequence, timestamp, fragment_index, fragment_count, flags))
        _check_fragment(fragment_index, fragment_count)
        self.stream_id = stream_id
        self.sequence = sequence
        self.timestamp = timestamp
        self.fragment_index = fragment_index
        self.fragment_count = fragment_count
        self.flags = flags
        self.payload = bytes(payload)

    @property
    def is_keyframe(self) -> bool:
        return bool(self.flags & FLAG_KEYFRAME)

    def encode(self) -> bytes:
        return encode_packet(
            self.stream_id,
            self.sequence,
            self.timestamp,
            self.fragment_index,
            self.fragment_count,
            self.flags,
            self.payload,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MediaPacket):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"MediaPacket(stream_id={self.stream_id}, sequence={self.sequence}, "
            f"timestamp={self.timestamp}, fragment_index={self.fragment_index}, "
            f"fragment_count={self.fragment_count}, flags={self.flags}, "
            f"payload=<{len(self.payload)} bytes>)"
        )


def encode_packet(
    stream_id: int,
    sequence: int,
    timestamp: int,
    fragment_index: int,
    fragment_count: int,
    flags: int,
    payload: bytes,
) -> bytes:
    """Serialize one media datagram."""
    try:
        header = _HEADER.pack(VERSION, stream_id, flags, sequence, timestamp, fragment_index, fragment_count)
    except struct.error:
        # Slow path only for bad input: name the offending field.
        _check_fields((stream_id, sequence, timestamp, fragment_index, fragment_count, flags))
        raise
    if fragment_index >= fragment_count:
        _check_fragment(fragment_index, fragment_count)
    return header + payload


def decode_packet(data: bytes) -> MediaPacket:
    """Parse one media datagram; PacketError if it is malformed."""
    if len(data) < HEADER_SIZE:
        raise PacketError(f"media packet truncated: {len(data)} bytes, header needs {HEADER_SIZE}")
    version, stream_id, flags, sequence, timestamp, index, count = _HEADER.unpack_from(data)
    if version != VERSION:
        raise PacketError(f"unsupported media packet version {version} (expected {VERSION})")
    if index >= count:
        _check_fragment(index, count)
    packet = MediaPacket.__new__(MediaPacket)
    packet.stream_id = stream_id
    packet.sequence = sequence
    packet.timestamp = timestamp
    packet.fragment_index = index
    packet.fragment_count = count
    packet.flags = flags
    packet.payload = bytes(data[HEADER_SIZE:])
    return packet
