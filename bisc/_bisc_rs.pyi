"""Type stub of the Rust extension `bisc._bisc_rs` (built from native-rs/bisc-py).

Same behaviour as the pure-Python references `bisc.codec.packet` and
`bisc.codec.chunkhash`; errors are `bisc.errors.PacketError` /
`bisc.errors.ChunkHashError` (and OSError subclasses for I/O failures).
"""

import os
from typing import ClassVar, final

__all__ = [
    "CHUNK_SIZE",
    "HEADER_SIZE",
    "VERSION",
    "MediaPacket",
    "decode_packet",
    "encode_packet",
    "hash_chunks",
    "hash_file_chunks",
]

VERSION: int
HEADER_SIZE: int
CHUNK_SIZE: int

@final
class MediaPacket:
    """One media datagram: a header and its payload (immutable)."""

    def __new__(
        cls,
        stream_id: int,
        sequence: int,
        timestamp: int,
        fragment_index: int,
        fragment_count: int,
        flags: int,
        payload: bytes,
    ) -> MediaPacket: ...
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
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

def encode_packet(
    stream_id: int,
    sequence: int,
    timestamp: int,
    fragment_index: int,
    fragment_count: int,
    flags: int,
    payload: bytes,
    /,
) -> bytes: ...
def decode_packet(data: bytes) -> MediaPacket: ...
def hash_chunks(data: bytes) -> list[bytes]: ...
def hash_file_chunks(path: str | os.PathLike[str], first_chunk: int, count: int, threads: int) -> bytes: ...
