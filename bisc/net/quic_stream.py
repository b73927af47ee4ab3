"""One bidirectional QUIC stream of a QuicPeerConnection.

aioquic grants flow control as data arrives, not as the application reads
it, so QUIC itself does not stop a fast sender. The receive buffer is
therefore bounded here: a reader that falls more than `RECV_LIMIT` bytes
behind gets the stream reset rather than unbounded memory use.
"""

from __future__ import annotations

import asyncio
import logging
from enum import IntEnum
from typing import TYPE_CHECKING

from bisc.net.transport import Stream, TransportError

if TYPE_CHECKING:
    from bisc.net.quic_connection import QuicPeerConnection

log = logging.getLogger(__name__)

RECV_LIMIT = 1024 * 1024  # bytes buffered for a reader that has not caught up
SEND_HIGH_WATER = 1024 * 1024  # drain() waits while aioquic holds more than this unacknowledged
READ_CHUNK = 64 * 1024  # read(-1) collects in chunks of this size


class StreamErrorCode(IntEnum):
    """Application error codes in RESET_STREAM / STOP_SENDING."""

    CANCELLED = 0x10  # reset() by the application
    OVERFLOW = 0x11  # the reader fell more than RECV_LIMIT behind
    REFUSED = 0x12  # no handler took the stream, or it came before authentication


class QuicStream(Stream):
    def __init__(self, connection: QuicPeerConnection, stream_id: int) -> None:
        self._conn = connection
        self.stream_id = stream_id
        self._buffer = bytearray()
        self._eof = False  # FIN received
        self._recv_error: TransportError | None = None
        self._send_error: TransportError | None = None
        self._finished = False  # FIN sent
        self._aborted = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()

    def __repr__(self) -> str:
        return f"<QuicStream {self.stream_id} of {self._conn!r}>"

    # -- reading -----------------------------------------------------------
    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = []
            while chunk := await self.read(READ_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if n == 0:
            return b""
        while not self._buffer:
            if self._eof:
                return b""
            if self._recv_error is not None:
                raise self._recv_error
            self._readable.clear()
            await self._readable.wait()
        chunk = bytes(self._buffer[:n])
        del self._buffer[:n]
        return chunk

    async def readexactly(self, n: int) -> bytes:
        parts: list[bytes] = []
        needed = n
        while needed > 0:
            chunk = await self.read(min(needed, READ_CHUNK))
            if not chunk:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(chunk)
            needed -= len(chunk)
        return b"".join(parts)

    # -- writing -----------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._send_error is not None:
            raise self._send_error
        if self._finished:
            raise TransportError("write after finish()")
        if data:
            self._conn._stream_send(self, bytes(data), end=False)

    async def drain(self) -> None:
        while True:
            if self._send_error is not None:
                raise self._send_error
            if self._conn._stream_send_buffered(self.stream_id) <= SEND_HIGH_WATER:
                return
            self._writable.clear()
            self._conn._draining.add(self)
            await self._writable.wait()

    def finish(self) -> None:
        if self._finished or self._send_error is not None:
            return
        self._finished = True
        self._conn._stream_send(self, b"", end=True)
        self._maybe_forget()

    def reset(self) -> None:
        self._abort(StreamErrorCode.CANCELLED, "stream reset")

    # -- called by the connection ------------------------------------------
    def _abort(self, code: StreamErrorCode, why: str) -> None:
        """Abort both directions locally and tell the peer."""
        if self._aborted:
            return
        self._aborted = True
        error = TransportError(why)
        self._buffer.clear()
        self._eof = False  # reads after an abort fail, even if the FIN had arrived
        self._recv_error = self._recv_error or error
        self._send_error = self._send_error or error
        self._readable.set()
        self._writable.set()
        self._conn._stream_abort(self.stream_id, code)
        self._maybe_forget()

    def _feed(self, data: bytes, end: bool) -> None:
        if self._recv_error is not None or self._eof:
            return  # late data after a reset or a close: nobody will read it
        if len(self._buffer) + len(data) > RECV_LIMIT:
            log.warning("%r: reader fell more than %d bytes behind; resetting the stream", self, RECV_LIMIT)
            self._abort(StreamErrorCode.OVERFLOW, "stream receive buffer overflow (reader fell behind)")
            return
        self._buffer += data
        if end:
            self._eof = True
        self._readable.set()
        if end:
            self._maybe_forget()

    def _on_peer_reset(self, code: int) -> None:
        if self._eof or self._recv_error is not None:
            return
        self._buffer.clear()
        self._recv_error = TransportError(f"stream reset by peer (code {code:#x})")
        self._readable.set()
        self._maybe_forget()

    def _on_stop_sending(self, code: int) -> None:
        if self._send_error is None:
            self._send_error = TransportError(f"peer stopped reading the stream (code {code:#x})")
        self._writable.set()
        self._maybe_forget()

    def _on_connection_closed(self, reason: str) -> None:
        error = TransportError(f"connection closed: {reason}")
        if self._recv_error is None and not self._eof:
            self._recv_error = error  # buffered bytes stay readable first
        if self._send_error is None:
            self._send_error = error
        self._readable.set()
        self._writable.set()

    def _wake_writer(self) -> bool:
        """Wake drain() if the send buffer fell below the high-water mark (or it failed)."""
        if self._send_error is None and self._conn._stream_send_buffered(self.stream_id) > SEND_HIGH_WATER:
            return False
        self._writable.set()
        return True

    def _maybe_forget(self) -> None:
        """Drop the connection's routing entry once both directions are over."""
        recv_done = self._eof or self._recv_error is not None
        send_done = self._finished or self._send_error is not None
        if recv_done and send_done:
            self._conn._forget_stream(self)
