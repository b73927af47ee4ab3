"""Chunk hasher: the pure-Python reference.

A file is cut into 256 KiB chunks; each chunk's identity is its SHA-256. The
file's identity is SHA-256 over a domain tag, the file size and the ordered
chunk hashes, so chunks can be hashed on several cores at once and a
downloader can check a received hash list against the identity before
trusting any chunk hash in it.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from bisc.errors import ChunkHashError

CHUNK_SIZE = 256 * 1024
HASH_SIZE = 32
_IDENTITY_TAG = b"bisc-file-v1\x00"


def chunk_count(size: int) -> int:
    """Number of chunks of a file of `size` bytes (0 for an empty file)."""
    return -(-size // CHUNK_SIZE)


def file_identity(size: int, chunk_hashes: bytes) -> bytes:
    """The file's identity from its size and concatenated chunk hashes."""
    if len(chunk_hashes) != chunk_count(size) * HASH_SIZE:
        raise ChunkHashError(
            f"{len(chunk_hashes) // HASH_SIZE} chunk hashes do not match a file of {size} bytes"
        )
    digest = hashlib.sha256(_IDENTITY_TAG)
    digest.update(size.to_bytes(8, "big"))
    digest.update(chunk_hashes)
    return digest.digest()


def hash_chunks(data: bytes) -> list[bytes]:
    """SHA-256 of every chunk of an in-memory buffer."""
    view = memoryview(data)
    return [hashlib.sha256(view[i : i + CHUNK_SIZE]).digest() for i in range(0, len(view), CHUNK_SIZE)]


def _short_file(index: int, size: int) -> ChunkHashError:
    return ChunkHashError(
        f"file is shorter than expected: chunk {index} needs bytes up to "
        f"{index * CHUNK_SIZE + 1}, file has {size}"
    )


def _read_chunk(fd: int, index: int) -> bytes:
    offset = index * CHUNK_SIZE
    if hasattr(os, "pread"):
        return os.pread(fd, CHUNK_SIZE, offset)
    # Windows has no pread; there the caller reads from one thread only.
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, CHUNK_SIZE)


def hash_file_chunks(path: str | os.PathLike[str], first_chunk: int, count: int, threads: int) -> bytes:
    """Concatenated hashes of chunks first_chunk .. first_chunk+count-1 of a file.

    Reads one chunk at a time per worker, so memory stays bounded whatever the
    file size. hashlib releases the GIL, so `threads` > 1 uses several cores.
    A range past the end of the file, or a file that shrinks while it is read,
    raises ChunkHashError.
    """
    if first_chunk < 0 or count < 0:
        raise ChunkHashError("chunk range must not be negative")
    if count == 0:
        return b""
    if threads <= 0:
        threads = os.cpu_count() or 1
    threads = min(threads, count)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(fd).st_size
        last = first_chunk + count - 1
        if chunk_count(size) <= last:
            raise _short_file(last, size)

        def hash_one(index: int) -> bytes:
            data = _read_chunk(fd, index)
            if len(data) < CHUNK_SIZE and index * CHUNK_SIZE + len(data) != size:
                raise _short_file(index, index * CHUNK_SIZE + len(data))
            return hashlib.sha256(data).digest()

        indices = range(first_chunk, first_chunk + count)
        if threads == 1 or not hasattr(os, "pread"):
            return b"".join(map(hash_one, indices))
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return b"".join(pool.map(hash_one, indices))
    finally:
        os.close(fd)
