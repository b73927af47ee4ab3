"""Compiled MediaPacket codec (bisc/_native/_packet.pyx); same API and
behaviour as bisc.codec.packet."""

from typing import ClassVar, Final

from typing_extensions import disjoint_base

VERSION: Final = 1
HEADER_SIZE: Final = 15
FLAG_KEYFRAME: Final = 0x01

@disjoint_base
class MediaPacket:
    """One datagram of a media stream: header fields and payload."""

    def __init__(
        self,
        stream_id: int,
        sequence: int,
        timestamp: int,
        fragment_index: int,
        fragment_count: int,
        flags: int,
        payload: bytes,
    ) -> None: ...
    @property
    def stream_id(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def fragment_index(self) -> int: ...
    @property
    def fragment_count(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def is_keyframe(self) -> bool: ...
    def encode(self) -> bytes: ...
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

def encode_packet(
    stream_id: int,
    sequence: int,
    timestamp: int,
    fragment_index: int,
    fragment_count: int,
    flags: int,
    payload: bytes,
) -> bytes: ...
def decode_packet(data: bytes) -> MediaPacket: ...
