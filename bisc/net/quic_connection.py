"""One authenticated QUIC connection, driven by its QuicEndpoint.

aioquic is sans-IO: the endpoint hands each connection the datagrams for its
connection ids, and the connection runs aioquic's timer, sends what aioquic
wants sent and turns aioquic's events into the Connection interface.

A connection is handed out only once authenticated: the dialer checks the
server's certificate key against the EndpointId it dialed (quic_tls), then
proves its own key on the control stream (quic_auth). Stream 0, the client's
first bidirectional stream, carries that handshake and then control frames.

aioquic internals used here (all private; present in the 1.2.0, 1.3.0 and 1.7.2
sources, tested on the installed 1.7.2):
`_datagrams_pending` (its unbounded datagram deque), `_loss._rtt_smoothed` /
`_rtt_initialized`, `_peer_cid`, `_max_datagram_size`,
`_remote_max_datagram_frame_size`, `_close_event` (to notice a peer's
CONNECTION_CLOSE at once rather than after the draining period),
`_streams[...].sender._buffer` (bytes not yet acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING

from aioquic.quic import events
from aioquic.quic.connection import QuicConnection, stream_is_client_initiated, stream_is_unidirectional
from aioquic.quic.packet_builder import PACKET_NUMBER_SEND_SIZE

from bisc.identity import EndpointId
from bisc.net.quic_auth import MAX_HANDSHAKE_FRAME, NONCE_SIZE, ClientHandshake, ServerHandshake
from bisc.net.quic_close import CloseCode, describe_close, is_tls_alert, truncate_reason
from bisc.net.quic_datagrams import DatagramDeadlines
from bisc.net.quic_stream import QuicStream, StreamErrorCode
from bisc.net.quic_tls import peer_endpoint_id
from bisc.net.transport import (
    ALPN,
    MAX_CONTROL_FRAME,
    AuthenticationError,
    Connection,
    ControlFrameTooLargeError,
    FrameDecoder,
    StreamHandler,
    TransportError,
    control_queue,
    frame,
)

if TYPE_CHECKING:
    from bisc.net.quic import QuicEndpoint

log = logging.getLogger(__name__)

MAX_UNCLAIMED_STREAMS = 16  # peer streams waiting for set_stream_handler()
UNCLAIMED_GRACE = 5.0  # ... for at most this long, then they are reset
CONTROL_STREAM = 0
_AEAD_TAG_SIZE = 16
# DATAGRAM frame: type byte + 2-byte length varint (payloads of 64..16383 bytes).
_DATAGRAM_FRAME_OVERHEAD = 1 + 2


class _DialRace:
    """The attempts of one connect() to several addresses; one may send its PROOF."""

    def __init__(self) -> None:
        self.winner: QuicPeerConnection | None = None


class QuicPeerConnection(Connection):
    """One aioquic connection, driven by its QuicEndpoint."""

    def __init__(
        self,
        endpoint: QuicEndpoint,
        quic: QuicConnection,
        *,
        expected_id: EndpointId | None = None,
        race: _DialRace | None = None,
    ) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._quic = quic
        self._datagrams = DatagramDeadlines(quic)
        self._loop = endpoint._loop
        self.is_client = quic.configuration.is_client
        self.binding = b""
        if expected_id is not None:
            self.remote_id = expected_id
        self._race = race
        self._cids: set[bytes] = set()
        self._reason: str | None = None
        self._closed = asyncio.Event()
        self._terminated = False  # aioquic is done with it, ids unregistered
        self._authenticated = False
        self._auth_done: asyncio.Future[None] = self._loop.create_future()
        self._client_hs: ClientHandshake | None = None
        self._server_hs: ServerHandshake | None = None
        if self.is_client:
            assert expected_id is not None
            self._client_hs = ClientHandshake(endpoint._identity, expected_id, os.urandom(NONCE_SIZE))
            self._decoder = FrameDecoder(MAX_CONTROL_FRAME)  # the server is TLS-authenticated already
        else:
            self._server_hs = ServerHandshake(endpoint._identity, os.urandom(NONCE_SIZE))
            self._decoder = FrameDecoder(MAX_HANDSHAKE_FRAME)  # until the client proved its key
        self._control = control_queue()
        self._streams: dict[int, QuicStream] = {}
        # Peer-initiated bidirectional ids: the server's peer starts at 4 (0 is control).
        self._next_peer_stream = 1 if self.is_client else 4
        self._unclaimed: list[QuicStream] = []
        self._unclaimed_timer: asyncio.TimerHandle | None = None
        self._draining: set[QuicStream] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_handle: asyncio.Handle | None = None
        self._keepalive = endpoint._idle_timeout / 4
        self._ping_at: float | None = None
        self._ping_uid = 0
        self._auth_timer: asyncio.TimerHandle | None = None
        self._processing = False
        if not self.is_client:
            self._auth_timer = self._loop.call_later(endpoint._auth_timeout, self._on_auth_timeout)

    def __repr__(self) -> str:
        role = "client" if self.is_client else "server"
        peer = self.remote_id.short() if hasattr(self, "remote_id") else "?"
        return f"<QuicPeerConnection {role} peer={peer} {self._quic.get_peer_address()}>"

    # -- datagrams ---------------------------------------------------------
    @property
    def max_datagram_size(self) -> int:
        """The largest DATAGRAM payload that fits one QUIC packet on this path.

        aioquic puts a DATAGRAM frame in a single packet and never splits it:
        anything larger would sit at the head of its queue for ever. A 1-RTT
        packet costs 1 header byte + the peer's connection id + a 2-byte packet
        number + a 16-byte AEAD tag; the frame a type byte + a 2-byte length.
        With aioquic's default 1200-byte packets and 8-byte ids: 1170.
        """
        quic = self._quic
        remote_limit = quic._remote_max_datagram_frame_size
        if self._reason is not None or remote_limit is None:
            return 0
        overhead = 1 + len(quic._peer_cid.cid) + PACKET_NUMBER_SEND_SIZE + _AEAD_TAG_SIZE
        size = quic._max_datagram_size - overhead - _DATAGRAM_FRAME_OVERHEAD
        # The peer's limit counts the frame's length field too.
        return max(0, min(size, remote_limit - _DATAGRAM_FRAME_OVERHEAD))

    def send_datagram(self, data: bytes, deadline: float | None = None) -> bool:
        if self._reason is not None or not self._authenticated or len(data) > self.max_datagram_size:
            self.stats.datagrams_dropped += 1
            return False
        if self._datagrams.full:
            self._transmit()  # flush what the congestion window allows before refusing
            if self._datagrams.full:
                self.stats.datagrams_dropped += 1
                return False
        self._datagrams.queue(bytes(data), deadline)
        self.stats.datagrams_sent += 1
        self._schedule_transmit()
        return True

    # -- control frames ----------------------------------------------------
    def send_control(self, frame_bytes: bytes) -> None:
        if self._reason is not None:
            raise TransportError(f"connection closed: {self._reason}")
        if not self._authenticated:
            raise TransportError("connection is not authenticated yet")
        self._quic.send_stream_data(CONTROL_STREAM, frame(frame_bytes))
        self.stats.control_frames_sent += 1
        self._schedule_transmit()

    async def recv_control(self) -> bytes:
        if self._reason is not None and self._control.empty():
            raise TransportError(f"connection closed: {self._reason}")
        item = await self._control.get()
        if item is None:
            with contextlib.suppress(asyncio.QueueFull):
                self._control.put_nowait(None)  # wake any other reader too
            raise TransportError(f"connection closed: {self._reason}")
        return item

    # -- streams -----------------------------------------------------------
    async def open_stream(self) -> QuicStream:
        if self._reason is not None:
            raise TransportError(f"connection closed: {self._reason}")
        if not self._authenticated:
            raise TransportError("connection is not authenticated yet")
        stream_id = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(stream_id, b"")  # makes aioquic allocate the id now
        stream = self._streams[stream_id] = QuicStream(self, stream_id)
        return stream

    def set_stream_handler(self, handler: StreamHandler | None) -> None:
        super().set_stream_handler(handler)
        if handler is not None and self._authenticated:
            if self._unclaimed_timer is not None:
                self._unclaimed_timer.cancel()
                self._unclaimed_timer = None
            unclaimed, self._unclaimed = self._unclaimed, []
            for stream in unclaimed:
                self._endpoint._spawn(handler(stream), f"stream handler for {stream!r}")

    def _stream_send(self, stream: QuicStream, data: bytes, end: bool) -> None:
        if self._reason is not None:
            raise TransportError(f"connection closed: {self._reason}")
        try:
            self._quic.send_stream_data(stream.stream_id, data, end_stream=end)
        except (ValueError, RuntimeError) as exc:  # finished, reset or discarded by aioquic
            raise TransportError(f"cannot write to stream {stream.stream_id}: {exc}") from None
        self._schedule_transmit()

    def _stream_send_buffered(self, stream_id: int) -> int:
        stream = self._quic._streams.get(stream_id)
        return 0 if stream is None else len(stream.sender._buffer)

    def _stream_abort(self, stream_id: int, code: StreamErrorCode) -> None:
        if self._reason is not None:
            return
        with contextlib.suppress(ValueError):
            self._quic.reset_stream(stream_id, code)
        with contextlib.suppress(ValueError):
            self._quic.stop_stream(stream_id, code)
        self._schedule_transmit()

    def _forget_stream(self, stream: QuicStream) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        self._draining.discard(stream)

    def _on_stream_data(self, stream_id: int, data: bytes, end: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._open_peer_streams(stream_id)
            if stream is None:
                return
        stream._feed(data, end)

    def _open_peer_streams(self, stream_id: int) -> QuicStream | None:
        """New peer stream(s) up to `stream_id`, or None for one already forgotten."""
        if stream_is_client_initiated(stream_id) == self.is_client:
            return None  # one of ours that we already forgot
        if stream_is_unidirectional(stream_id):
            with contextlib.suppress(ValueError):
                self._quic.stop_stream(stream_id, StreamErrorCode.REFUSED)
            return None
        if stream_id < self._next_peer_stream:
            return None
        # Opening stream n implicitly opens the lower ones (RFC 9000 section 2.1);
        # aioquic bounds how many with its MAX_STREAMS limit.
        for new_id in range(self._next_peer_stream, stream_id + 4, 4):
            stream = self._streams[new_id] = QuicStream(self, new_id)
            self._offer_stream(stream)
        self._next_peer_stream = stream_id + 4
        return self._streams.get(stream_id)

    def _offer_stream(self, stream: QuicStream) -> None:
        if not self._authenticated and not self.is_client:
            log.debug("%r: refusing stream %d opened before authentication", self, stream.stream_id)
            stream._abort(StreamErrorCode.REFUSED, "stream opened before authentication")
            return
        handler = self._stream_handler
        if handler is not None and self._authenticated:
            self._endpoint._spawn(handler(stream), f"stream handler for {stream!r}")
            return
        # The application may not have set its handler yet (it learns of the
        # connection a moment after the peer may already use it): keep a few.
        if len(self._unclaimed) >= MAX_UNCLAIMED_STREAMS:
            stream._abort(StreamErrorCode.REFUSED, "no stream handler")
            return
        self._unclaimed.append(stream)
        if self._unclaimed_timer is None:
            self._unclaimed_timer = self._loop.call_later(UNCLAIMED_GRACE, self._refuse_unclaimed)

    def _refuse_unclaimed(self) -> None:
        self._unclaimed_timer = None
        unclaimed, self._unclaimed = self._unclaimed, []
        for stream in unclaimed:
            log.info("%r: no stream handler took stream %d; resetting it", self, stream.stream_id)
            stream._abort(StreamErrorCode.REFUSED, "no stream handler")

    # -- lifecycle ---------------------------------------------------------
    def close(self, reason: str = "") -> None:
        self._close(reason or "closed", CloseCode.NORMAL)

    async def wait_closed(self) -> str:
        await self._closed.wait()
        assert self._reason is not None
        return self._reason

    @property
    def is_closed(self) -> bool:
        return self._reason is not None

    def _close(self, reason: str, code: CloseCode, error: TransportError | None = None) -> None:
        """Close with an application CONNECTION_CLOSE carrying `reason`."""
        if self._reason is not None or self._terminated:
            return
        level = logging.INFO if code == CloseCode.NORMAL else logging.WARNING
        log.log(level, "%r: closing: %s", self, reason)
        self._quic.close(error_code=code, reason_phrase=truncate_reason(reason))
        self._mark_closed(reason, error or TransportError(f"connection closed: {reason}"))
        self._schedule_transmit()

    def _mark_closed(self, reason: str, error: TransportError) -> None:
        """Record the reason and wake everyone waiting on this connection."""
        if self._reason is not None:
            return
        self._reason = reason
        self._closed.set()
        self._ping_at = None
        for handle in (self._auth_timer, self._unclaimed_timer):
            if handle is not None:
                handle.cancel()
        if not self._auth_done.done():
            self._auth_done.set_exception(error)
            self._auth_done.exception()  # retrieved: nobody awaits an inbound one
        with contextlib.suppress(asyncio.QueueFull):
            self._control.put_nowait(None)  # a full queue still ends in TransportError once drained
        for stream in list(self._streams.values()):
            stream._on_connection_closed(reason)
        self._unclaimed.clear()
        self._draining.clear()

    def _terminate(self) -> None:
        """aioquic is done with this connection: stop its timers, unregister its ids."""
        if self._terminated:
            return
        if self._reason is None:
            self._mark_closed("lost", TransportError("connection lost"))
        self._terminated = True
        for handle in (self._timer, self._transmit_handle):
            if handle is not None:
                handle.cancel()
        self._timer = self._transmit_handle = None
        self._endpoint._forget(self)

    # -- authentication ----------------------------------------------------
    def _send_handshake_frame(self, payload: bytes) -> None:
        self._quic.send_stream_data(CONTROL_STREAM, frame(payload))

    def _fail_auth(self, reason: str) -> None:
        self._close(reason, CloseCode.AUTHENTICATION, AuthenticationError(reason))

    def _on_auth_timeout(self) -> None:
        self._auth_timer = None
        if not self._authenticated:
            self._fail_auth(f"no authentication within {self._endpoint._auth_timeout:g} s")

    def _on_tls_done(self, event: events.HandshakeCompleted) -> None:
        self._ping_at = self._loop.time() + self._keepalive
        if event.alpn_protocol != ALPN:
            self._fail_auth(f"peer does not speak {ALPN} (ALPN {event.alpn_protocol!r})")
            return
        if self._client_hs is None:
            return  # the server waits for HELLO
        presented = peer_endpoint_id(self._quic)
        if presented != self.remote_id:
            self._fail_auth(f"server certificate is for {presented}, not the dialed {self.remote_id}")
            return
        self._send_handshake_frame(self._client_hs.hello())

    def _on_handshake_frame(self, payload: bytes) -> None:
        try:
            if self._client_hs is not None:
                reply = self._client_hs.on_frame(payload)
            else:
                assert self._server_hs is not None
                reply = self._server_hs.on_frame(payload)
        except AuthenticationError as exc:
            self._fail_auth(str(exc))
            return
        if self._client_hs is not None:
            if reply is not None:  # PROOF: only one address of a dial may authenticate
                if self._race is not None:
                    if self._race.winner not in (None, self):
                        self._close("superseded by another address", CloseCode.NORMAL)
                        return
                    self._race.winner = self
                self._send_handshake_frame(reply)
            elif self._client_hs.binding is not None:
                self._authenticated_as(self.remote_id, self._client_hs.binding)
            return
        assert self._server_hs is not None and reply is not None
        self._send_handshake_frame(reply)
        if self._server_hs.binding is not None and self._server_hs.client_id is not None:
            self._decoder.max_frame = MAX_CONTROL_FRAME
            self._authenticated_as(self._server_hs.client_id, self._server_hs.binding)

    def _authenticated_as(self, remote_id: EndpointId, binding: bytes) -> None:
        self.remote_id = remote_id
        self.binding = binding
        self._authenticated = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        log.info("%r: authenticated", self)
        if not self._auth_done.done():
            self._auth_done.set_result(None)
        self._endpoint._on_authenticated(self)

    # -- control stream ----------------------------------------------------
    def _on_control_data(self, data: bytes, end: bool) -> None:
        try:
            frames = self._decoder.feed(data)
        except ControlFrameTooLargeError as exc:
            if self._authenticated:
                self._close(f"oversized control frame: {exc}", CloseCode.PROTOCOL)
            else:
                self._fail_auth(f"malformed handshake: {exc}")
            return
        for payload in frames:
            if self._authenticated:
                self.stats.control_frames_received += 1
                try:
                    self._control.put_nowait(payload)
                except asyncio.QueueFull:
                    self._close("control queue overflow", CloseCode.OVERFLOW)
            else:
                self._on_handshake_frame(payload)
            if self._reason is not None:
                return
        if end:
            self._close("peer finished the control stream", CloseCode.PROTOCOL)

    # -- driving aioquic ---------------------------------------------------
    def _receive(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self._quic.receive_datagram(data, addr, now=self._loop.time())
        except Exception:  # an aioquic bug must not take the socket down
            log.exception("%r: aioquic failed on an incoming datagram", self)
            self._close("internal error", CloseCode.INTERNAL)
        self._service()

    def _service(self) -> None:
        self._process_events()
        close_event = self._quic._close_event
        if self._reason is None and close_event is not None:
            # The peer closed (or aioquic hit a protocol error): tell waiters now,
            # not after the draining period when ConnectionTerminated comes.
            log.info("%r: closed: %s", self, describe_close(close_event))
            self._mark_closed(describe_close(close_event), self._close_error(close_event))
        self._transmit()
        for stream in list(self._draining):
            if stream._wake_writer():
                self._draining.discard(stream)

    def _process_events(self) -> None:
        # Not re-entrant: a datagram handler that sends may flush from inside
        # here, and nested processing would reorder control frames.
        if self._processing:
            return
        self._processing = True
        try:
            while (event := self._quic.next_event()) is not None:
                try:
                    self._handle_event(event)
                except Exception:
                    log.exception("%r: failed to handle %s", self, type(event).__name__)
                    self._close("internal error", CloseCode.INTERNAL)
        finally:
            self._processing = False

    def _handle_event(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            if event.stream_id == CONTROL_STREAM:
                if self._reason is None:
                    self._on_control_data(event.data, event.end_stream)
            else:
                self._on_stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, events.DatagramFrameReceived):
            if self._authenticated and self._reason is None:
                self._dispatch_datagram(event.data)
            else:
                self.stats.datagrams_dropped += 1
        elif isinstance(event, events.ConnectionIdIssued):
            self._endpoint._register_cid(self, event.connection_id)
        elif isinstance(event, events.ConnectionIdRetired):
            self._endpoint._unregister_cid(self, event.connection_id)
        elif isinstance(event, events.HandshakeCompleted):
            self._on_tls_done(event)
        elif isinstance(event, events.StreamReset | events.StopSendingReceived):
            if event.stream_id == CONTROL_STREAM:
                self._close("peer aborted the control stream", CloseCode.PROTOCOL)
            elif (stream := self._streams.get(event.stream_id)) is not None:
                if isinstance(event, events.StreamReset):
                    stream._on_peer_reset(event.error_code)
                else:
                    stream._on_stop_sending(event.error_code)
        elif isinstance(event, events.ConnectionTerminated):
            if self._reason is None:
                self._mark_closed(describe_close(event), self._close_error(event))
            self._terminate()

    def _close_error(self, event: events.ConnectionTerminated) -> TransportError:
        reason = describe_close(event)
        # Closed while authenticating: a failed TLS handshake (bad CertificateVerify,
        # ...) or a server rejecting our proof both mean an identity did not check out.
        tls_failed = event.frame_type is not None and is_tls_alert(event.error_code)
        rejected = event.frame_type is None and event.error_code == CloseCode.AUTHENTICATION
        if not self._authenticated and (tls_failed or rejected):
            return AuthenticationError(f"authentication failed: {reason}")
        return TransportError(f"connection closed: {reason}")

    def _schedule_transmit(self) -> None:
        if self._transmit_handle is None and not self._terminated:
            self._transmit_handle = self._loop.call_soon(self._transmit)

    def _transmit(self) -> None:
        if self._transmit_handle is not None:
            self._transmit_handle.cancel()
            self._transmit_handle = None
        if self._terminated:
            return
        now = self._loop.time()
        stale = self._datagrams.drop_stale(now)
        self.stats.datagrams_dropped += stale
        self.stats.datagrams_stale += stale
        # A datagram that did not fit beside an ACK waits for the next call,
        # so go again while that made progress.
        try:
            for _ in range(8):
                datagrams = self._quic.datagrams_to_send(now=now)
                for data, addr in datagrams:
                    self._endpoint._send(data, addr)
                if not datagrams or not self._quic._datagrams_pending:
                    break
        except Exception:  # aioquic is in a state we cannot drive: give the connection up
            log.exception("%r: aioquic failed to build packets", self)
            self._mark_closed("internal error", TransportError("connection closed: internal error"))
            self._terminate()
            return
        self._process_events()  # sending may issue new connection ids
        loss = self._quic._loss
        self.stats.rtt = loss._rtt_smoothed if loss._rtt_initialized else None
        self._arm_timer()

    def _arm_timer(self) -> None:
        at = self._quic.get_timer()
        if self._ping_at is not None:
            at = self._ping_at if at is None else min(at, self._ping_at)
        if self._timer is not None and self._timer_at == at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None and not self._terminated:
            self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        # asyncio may run a timer a hair early; never hand aioquic a time before its own deadline.
        fired_at = self._timer_at or 0.0
        self._timer = None
        self._timer_at = None
        now = max(self._loop.time(), fired_at)
        if self._ping_at is not None and now >= self._ping_at:
            self._ping_uid += 1
            self._quic.send_ping(self._ping_uid)  # keep-alive; its loss also reveals a dead peer
            self._ping_at = now + self._keepalive
        quic_at = self._quic.get_timer()
        if quic_at is not None and now >= quic_at:
            try:
                self._quic.handle_timer(now=now)
            except Exception:
                log.exception("%r: aioquic failed in its timer", self)
                self._close("internal error", CloseCode.INTERNAL)
        self._service()
