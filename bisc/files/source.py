"""One source of one download: a request stream to a peer, pipelined.

The session keeps up to `max_in_flight` chunks requested from its peer at
a time, as CHUNKS requests on one long-lived stream: whenever chunks arrive
it asks for more, so the peer's send buffer never runs dry while requests
travel (one stream per request left gaps: aioquic round-robins streams, so
concurrent responses all ended together and the pipe emptied). A reader
takes responses in order as they arrive and hands each chunk on; reading
never waits for verification or the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Protocol

from bisc.files.picker import ChunkPicker
from bisc.identity import EndpointId
from bisc.net.transport import Connection, Stream, TransportError
from bisc.proto import transfer as tp

log = logging.getLogger(__name__)

REQUEST_CHUNKS = 4  # chunks per CHUNKS request at most
MESSAGE_TIMEOUT = 30.0  # a source that sends nothing for this long while owing chunks is given up


class NoFileError(Exception):
    """The source said it does not have the file (any more)."""


class SourceOwner(Protocol):
    file_hash: bytes

    @property
    def picker(self) -> ChunkPicker: ...

    def wants(self, peer: EndpointId) -> bool:
        """Whether to keep asking `peer` (it is a source, nothing failed, not complete)."""
        ...

    def chunk_len(self, index: int) -> int: ...

    def on_chunk(self, peer: EndpointId, index: int, data: bytes) -> None:
        """A chunk arrived; the owner verifies it and releases or completes it in the picker."""
        ...

    def notify(self) -> None: ...

    def changed(self) -> asyncio.Event: ...


class SourceSession:
    def __init__(self, owner: SourceOwner, peer: EndpointId, conn: Connection, max_in_flight: int) -> None:
        self._owner = owner
        self.peer = peer
        self._conn = conn
        self._max_in_flight = max_in_flight
        self._requests: deque[deque[int]] = deque()  # outstanding, in order
        self._outstanding = 0  # chunks asked for and not answered yet
        self._has_requests = asyncio.Event()
        self._error: Exception | None = None
        self._stream: Stream | None = None

    @property
    def busy(self) -> bool:
        return self._outstanding > 0

    def reset(self) -> None:
        """Abort the stream: the owner gave up on this source."""
        if self._stream is not None:
            with contextlib.suppress(TransportError):
                self._stream.reset()

    async def run(self) -> None:
        """Ask for chunks until the owner stops wanting this peer; raises what went wrong."""
        owner, picker = self._owner, self._owner.picker
        stream = self._stream = await self._conn.open_stream()
        reader = asyncio.get_running_loop().create_task(self._read(stream))
        clean = False
        try:
            while self._error is None and owner.wants(self.peer):
                allowance = self._max_in_flight - self._outstanding
                indices = picker.pick(self.peer, min(REQUEST_CHUNKS, allowance)) if allowance > 0 else []
                if not indices:
                    await owner.changed().wait()
                    continue
                self._requests.append(deque(indices))
                self._outstanding += len(indices)
                self._has_requests.set()
                stream.write(tp.encode(tp.ChunksRequest(owner.file_hash, tuple(indices))))
                await stream.drain()
            if self._error is not None:
                raise self._error
            clean = self._outstanding == 0
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            for request in self._requests:
                for index in request:
                    picker.release(index, self.peer)
            with contextlib.suppress(TransportError):
                if clean:
                    stream.finish()
                else:
                    stream.reset()

    async def _read(self, stream: Stream) -> None:
        owner, picker = self._owner, self._owner.picker
        try:
            while True:
                while not self._requests:
                    self._has_requests.clear()
                    await self._has_requests.wait()
                pending = self._requests[0]
                index = pending[0]
                async with asyncio.timeout(MESSAGE_TIMEOUT):
                    head = await stream.readexactly(tp.HEADER_SIZE)
                    kind, length = tp.parse_header(head, tp.CHUNK_REPLIES, 4 + owner.chunk_len(index))
                    msg = tp.decode(kind, await stream.readexactly(length))
                if isinstance(msg, tp.Error):
                    raise NoFileError(msg.reason)
                assert isinstance(msg, tp.ChunkData | tp.Missing)
                if msg.index != index:
                    raise tp.TransferError(f"asked for chunk {index}, got {msg.index}")
                if isinstance(msg, tp.ChunkData) and len(msg.data) != owner.chunk_len(index):
                    raise tp.TransferError(f"chunk {index} has {len(msg.data)} bytes")
                pending.popleft()
                if not pending:
                    self._requests.popleft()
                self._outstanding -= 1
                if isinstance(msg, tp.Missing):
                    picker.peer_lacks(self.peer, index)
                    picker.release(index, self.peer)
                else:
                    owner.on_chunk(self.peer, index, msg.data)
                owner.notify()
        except Exception as exc:  # handed to run(), which raises it
            self._error = exc
            owner.notify()
