"""A reliable bidirectional stream over a simulated connection."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bisc.net.sim.segments import _Credit, _StreamData, _StreamFin, _StreamReset
from bisc.net.transport import Stream, TransportError

if TYPE_CHECKING:
    from bisc.net.sim.connection import SimConnection

STREAM_WINDOW = 256 * 1024  # bytes a stream receiver buffers (flow-control window)
STREAM_SEGMENT = 16 * 1024  # largest stream data segment
STREAM_HIGH_WATER = 64 * 1024  # drain() waits while more than this is unsent


class SimStream(Stream):
    """A reliable bidirectional stream with a flow-control window."""

    def __init__(self, conn: SimConnection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        # receiving
        self._recv = bytearray()
        self._eof = False
        self._unreported = 0
        self._read_error: TransportError | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        # sending
        self._send = bytearray()
        self._credit = STREAM_WINDOW
        self._fin_pending = False
        self._fin_sent = False
        self._write_error: TransportError | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return f"<SimStream {self.stream_id} of {self._conn!r}>"

    # -- reading --------------------------------------------------------------
    async def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""
        if n < 0:
            parts: list[bytes] = []
            while True:
                block = await self.read(STREAM_WINDOW)
                if not block:
                    return b"".join(parts)
                parts.append(block)
        while not self._recv and not self._eof:
            if self._read_error is not None:
                raise self._read_error
            self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        if self._read_error is not None:
            raise self._read_error
        data = bytes(self._recv[:n])
        del self._recv[:n]
        self._consumed(len(data))
        return data

    async def readexactly(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        buffer = bytearray()
        while len(buffer) < n:
            block = await self.read(n - len(buffer))
            if not block:
                raise asyncio.IncompleteReadError(bytes(buffer), n)
            buffer += block
        return bytes(buffer)

    def at_eof(self) -> bool:
        return self._eof and not self._recv

    def _consumed(self, amount: int) -> None:
        if self._eof or not amount:
            return
        self._unreported += amount
        if (self._unreported >= STREAM_SEGMENT or not self._recv) and not self._conn.is_closed:
            self._conn._push(_Credit(self.stream_id, self._unreported))
            self._unreported = 0

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_data(self, data: bytes) -> None:
        if self._eof or self._read_error is not None:
            return
        self._recv += data
        self._wake_reader()

    def _on_fin(self) -> None:
        self._eof = True
        self._wake_reader()
        self._maybe_done()

    # -- writing --------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._write_error is not None:
            raise self._write_error
        if self._fin_pending:
            raise TransportError("stream is finished; no more writes")
        if not data:
            return
        self._send += data
        self._pump()

    async def drain(self) -> None:
        while True:
            if self._write_error is not None:
                raise self._write_error
            if len(self._send) <= STREAM_HIGH_WATER:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def finish(self) -> None:
        if self._write_error is not None or self._fin_pending:
            return
        self._fin_pending = True
        self._pump()

    def reset(self) -> None:
        error = TransportError("stream reset")
        if self._read_error is None:
            self._read_error = error
        if self._write_error is None:
            self._write_error = error
        self._send.clear()
        self._recv.clear()
        conn = self._conn
        if conn._streams.get(self.stream_id) is self:
            conn._forget_stream(self)
            if not conn.is_closed:
                conn._push(_StreamReset(self.stream_id))
        self._wake_all()

    def _pump(self) -> None:
        conn = self._conn
        while self._send and self._credit > 0 and not conn.is_closed:
            size = min(len(self._send), self._credit, STREAM_SEGMENT)
            chunk = bytes(self._send[:size])
            del self._send[:size]
            self._credit -= size
            conn._push(_StreamData(self.stream_id, chunk))
        if self._fin_pending and not self._fin_sent and not self._send and not conn.is_closed:
            self._fin_sent = True
            conn._push(_StreamFin(self.stream_id))
            self._maybe_done()
        if len(self._send) <= STREAM_HIGH_WATER:
            self._wake_drainers()

    def _on_credit(self, amount: int) -> None:
        self._credit += amount
        self._pump()

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- lifecycle ------------------------------------------------------------
    def _maybe_done(self) -> None:
        if self._fin_sent and self._eof:
            self._conn._forget_stream(self)

    def _on_reset(self) -> None:
        error = TransportError("stream reset by peer")
        self._read_error = self._read_error or error
        self._write_error = self._write_error or error
        self._send.clear()
        self._recv.clear()
        self._wake_all()

    def _on_connection_closed(self, reason: str) -> None:
        error = TransportError(f"connection closed: {reason}")
        if not self._eof and self._read_error is None:
            self._read_error = error
        if self._write_error is None and not self._fin_sent:
            self._write_error = error
        self._send.clear()
        self._wake_all()

    def _wake_all(self) -> None:
        self._wake_reader()
        self._wake_drainers()
