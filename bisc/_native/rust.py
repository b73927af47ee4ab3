"""Re-exports the private Rust extension `bisc._bisc_rs` under stable names.

The extension holds the Rust packet codec and the chunk hasher; see
native-rs/ for the crates and bisc/_bisc_rs.pyi for its types.
"""

from __future__ import annotations

from bisc._bisc_rs import (
    CHUNK_SIZE,
    HEADER_SIZE,
    VERSION,
    MediaPacket,
    decode_packet,
    encode_packet,
    hash_chunks,
    hash_file_chunks,
)

FLAG_KEYFRAME = 0x01

__all__ = [
    "CHUNK_SIZE",
    "FLAG_KEYFRAME",
    "HEADER_SIZE",
    "VERSION",
    "MediaPacket",
    "decode_packet",
    "encode_packet",
    "hash_chunks",
    "hash_file_chunks",
]
