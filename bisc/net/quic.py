"""The aioquic implementation of the Transport interface: QuicEndpoint.

One UDP socket per endpoint carries every connection, in both roles: dials
create client `aioquic.quic.connection.QuicConnection`s, an Initial packet
for an unknown connection id creates a server one. Datagrams are routed by
destination connection id (the dict follows ConnectionIdIssued/Retired);
garbage is counted and dropped, and half-open inbound connections are capped.
The connections themselves are in quic_connection, their close codes in
quic_close, their streams in quic_stream, certificates in quic_tls and the
dialer's proof in quic_auth.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aioquic._buffer import Buffer
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from bisc.identity import EndpointId, Identity
from bisc.net.quic_close import CloseCode
from bisc.net.quic_connection import QuicPeerConnection, _DialRace
from bisc.net.quic_stream import QuicStream
from bisc.net.quic_tls import CID_LENGTH, client_configuration, server_configuration
from bisc.net.transport import AuthenticationError, ConnectionHandler, Endpoint, TransportError
from bisc.ticket import MAX_ADDRS, EndpointAddr, IpAddress

__all__ = ["EndpointStats", "QuicEndpoint", "QuicPeerConnection", "QuicStream"]

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 8.0  # with pings every IDLE_TIMEOUT/4, a dead peer is noticed in ~8-10 s
AUTH_TIMEOUT = 5.0  # an inbound connection must prove its key this soon after its first packet
MAX_HALF_OPEN = 64  # inbound connections not yet authenticated; further Initials are dropped
DIAL_STAGGER = 0.25  # start the next address of a peer if the previous one has not answered


@dataclass
class EndpointStats:
    datagrams_received: int = 0  # UDP datagrams read from the socket
    dropped_malformed: int = 0  # not a parsable QUIC header
    dropped_unknown: int = 0  # no connection has this destination id and it is no Initial
    dropped_initials: int = 0  # Initials refused: too small, unknown version, undecryptable, over limit
    accepted: int = 0  # inbound connections that authenticated
    handshakes_failed: int = 0  # inbound connections closed before authenticating

    @property
    def datagrams_dropped(self) -> int:
        return self.dropped_malformed + self.dropped_unknown + self.dropped_initials


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: QuicEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self._endpoint._datagram_received(data, addr)
        except Exception:  # last line of defence: one bad datagram must not stop the socket
            log.exception("failed to process a %d-byte datagram from %s", len(data), addr)

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable from an address we dialed: QUIC's timers handle it.
        log.debug("UDP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.warning("UDP socket lost: %s", exc)


def _bind_socket(host: str, port: int) -> tuple[socket.socket, bool]:
    """A non-blocking UDP socket bound to host:port, and whether it is dual-stack."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise TransportError(f"bind address must be an IP address, got {host!r}") from None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    dual_stack = False
    try:
        if family == socket.AF_INET6 and ip.is_unspecified:
            try:  # off by default on some platforms (Windows, BSDs)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                dual_stack = True
            except (OSError, AttributeError):
                pass
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise TransportError(f"cannot bind UDP {host}:{port}: {exc.strerror or exc}") from None
    return sock, dual_stack


async def _interface_addresses(loop: asyncio.AbstractEventLoop, family: int) -> list[IpAddress]:
    """This host's non-loopback addresses, as far as its own name resolves (stdlib only)."""
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_DGRAM), timeout=1.0
        )
    except (TimeoutError, OSError, UnicodeError):
        return []
    found: list[IpAddress] = []
    for info_family, _, _, _, sockaddr in infos:
        if family == socket.AF_INET and info_family != socket.AF_INET:
            continue
        try:
            ip = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip in found:
            continue
        found.append(ip)
    return found


class QuicEndpoint(Endpoint):
    """A node's UDP socket and every QUIC connection on it."""

    def __init__(
        self,
        identity: Identity,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        auth_timeout: float = AUTH_TIMEOUT,
        max_half_open: int = MAX_HALF_OPEN,
    ) -> None:
        """Use `await QuicEndpoint.bind(...)`."""
        self._identity = identity
        self.endpoint_id = identity.endpoint_id
        self._loop = asyncio.get_running_loop()
        self._idle_timeout = idle_timeout
        self._auth_timeout = auth_timeout
        self._max_half_open = max_half_open
        self._client_config = client_configuration(idle_timeout)
        self._server_config = server_configuration(identity, idle_timeout)
        self._transport: asyncio.DatagramTransport | None = None
        self._sockname: tuple[str, int] = ("0.0.0.0", 0)
        self._family = socket.AF_INET
        self._dual_stack = False
        self._interface_addrs: list[IpAddress] = []
        self._by_cid: dict[bytes, QuicPeerConnection] = {}
        self._connections: set[QuicPeerConnection] = set()
        self._half_open: set[QuicPeerConnection] = set()
        self._handler: ConnectionHandler | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.stats = EndpointStats()

    @classmethod
    async def bind(
        cls,
        identity: Identity,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        auth_timeout: float = AUTH_TIMEOUT,
        max_half_open: int = MAX_HALF_OPEN,
    ) -> QuicEndpoint:
        """Bind one UDP socket (port 0: any free port) and start serving on it."""
        endpoint = cls(
            identity, idle_timeout=idle_timeout, auth_timeout=auth_timeout, max_half_open=max_half_open
        )
        sock, endpoint._dual_stack = _bind_socket(host, port)
        endpoint._family = sock.family
        sockname = sock.getsockname()
        endpoint._sockname = (sockname[0], sockname[1])
        if ipaddress.ip_address(host).is_unspecified:
            endpoint._interface_addrs = await _interface_addresses(endpoint._loop, sock.family)
        transport, _ = await endpoint._loop.create_datagram_endpoint(
            lambda: _UdpProtocol(endpoint), sock=sock
        )
        endpoint._transport = transport
        log.info("endpoint %s listening on %s:%d", endpoint.endpoint_id.short(), *endpoint._sockname)
        return endpoint

    def local_addr(self) -> EndpointAddr:
        host, port = self._sockname
        ip = ipaddress.ip_address(host)
        if not ip.is_unspecified:
            return EndpointAddr(self.endpoint_id, ((ip, port),))
        # Wildcard bind: this host's addresses first (loopback only helps peers on this host).
        loopback: list[IpAddress] = [ipaddress.ip_address("127.0.0.1")]
        if self._family == socket.AF_INET6:
            loopback.append(ipaddress.ip_address("::1"))
        addrs = [(a, port) for a in [*self._interface_addrs, *loopback]]
        return EndpointAddr(self.endpoint_id, tuple(addrs[:MAX_ADDRS]))

    def set_connection_handler(self, handler: ConnectionHandler) -> None:
        self._handler = handler

    @property
    def connections(self) -> list[QuicPeerConnection]:
        """Authenticated connections that are still open."""
        return [c for c in self._connections if c._authenticated and not c.is_closed]

    # -- dialing -----------------------------------------------------------
    async def connect(self, addr: EndpointAddr, timeout: float = 10.0) -> QuicPeerConnection:
        if self._closed:
            raise TransportError("endpoint is closed")
        if addr.endpoint_id == self.endpoint_id:
            raise TransportError("refusing to dial our own EndpointId")
        targets = self._targets(addr)
        if not targets:
            raise TransportError(
                f"no address of {addr.endpoint_id.short()} is usable from {self._sockname[0]}"
            )
        race = _DialRace()
        deadline = self._loop.time() + timeout
        attempts: dict[asyncio.Future[None], QuicPeerConnection] = {}
        errors: list[TransportError] = []
        leftover = "dial cancelled"  # why attempts still running at the end are closed
        try:
            while True:
                if targets:
                    conn = self._dial(targets.pop(0), addr.endpoint_id, race)
                    attempts[conn._auth_done] = conn
                remaining = deadline - self._loop.time()
                if remaining <= 0 or not attempts:
                    break
                wait = min(remaining, DIAL_STAGGER) if targets else remaining
                done, _ = await asyncio.wait(attempts, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    conn = attempts.pop(future)
                    exc = future.exception()
                    if exc is None:
                        leftover = "superseded by another address"
                        return conn
                    errors.append(exc if isinstance(exc, TransportError) else TransportError(str(exc)))
                if not attempts and not targets:
                    break
            leftover = "dial timed out"
        finally:
            for conn in attempts.values():
                conn._close(leftover, CloseCode.NORMAL)
        for error in errors:
            if isinstance(error, AuthenticationError):
                raise error
        if errors:
            raise errors[-1]
        raise TransportError(f"no answer from {addr.endpoint_id.short()} within {timeout:g} s")

    def _targets(self, addr: EndpointAddr) -> list[tuple[str, int]]:
        targets: list[tuple[str, int]] = []
        for ip, port in addr.addrs:
            if self._family == socket.AF_INET:
                if ip.version != 4:
                    continue
                target = (str(ip), port)
            elif ip.version == 6:
                if ip.is_link_local:
                    continue  # would need a scope id
                target = (str(ip), port)
            elif self._dual_stack:
                target = (f"::ffff:{ip}", port)  # matches how the socket reports the sender
            else:
                continue
            if target not in targets:
                targets.append(target)
        return targets

    def _dial(self, target: tuple[str, int], expected: EndpointId, race: _DialRace) -> QuicPeerConnection:
        quic = QuicConnection(configuration=self._client_config)
        conn = QuicPeerConnection(self, quic, expected_id=expected, race=race)
        self._connections.add(conn)
        self._register_cid(conn, quic.host_cid)
        log.debug("dialing %s at %s:%d", expected.short(), *target)
        quic.connect(target, now=self._loop.time())
        conn._transmit()
        return conn

    # -- the socket --------------------------------------------------------
    def _datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.stats.datagrams_received += 1
        peer = (str(addr[0]), int(addr[1]))  # drop IPv6 flow info / scope: one form everywhere
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
        except Exception:  # ValueError for most garbage; anything else must not escape either
            self.stats.dropped_malformed += 1
            log.debug("dropped %d-byte datagram from %s: not QUIC", len(data), peer)
            return
        conn = self._by_cid.get(header.destination_cid)
        if conn is not None:
            conn._receive(data, peer)
            return
        if header.packet_type != QuicPacketType.INITIAL:
            self.stats.dropped_unknown += 1
            log.debug("dropped %d-byte datagram from %s: unknown connection id", len(data), peer)
            return
        self._accept(header.destination_cid, header.version, data, peer)

    def _accept(self, dcid: bytes, version: int | None, data: bytes, peer: tuple[str, int]) -> None:
        if (
            self._closed
            or len(data) < SMALLEST_MAX_DATAGRAM_SIZE  # RFC 9000 14.1: clients pad Initials
            or version not in self._server_config.supported_versions
        ):
            self.stats.dropped_initials += 1
            return
        if len(self._half_open) >= self._max_half_open:
            self.stats.dropped_initials += 1
            log.debug("dropped Initial from %s: %d handshakes already pending", peer, len(self._half_open))
            return
        quic = QuicConnection(configuration=self._server_config, original_destination_connection_id=dcid)
        conn = QuicPeerConnection(self, quic)
        self._connections.add(conn)
        self._half_open.add(conn)
        self._register_cid(conn, dcid)
        self._register_cid(conn, quic.host_cid)
        conn._receive(data, peer)
        if quic._state == QuicConnectionState.FIRSTFLIGHT:  # aioquic private: no packet decrypted
            # Nothing decrypted: forged or corrupt. Forget it rather than hold a slot.
            self.stats.dropped_initials += 1
            self._half_open.discard(conn)
            conn._mark_closed("undecryptable Initial", TransportError("undecryptable Initial"))
            conn._terminate()
            return
        log.debug("inbound connection from %s", peer)

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, addr)

    # -- bookkeeping called by connections ---------------------------------
    def _register_cid(self, conn: QuicPeerConnection, cid: bytes) -> None:
        self._by_cid[cid] = conn
        conn._cids.add(cid)

    def _unregister_cid(self, conn: QuicPeerConnection, cid: bytes) -> None:
        if self._by_cid.get(cid) is conn:
            del self._by_cid[cid]
        conn._cids.discard(cid)

    def _forget(self, conn: QuicPeerConnection) -> None:
        for cid in list(conn._cids):
            self._unregister_cid(conn, cid)
        self._connections.discard(conn)
        if conn in self._half_open:
            self._half_open.discard(conn)
            self.stats.handshakes_failed += 1

    def _on_authenticated(self, conn: QuicPeerConnection) -> None:
        if conn.is_client:
            return
        self._half_open.discard(conn)
        self.stats.accepted += 1
        if self._handler is None:
            conn.close("not accepting connections")
            return
        self._spawn(self._handler(conn), f"connection handler for {conn!r}")

    def _spawn(self, awaitable: Awaitable[None], what: str) -> None:
        async def run() -> None:
            await awaitable

        task = self._loop.create_task(run())
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.error("%s failed", what, exc_info=exc)

        task.add_done_callback(done)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in list(self._connections):
            conn._close("endpoint closed", CloseCode.NORMAL)
            conn._transmit()  # get the CONNECTION_CLOSE out before the socket goes
            conn._terminate()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        if self._transport is not None:
            self._transport.close()
        log.info("endpoint %s closed", self.endpoint_id.short())
