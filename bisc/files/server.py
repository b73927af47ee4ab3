"""Serving one peer's streams: hash lists, chunks, and its swarm link.

Everything a peer sends is bounded before it is read (transfer.parse_header)
and validated after; anything malformed resets that stream and is logged,
and the service carries on. A shared file is checked against the size and
mtime it had when hashed each time it is served; if it changed, it is
withdrawn rather than served with data that no longer matches its hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bisc.codec.chunkhash import CHUNK_SIZE
from bisc.files.catalog import DOWNLOADING, FileRow
from bisc.files.fetcher import Fetcher
from bisc.identity import EndpointId
from bisc.net.transport import Stream, TransportError
from bisc.proto import transfer as tp

log = logging.getLogger(__name__)

MAX_REQUESTS_PER_PEER = 4  # requests served at once per peer; more wait (QUIC holds them)
REQUEST_TIMEOUT = 10.0  # a peer must send its whole request this soon after opening a stream
_O_BINARY = getattr(os, "O_BINARY", 0)
_CHUNKS_ONLY = frozenset({tp.MsgType.CHUNKS})


@dataclass(frozen=True)
class ServedFile:
    """What the service can serve of one file right now."""

    file_hash: bytes
    path: Path
    size: int
    chunk_count: int
    hashes: bytes | None
    have: Callable[[int], bool] | None  # None: every chunk
    stat: tuple[int, int] | None  # (size, mtime_ns) when hashed; None for our own part files


def served_from_row(row: FileRow, fetcher: Fetcher | None) -> ServedFile | None:
    """What can be served of a catalog row (and its running download, if any)."""
    if row.path is None:
        return None
    if row.state != DOWNLOADING:
        assert row.mtime_ns is not None
        stat = (row.size, row.mtime_ns)
        return ServedFile(row.file_hash, Path(row.path), row.size, row.chunk_count, row.hashes, None, stat)
    if fetcher is not None:
        part = fetcher.part.path
        return ServedFile(
            row.file_hash, part, row.size, row.chunk_count, fetcher.hashes, fetcher.has_chunk, None
        )
    mask = row.verified_mask()

    def have(index: int) -> bool:
        return bool(mask >> index & 1)

    return ServedFile(row.file_hash, Path(row.path), row.size, row.chunk_count, row.hashes, have, None)


class ServerOwner(Protocol):
    served: Counter[EndpointId]

    def served_file(self, file_hash: bytes) -> ServedFile | None: ...

    def withdraw(self, file_hash: bytes, reason: str) -> None: ...

    async def outgoing_chunk(self, peer: EndpointId, file_hash: bytes, index: int, data: bytes) -> bytes: ...

    def on_swarm_message(self, peer: EndpointId, msg: tp.Message) -> None: ...


class _Refused(Exception):
    """Answer the request with ERROR(code, reason)."""

    def __init__(self, code: tp.Code, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class ChunkServer:
    def __init__(self, owner: ServerOwner, *, max_requests: int = MAX_REQUESTS_PER_PEER) -> None:
        self._owner = owner
        self._max_requests = max_requests
        self._slots: dict[EndpointId, asyncio.Semaphore] = {}
        self._swarm_streams: dict[EndpointId, Stream] = {}

    def forget(self, peer: EndpointId) -> None:
        self._slots.pop(peer, None)
        stream = self._swarm_streams.pop(peer, None)
        if stream is not None:
            with contextlib.suppress(TransportError):
                stream.reset()

    async def handle(self, peer: EndpointId, stream: Stream) -> None:
        """One stream the peer opened."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                kind, length = tp.parse_header(await stream.readexactly(tp.HEADER_SIZE), tp.STREAM_OPENERS)
                msg = tp.decode(kind, await stream.readexactly(length))
            if isinstance(msg, tp.Swarm):
                await self._swarm(peer, stream)
                return
            slot = self._slots.setdefault(peer, asyncio.Semaphore(self._max_requests))
            try:
                if isinstance(msg, tp.HashesRequest):
                    async with slot:
                        await self._hashes(stream, msg)
                else:
                    assert isinstance(msg, tp.ChunksRequest)
                    await self._chunk_requests(peer, stream, msg, slot)
            except _Refused as refused:
                stream.write(tp.encode(tp.Error(refused.code, str(refused))))
            stream.finish()
        except tp.TransferError as exc:
            log.warning("peer %s sent a malformed file-transfer message: %s", peer.short(), exc)
            self._reset(stream)
        except (asyncio.IncompleteReadError, TimeoutError):
            log.info("peer %s opened a file stream and did not finish its request", peer.short())
            self._reset(stream)
        except TransportError as exc:
            log.debug("file stream from %s ended: %s", peer.short(), exc)
        except Exception:  # a bug here must cost one stream, not the service
            log.exception("serving a file stream from %s failed", peer.short())
            self._reset(stream)

    @staticmethod
    def _reset(stream: Stream) -> None:
        with contextlib.suppress(TransportError):
            stream.reset()

    # -- requests --------------------------------------------------------------
    def _lookup(self, file_hash: bytes) -> tuple[ServedFile, int]:
        """The file and an open fd checked against its recorded stat; the caller closes the fd."""
        served = self._owner.served_file(file_hash)
        if served is None:
            raise _Refused(tp.Code.UNKNOWN_FILE, "file not shared here")
        try:
            fd = os.open(served.path, os.O_RDONLY | _O_BINARY)
        except OSError as exc:
            if served.stat is not None:
                self._owner.withdraw(file_hash, f"cannot read {served.path}: {exc.strerror}")
                raise _Refused(tp.Code.WITHDRAWN, "file no longer available") from None
            raise _Refused(tp.Code.INTERNAL, "file unreadable") from None
        if served.stat is not None:
            st = os.fstat(fd)
            if (st.st_size, st.st_mtime_ns) != served.stat:
                os.close(fd)
                self._owner.withdraw(file_hash, f"{served.path} changed on disk since it was shared")
                raise _Refused(tp.Code.WITHDRAWN, "file changed since it was shared")
        return served, fd

    async def _hashes(self, stream: Stream, msg: tp.HashesRequest) -> None:
        served, fd = self._lookup(msg.file_hash)
        os.close(fd)
        if served.hashes is None:
            raise _Refused(tp.Code.NOT_AVAILABLE, "hash list not known yet")
        stream.write(tp.encode(tp.HashList(served.size, served.hashes)))
        await stream.drain()

    async def _chunk_requests(
        self, peer: EndpointId, stream: Stream, msg: tp.ChunksRequest, slot: asyncio.Semaphore
    ) -> None:
        """CHUNKS requests on one stream, answered in order, until the peer finishes it."""
        while True:
            async with slot:
                await self._chunks(peer, stream, msg)
            try:
                head = await stream.readexactly(tp.HEADER_SIZE)  # may idle: the peer asks as it needs
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                return
            kind, length = tp.parse_header(head, _CHUNKS_ONLY)
            async with asyncio.timeout(REQUEST_TIMEOUT):
                request = tp.decode(kind, await stream.readexactly(length))
            assert isinstance(request, tp.ChunksRequest)
            msg = request

    async def _chunks(self, peer: EndpointId, stream: Stream, msg: tp.ChunksRequest) -> None:
        served, fd = self._lookup(msg.file_hash)
        _read_ahead(fd, served, msg.indices)
        try:
            for index in msg.indices:
                if index >= served.chunk_count:
                    stream.write(tp.encode(tp.Missing(index, tp.Code.BAD_REQUEST)))
                    continue
                if served.have is not None and not served.have(index):
                    stream.write(tp.encode(tp.Missing(index, tp.Code.NOT_AVAILABLE)))
                    continue
                offset = index * CHUNK_SIZE
                length = min(CHUNK_SIZE, served.size - offset)
                data = os.pread(fd, length, offset)
                if len(data) != length:
                    if served.stat is not None:
                        self._owner.withdraw(msg.file_hash, f"{served.path} shrank since it was shared")
                    raise _Refused(tp.Code.WITHDRAWN, "file changed since it was shared")
                data = await self._owner.outgoing_chunk(peer, msg.file_hash, index, data)
                stream.write(tp.chunk_header(index, len(data)))
                stream.write(data)
                self._owner.served[peer] += 1
                await stream.drain()
        finally:
            os.close(fd)

    # -- the peer's swarm link ---------------------------------------------------
    async def _swarm(self, peer: EndpointId, stream: Stream) -> None:
        old = self._swarm_streams.get(peer)
        if old is not None:
            self._reset(old)  # a reconnect replaced it
        self._swarm_streams[peer] = stream
        try:
            while True:
                try:
                    head = await stream.readexactly(tp.HEADER_SIZE)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        raise
                    return  # the peer finished its link
                kind, length = tp.parse_header(head, tp.SWARM_MESSAGES)
                self._owner.on_swarm_message(peer, tp.decode(kind, await stream.readexactly(length)))
        finally:
            if self._swarm_streams.get(peer) is stream:
                del self._swarm_streams[peer]


def _read_ahead(fd: int, served: ServedFile, indices: tuple[int, ...]) -> None:
    """Ask the kernel to start reading the requested chunks now.

    Chunks are read with pread on the event loop: a worker thread per chunk
    cost more (GIL hand-offs with aioquic) than it saved. Picks are random,
    which defeats the kernel's sequential read-ahead, so hint it instead.
    """
    if not hasattr(os, "posix_fadvise"):
        return
    for index in indices[1:]:
        offset = index * CHUNK_SIZE
        if offset < served.size:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, offset, CHUNK_SIZE, os.POSIX_FADV_WILLNEED)
