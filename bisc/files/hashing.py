"""Hashing a whole file with the selected chunk hasher, with progress.

The native hasher works on a batch of chunks at a time on all cores; between
batches control returns here, so callers get progress reports and can cancel,
and memory stays at one chunk buffer per worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from bisc import hotpaths
from bisc.codec.chunkhash import CHUNK_SIZE, HASH_SIZE, chunk_count, file_identity
from bisc.errors import ChunkHashError

# 64 chunks = 16 MiB: long enough to amortise the call, short enough for
# progress several times a second.
BATCH_CHUNKS = 64

Progress = Callable[[int, int], None]  # (bytes hashed, total bytes)


@dataclass(frozen=True)
class FileDigest:
    size: int
    chunk_hashes: bytes  # concatenated, HASH_SIZE each
    identity: bytes

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_hashes) // HASH_SIZE

    def chunk_hash(self, index: int) -> bytes:
        return self.chunk_hashes[index * HASH_SIZE : (index + 1) * HASH_SIZE]


def hash_file(
    path: str | os.PathLike[str],
    *,
    threads: int = 0,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    hasher: ModuleType | None = None,
) -> FileDigest:
    """Hash `path` on `threads` cores (0 = all) and return its digest.

    Raises ChunkHashError if the file changes while it is hashed, and
    InterruptedError if `cancelled()` becomes true. `hasher` overrides the
    selected chunk hasher implementation (benchmarks compare them).
    """
    hash_chunks = (hasher or hotpaths.chunkhash).hash_file_chunks
    path = Path(path)
    before = path.stat()
    size = before.st_size
    total = chunk_count(size)
    parts: list[bytes] = []
    done = 0
    if progress:
        progress(0, size)
    while done < total:
        if cancelled and cancelled():
            raise InterruptedError(f"hashing {path} cancelled")
        count = min(BATCH_CHUNKS, total - done)
        parts.append(hash_chunks(path, done, count, threads))
        done += count
        if progress:
            progress(min(done * CHUNK_SIZE, size), size)
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise ChunkHashError(f"{path} changed while it was being hashed")
    hashes = b"".join(parts)
    return FileDigest(size, hashes, file_identity(size, hashes))
