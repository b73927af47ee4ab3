"""The Transport interface every network implementation provides.

An `Endpoint` is one node's presence on the network (one UDP socket for the
aioquic implementation); it dials peers by EndpointAddr and accepts peers
that dial it. Every `Connection` it hands out is already authenticated: its
`remote_id` is the peer's proven Ed25519 key (the dialer checked the TLS
certificate key against the id it dialed; the acceptor checked a signed
challenge). Nothing above this layer ever sees an unauthenticated peer.

A connection carries
- control frames: ordered, reliable, length-prefixed messages of at most
  MAX_CONTROL_FRAME bytes on the connection's control stream;
- datagrams: unreliable, at most `max_datagram_size` bytes, routed by the
  media stream id in byte 1 (the MediaPacket header) to one registered
  handler each, by the connection's single datagram reader;
- extra bidirectional streams (file transfers).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bisc.errors import BiscError
from bisc.identity import EndpointId
from bisc.ticket import EndpointAddr

log = logging.getLogger(__name__)

ALPN = "bisc/1"
MAX_CONTROL_FRAME = 64 * 1024
CONTROL_QUEUE = 256  # received control frames buffered per connection
# A datagram payload that fits any QUIC connection (1200-byte packets, 20-byte connection ids).
MIN_DATAGRAM_SIZE = 1150
_FRAME_HEADER = struct.Struct(">I")


class TransportError(BiscError):
    """A connection could not be made or was lost."""


class AuthenticationError(TransportError):
    """The peer did not prove the identity it claimed."""


class ControlFrameTooLargeError(TransportError):
    """A control frame over MAX_CONTROL_FRAME bytes."""


DatagramHandler = Callable[[bytes], None]


@dataclass
class ConnectionStats:
    rtt: float | None = None  # smoothed RTT in seconds, if measured
    datagrams_sent: int = 0
    datagrams_received: int = 0
    datagrams_dropped: int = 0  # unroutable, too large, or stale
    datagrams_stale: int = 0  # of those: still queued at their deadline
    control_frames_sent: int = 0
    control_frames_received: int = 0


class Stream(abc.ABC):
    """One reliable bidirectional byte stream."""

    @abc.abstractmethod
    async def read(self, n: int = -1) -> bytes:
        """Up to n bytes (n=-1: until the peer finishes); b"" at the end."""

    @abc.abstractmethod
    async def readexactly(self, n: int) -> bytes:
        """Exactly n bytes, or asyncio.IncompleteReadError."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def drain(self) -> None:
        """Wait until the send buffer has room (back-pressure)."""

    @abc.abstractmethod
    def finish(self) -> None:
        """Send FIN: no more writes."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Abort both directions."""


StreamHandler = Callable[[Stream], Awaitable[None]]


class Connection(abc.ABC):
    """An authenticated connection to one peer."""

    remote_id: EndpointId
    # Unique per connection and known to both ends (hash of both handshake
    # nonces and both ids): what admission proofs are bound to, so a proof
    # cannot be replayed on another connection.
    binding: bytes

    def __init__(self) -> None:
        self.stats = ConnectionStats()
        self._datagram_handlers: dict[int, DatagramHandler] = {}
        self._stream_handler: StreamHandler | None = None

    # -- datagrams ---------------------------------------------------------
    @property
    @abc.abstractmethod
    def max_datagram_size(self) -> int:
        """Largest datagram payload that can be sent now."""

    @abc.abstractmethod
    def send_datagram(self, data: bytes, deadline: float | None = None) -> bool:
        """Queue one datagram; False (and counted) if it was dropped.

        With a deadline (event-loop time), a datagram still queued then is
        dropped instead of sent: stale media is worth nothing."""

    def set_datagram_handler(self, stream_id: int, handler: DatagramHandler | None) -> None:
        """Route datagrams whose byte 1 (media stream id) is `stream_id`."""
        if handler is None:
            self._datagram_handlers.pop(stream_id, None)
        else:
            self._datagram_handlers[stream_id] = handler

    def _dispatch_datagram(self, data: bytes) -> None:
        """Called by the one datagram reader of this connection."""
        self.stats.datagrams_received += 1
        handler = self._datagram_handlers.get(data[1]) if len(data) > 1 else None
        if handler is None:
            self.stats.datagrams_dropped += 1
            return
        try:
            handler(data)
        except Exception:  # a handler bug must not kill the reader
            self.stats.datagrams_dropped += 1
            log.exception("datagram handler for stream %d failed", data[1])

    # -- control frames ----------------------------------------------------
    @abc.abstractmethod
    def send_control(self, frame: bytes) -> None:
        """Send one control frame (ControlFrameTooLargeError if too large)."""

    @abc.abstractmethod
    async def recv_control(self) -> bytes:
        """Next control frame; TransportError once the connection is closed."""

    # -- streams -----------------------------------------------------------
    @abc.abstractmethod
    async def open_stream(self) -> Stream: ...

    def set_stream_handler(self, handler: StreamHandler | None) -> None:
        """Called with each stream the peer opens."""
        self._stream_handler = handler

    # -- lifecycle ---------------------------------------------------------
    @abc.abstractmethod
    def close(self, reason: str = "") -> None: ...

    @abc.abstractmethod
    async def wait_closed(self) -> str:
        """Wait until closed (by either side or lost); returns the reason."""

    @property
    @abc.abstractmethod
    def is_closed(self) -> bool: ...


ConnectionHandler = Callable[[Connection], Awaitable[None]]


class Endpoint(abc.ABC):
    endpoint_id: EndpointId

    @abc.abstractmethod
    def local_addr(self) -> EndpointAddr:
        """How peers can reach this endpoint (for tickets)."""

    @abc.abstractmethod
    async def connect(self, addr: EndpointAddr, timeout: float = 10.0) -> Connection:
        """Dial `addr`; AuthenticationError if the peer is not addr.endpoint_id,
        TransportError if it cannot be reached in time."""

    @abc.abstractmethod
    def set_connection_handler(self, handler: ConnectionHandler) -> None:
        """Called with every authenticated inbound connection."""

    @abc.abstractmethod
    async def close(self) -> None: ...


def frame(payload: bytes) -> bytes:
    """Length-prefix one control frame."""
    if len(payload) > MAX_CONTROL_FRAME:
        raise ControlFrameTooLargeError(f"control frame of {len(payload)} bytes exceeds {MAX_CONTROL_FRAME}")
    return _FRAME_HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Reassembles length-prefixed frames from stream bytes, bounded."""

    def __init__(self, max_frame: int = MAX_CONTROL_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Frames completed by `data`; ControlFrameTooLargeError for an oversized one."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= 4:
            (length,) = _FRAME_HEADER.unpack_from(self._buffer)
            if length > self.max_frame:
                raise ControlFrameTooLargeError(f"peer sent a control frame of {length} bytes")
            if len(self._buffer) < 4 + length:
                break
            frames.append(bytes(self._buffer[4 : 4 + length]))
            del self._buffer[: 4 + length]
        return frames


def control_queue() -> asyncio.Queue[bytes | None]:
    return asyncio.Queue(maxsize=CONTROL_QUEUE)
