"""pytest-benchmark view of the hot paths, one benchmark per implementation.

The suite runs these once as tests (benchmarks are disabled by default in
pyproject.toml); measure with:

    pytest tests/benchmarks --benchmark-enable --benchmark-group-by=func
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PAYLOAD = os.urandom(1000)
FIELDS = (3, 123456, 987654, 2, 5, 1, PAYLOAD)


def test_packet_encode(benchmark: Any, packet_impl: ModuleType) -> None:
    data = benchmark(packet_impl.encode_packet, *FIELDS)
    assert len(data) == 1015


def test_packet_decode(benchmark: Any, packet_impl: ModuleType) -> None:
    datagram = packet_impl.encode_packet(*FIELDS)
    packet = benchmark(packet_impl.decode_packet, datagram)
    assert packet.payload == PAYLOAD


def test_reassemble_100_fragments(benchmark: Any, fragment_impl: ModuleType) -> None:
    payload = os.urandom(100 * 1185)
    datagrams = fragment_impl.fragment_frame(
        payload, stream_id=1, first_sequence=0, timestamp=0, flags=1, max_datagram_size=1200
    )

    def run() -> Any:
        reassembler = fragment_impl.Reassembler()
        frame = None
        for datagram in datagrams:
            frame = reassembler.push(datagram, 0.0)
        return frame

    assert benchmark(run).payload == payload


@pytest.mark.parametrize("threads", [1, 2])
def test_hash_file(benchmark: Any, chunkhash_impl: ModuleType, tmp_path: Path, threads: int) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(1 << 20) * 32)
    chunks = (32 << 20) // chunkhash_impl.CHUNK_SIZE
    hashes = benchmark(chunkhash_impl.hash_file_chunks, path, 0, chunks, threads)
    assert len(hashes) == 32 * chunks
