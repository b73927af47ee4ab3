"""Hashing a local file for sharing, and what is recorded about it.

The file's size and mtime at hashing time are recorded with its hashes: the
server compares them each time it serves the file, so a file edited after
it was shared is withdrawn instead of served with stale hashes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bisc.errors import BiscError, ChunkHashError
from bisc.files.catalog import SHARED, FileRow
from bisc.files.hashing import Progress, hash_file
from bisc.proto import transfer as tp


class FileTooLargeError(BiscError):
    """A file over the protocol's maximum size (1 TiB)."""


async def hash_for_sharing(path: Path, threads: int, progress: Progress | None) -> FileRow:
    """The catalog row for sharing `path`, hashed on `threads` cores in a worker thread.

    Raises OSError if it cannot be read, ChunkHashError if it changes while
    it is hashed, BiscError if it is no regular file or too large.
    """
    path = Path(path).resolve()
    before = await asyncio.to_thread(path.stat)
    if not path.is_file():
        raise BiscError(f"{path} is not a regular file")
    if before.st_size > tp.MAX_FILE_SIZE:
        raise FileTooLargeError(f"{path} is larger than {tp.MAX_FILE_SIZE >> 40} TiB")
    loop = asyncio.get_running_loop()
    report: Progress | None = None
    if progress is not None:
        callback = progress

        def report(done: int, total: int) -> None:  # called in the hashing thread
            loop.call_soon_threadsafe(callback, done, total)

    digest = await asyncio.to_thread(hash_file, path, threads=threads, progress=report)
    after = await asyncio.to_thread(path.stat)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise ChunkHashError(f"{path} changed while it was being hashed")
    return FileRow(
        digest.identity,
        path.name,
        digest.size,
        digest.chunk_count,
        SHARED,
        str(path),
        before.st_mtime_ns,
        digest.chunk_hashes,
    )
