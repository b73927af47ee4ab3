"""One side of a simulated connection: datagrams, control frames, streams."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bisc.identity import EndpointId
from bisc.net.sim.conditions import REASON_CONTROL_OVERFLOW
from bisc.net.sim.segments import (
    _Close,
    _Control,
    _Credit,
    _Segment,
    _StreamData,
    _StreamFin,
    _StreamOpen,
    _StreamReset,
)
from bisc.net.sim.stream import SimStream
from bisc.net.transport import (
    MAX_CONTROL_FRAME,
    Connection,
    ControlFrameTooLargeError,
    TransportError,
    control_queue,
)
from bisc.ticket import EndpointAddr

if TYPE_CHECKING:
    from bisc.net.sim.endpoint import SimEndpoint
    from bisc.net.sim.link import _Link

log = logging.getLogger(__name__)

MAX_IN_FLIGHT_DATAGRAMS = 1024  # per connection and direction


class SimConnection(Connection):
    """One side of a simulated connection."""

    _link: _Link

    def __init__(
        self,
        endpoint: SimEndpoint,
        remote_id: EndpointId,
        remote_addr: EndpointAddr,
        binding: bytes,
        initiator: bool,
        number: int,
    ) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.remote_id = remote_id
        self.remote_addr = remote_addr
        self.binding = binding
        self.initiator = initiator
        self.number = number
        self._closed = False
        self._reason = ""
        self._closed_event = asyncio.Event()
        self._control = control_queue()
        self._streams: dict[int, SimStream] = {}
        self._next_sid = 0 if initiator else 1
        self._datagrams_in_flight = 0

    def __repr__(self) -> str:
        side = "dialer" if self.initiator else "acceptor"
        return (
            f"<SimConnection #{self.number} {side} {self.endpoint.endpoint_id.short()}"
            f" -> {self.remote_id.short()}{' closed' if self._closed else ''}>"
        )

    # -- datagrams ------------------------------------------------------------
    @property
    def max_datagram_size(self) -> int:
        return self.endpoint.network.max_datagram_size

    def send_datagram(self, data: bytes, deadline: float | None = None) -> bool:
        # The simulated link never queues at the sender: a deadline can only have passed already.
        if (
            self._closed
            or (deadline is not None and asyncio.get_running_loop().time() > deadline)
            or len(data) > self.endpoint.network.max_datagram_size
            or self._datagrams_in_flight >= MAX_IN_FLIGHT_DATAGRAMS
        ):
            self.stats.datagrams_dropped += 1
            return False
        self.stats.datagrams_sent += 1
        self.endpoint.network._transmit_datagram(self._link, self, bytes(data))
        return True

    # -- control frames -------------------------------------------------------
    def send_control(self, frame: bytes) -> None:
        if len(frame) > MAX_CONTROL_FRAME:
            raise ControlFrameTooLargeError(
                f"control frame of {len(frame)} bytes exceeds {MAX_CONTROL_FRAME}"
            )
        self._check_open()
        self.stats.control_frames_sent += 1
        self._push(_Control(bytes(frame)))

    async def recv_control(self) -> bytes:
        while True:
            if self._closed and self._control.empty():
                raise TransportError(f"connection closed: {self._reason}")
            item = await self._control.get()
            if item is not None:
                return item
            # the close sentinel: leave one for any other waiter
            if self._control.empty():
                self._control.put_nowait(None)
            raise TransportError(f"connection closed: {self._reason}")

    # -- streams --------------------------------------------------------------
    async def open_stream(self) -> SimStream:
        self._check_open()
        sid = self._next_sid
        self._next_sid += 4
        stream = SimStream(self, sid)
        self._streams[sid] = stream
        self._push(_StreamOpen(sid))
        return stream

    # -- lifecycle ------------------------------------------------------------
    def close(self, reason: str = "") -> None:
        if self._closed:
            return
        self._push(_Close(reason), lossy=False)
        self._close_local(reason)

    async def wait_closed(self) -> str:
        await self._closed_event.wait()
        return self._reason

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def close_reason(self) -> str | None:
        return self._reason if self._closed else None

    # -- internals ------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"connection closed: {self._reason}")

    def _push(self, segment: _Segment, *, lossy: bool = True) -> None:
        self._link.pipe_from(self).push(segment, lossy=lossy)

    def _close_local(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._reason = reason
        self._closed_event.set()
        if not self._control.full():
            self._control.put_nowait(None)
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            stream._on_connection_closed(reason)
        self.endpoint._connections.pop(self, None)
        self._link.side_closed()

    def _forget_stream(self, stream: SimStream) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]

    def _on_segment(self, segment: _Segment) -> None:
        if self._closed:
            return
        match segment:
            case _Control(frame):
                self.stats.control_frames_received += 1
                try:
                    self._control.put_nowait(frame)
                except asyncio.QueueFull:
                    log.warning("%r: control queue overflow", self)
                    self.close(REASON_CONTROL_OVERFLOW)
            case _StreamData(sid, data):
                stream = self._streams.get(sid)
                if stream is not None:
                    stream._on_data(data)
            case _Credit(sid, amount):
                stream = self._streams.get(sid)
                if stream is not None:
                    stream._on_credit(amount)
            case _StreamFin(sid):
                stream = self._streams.get(sid)
                if stream is not None:
                    stream._on_fin()
            case _StreamReset(sid):
                stream = self._streams.pop(sid, None)
                if stream is not None:
                    stream._on_reset()
            case _StreamOpen(sid):
                self._on_stream_open(sid)
            case _Close(reason):
                self._close_local(reason)

    def _on_stream_open(self, sid: int) -> None:
        stream = SimStream(self, sid)
        self._streams[sid] = stream
        handler = self._stream_handler
        if handler is None:
            log.debug("%r: peer opened stream %d with no stream handler; resetting", self, sid)
            stream.reset()
            return
        self.endpoint._spawn(handler(stream), f"stream handler for stream {sid}")
