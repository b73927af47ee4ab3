"""Chunk hasher: every implementation against hashlib, from memory and from
disk, with several threads, and the errors for ranges a file does not have."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bisc.codec.chunkhash import CHUNK_SIZE, chunk_count, file_identity
from bisc.errors import ChunkHashError
from bisc.files.hashing import hash_file

pytestmark = pytest.mark.equivalence

SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17]


def _expected(data: bytes) -> list[bytes]:
    return [hashlib.sha256(data[i : i + CHUNK_SIZE]).digest() for i in range(0, len(data), CHUNK_SIZE)]


@pytest.fixture(scope="module")
def sample() -> bytes:
    return os.urandom(5 * CHUNK_SIZE + 1234)


def test_known_vector(chunkhash_impl: ModuleType) -> None:
    assert chunkhash_impl.hash_chunks(b"abc") == [
        bytes.fromhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    ]
    assert chunkhash_impl.hash_chunks(b"") == []
    assert chunkhash_impl.CHUNK_SIZE == CHUNK_SIZE


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("threads", [1, 2, 3, 0])
def test_file_chunks_match_hashlib(
    chunkhash_impl: ModuleType, tmp_path: Path, sample: bytes, size: int, threads: int
) -> None:
    data = (sample * 4)[:size]
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    n = chunk_count(size)
    assert chunkhash_impl.hash_chunks(data) == _expected(data)
    assert chunkhash_impl.hash_file_chunks(path, 0, n, threads) == b"".join(_expected(data))
    if n > 1:  # a sub-range, as the batching caller asks for
        assert chunkhash_impl.hash_file_chunks(str(path), 1, n - 1, threads) == b"".join(_expected(data)[1:])


@settings(max_examples=25, deadline=None)
@given(size=st.integers(0, 4 * CHUNK_SIZE))
def test_in_memory_matches_reference(
    chunkhash_impl: ModuleType, chunkhash_ref: ModuleType, size: int
) -> None:
    data = bytes([size % 251]) * size
    assert chunkhash_impl.hash_chunks(data) == chunkhash_ref.hash_chunks(data)


@pytest.mark.parametrize(("first", "count"), [(0, 3), (2, 1), (5, 1), (1, 2)])
def test_range_past_end_is_an_error(
    chunkhash_impl: ModuleType, tmp_path: Path, first: int, count: int
) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(bytes(2 * CHUNK_SIZE - 5))  # two chunks
    with pytest.raises(ChunkHashError, match="shorter than expected"):
        chunkhash_impl.hash_file_chunks(path, first, count, 2)


def test_missing_file_is_os_error(chunkhash_impl: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        chunkhash_impl.hash_file_chunks(tmp_path / "nope", 0, 1, 1)


def test_zero_count_is_empty(chunkhash_impl: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    assert chunkhash_impl.hash_file_chunks(path, 0, 0, 1) == b""


def test_file_identity_rules() -> None:
    empty = file_identity(0, b"")
    one = file_identity(1, hashlib.sha256(b"\0").digest())
    assert len(empty) == 32 and empty != one
    with pytest.raises(ChunkHashError):
        file_identity(CHUNK_SIZE + 1, hashlib.sha256(b"").digest())


def test_hash_file_reports_progress_and_identity(tmp_path: Path, sample: bytes) -> None:
    data = sample * 20  # about 26 MiB: two batches
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    seen: list[tuple[int, int]] = []
    digest = hash_file(path, progress=lambda done, total: seen.append((done, total)))
    expected = b"".join(_expected(data))
    assert digest.chunk_hashes == expected
    assert digest.identity == file_identity(len(data), expected)
    assert digest.chunk_count == chunk_count(len(data))
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) >= 3


def test_hash_file_cancel(tmp_path: Path, sample: bytes) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(sample * 20)
    calls = iter([False, True])
    with pytest.raises(InterruptedError):
        hash_file(path, cancelled=lambda: next(calls))


def test_hash_file_detects_change(tmp_path: Path, sample: bytes) -> None:
    path = tmp_path / "changing.bin"
    path.write_bytes(sample * 20)

    def grow(done: int, total: int) -> None:
        if 0 < done < total:
            with open(path, "ab") as f:
                f.write(b"more")

    with pytest.raises(ChunkHashError, match="changed"):
        hash_file(path, progress=grow)
