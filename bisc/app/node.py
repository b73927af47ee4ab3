"""Node: one identity on one endpoint, the entry point of the Python API.

async with Node(data_dir="~/.bisc-a", display_name="Ada") as node:
    channel = await node.create_channel()
    print(channel.ticket())
    async for event in channel.events():
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from pathlib import Path
from types import TracebackType

from bisc.app.channel import Channel
from bisc.app.channel_files import Sharing
from bisc.errors import BiscError
from bisc.identity import Identity
from bisc.net.transport import Connection, Endpoint, TransportError
from bisc.paths import Paths
from bisc.proto.control import (
    DENIED_REASON,
    INCARNATION_SIZE,
    Join,
    Welcome,
    admission_proof,
    check_proof,
    decode_control,
    encode_control,
)
from bisc.proto.messages import MAX_NAME, MessageError
from bisc.settings import Settings
from bisc.ticket import BiscTicket, EndpointAddr

log = logging.getLogger(__name__)

ADMISSION_TIMEOUT = 5.0
DIAL_TIMEOUT = 5.0
CAPABILITIES = ("chat",)


def media_capabilities() -> tuple[str, ...]:
    """What this node can take besides chat: "video/<codec>" for each codec PyAV both encodes and
    decodes here (a sender picks H.264 only when every member lists it)."""
    try:
        from bisc.media.video_codec import available_codecs
    except ImportError:  # installed without the media extra
        return ()
    return tuple(f"video/{codec}" for codec in available_codecs())


class JoinError(BiscError):
    """No bootstrap peer of a ticket could be reached and admitted us."""


def parse_bind(bind: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' -> (host, port); BiscError if malformed."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 0xFFFF:
        raise BiscError(f"--bind must be HOST:PORT, got {bind!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Node:
    def __init__(
        self,
        *,
        data_dir: str | Path | None = None,
        display_name: str | None = None,
        bind: str = "0.0.0.0:0",
        identity: Identity | None = None,
        endpoint: Endpoint | None = None,
        storage_dir: str | Path | None = None,
    ) -> None:
        self.paths = Paths.resolve(data_dir)
        self._storage_dir = Path(storage_dir).expanduser() if storage_dir else None
        self._identity = identity
        self._display_name = display_name
        self._bind = parse_bind(bind)
        self._endpoint = endpoint
        self.channels: dict[bytes, Channel] = {}
        self._left_topics: deque[bytes] = deque(maxlen=32)
        self.incarnation = os.urandom(INCARNATION_SIZE)
        self.capabilities: tuple[str, ...] = CAPABILITIES + media_capabilities()
        self._started = False

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> Node:
        if self._started:
            return self
        if self._identity is None:
            self._identity = Identity.load_or_create(self.paths.identity_file)
        settings = Settings.load(self.paths.settings_file)
        if self._display_name is None:
            self._display_name = settings.display_name
        if self._storage_dir is None:
            self._storage_dir = Path(settings.storage_dir or self.paths.default_storage_dir).expanduser()
        name = self._display_name.strip()
        if not name or len(name) > MAX_NAME:
            raise BiscError(f"display name must be 1..{MAX_NAME} characters")
        self._display_name = name
        if self._endpoint is None:
            from bisc.net.quic import QuicEndpoint  # the real network, loaded only when used

            host, port = self._bind
            self._endpoint = await QuicEndpoint.bind(self._identity, host, port)
        self._endpoint.set_connection_handler(self._accept)
        self._started = True
        return self

    async def close(self) -> None:
        """Leave every channel gracefully and release the endpoint."""
        for channel in list(self.channels.values()):
            await channel.leave()
        if self._endpoint is not None:
            await self._endpoint.close()
        self._started = False

    async def __aenter__(self) -> Node:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def identity(self) -> Identity:
        if self._identity is None:
            raise BiscError("node not started")
        return self._identity

    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            raise BiscError("node not started")
        return self._endpoint

    @property
    def display_name(self) -> str:
        return self._display_name or ""

    @property
    def storage_dir(self) -> Path:
        """Where downloads go: <storage_dir>/bisc/<file hash>/<name>."""
        return self._storage_dir or self.paths.default_storage_dir

    async def _open_channel(self, secret: bytes) -> Channel:
        channel = Channel(self, secret)
        channel.sharing = Sharing(channel, self.storage_dir, self.paths.data_dir)
        await channel.sharing.start()
        self.channels[channel.topic_id] = channel
        return channel

    # -- channels ----------------------------------------------------------
    async def create_channel(self) -> Channel:
        """A new channel with a fresh secret; share channel.ticket() to invite."""
        await self.start()
        channel = await self._open_channel(BiscTicket.new_secret())
        channel._start(bootstrap=[])
        return channel

    async def join(self, ticket: str | BiscTicket, timeout: float = 15.0) -> Channel:
        """Join the channel of `ticket`, trying all its bootstrap peers at once."""
        if isinstance(ticket, str):
            ticket = BiscTicket.parse(ticket)
        await self.start()
        if ticket.topic_id in self.channels:
            return self.channels[ticket.topic_id]
        channel = await self._open_channel(ticket.secret)
        peers = [p for p in ticket.bootstrap if p.endpoint_id != self.identity.endpoint_id]
        if not peers:
            await channel._shutdown("no bootstrap peer")
            raise JoinError("the ticket lists only this node")
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(self._dial_channel(channel, p) for p in peers), return_exceptions=True),
                timeout,
            )
        except TimeoutError:
            await channel._shutdown("join timed out")
            raise JoinError(f"could not join: no peer answered within {timeout:g} s") from None
        reached = []
        errors = []
        for peer, result in zip(peers, results, strict=True):
            if isinstance(result, Connection):
                channel._register(result, dialed_by_me=True)
                reached.append(peer.endpoint_id)
            else:
                errors.append(f"{peer.endpoint_id.short()}: {result}")
        if not reached:
            await channel._shutdown("join failed")
            raise JoinError("could not join: " + "; ".join(errors))
        channel._start(bootstrap=reached)
        return channel

    async def reopen(self, ticket: str | BiscTicket, timeout: float = 15.0) -> Channel:
        """Back into a channel from a saved ticket: join through its other peers if one answers,
        otherwise open it with this node alone, as its creator did (the others come back with a
        fresh ticket: the secret is the channel, the addresses in an old ticket may be stale)."""
        if isinstance(ticket, str):
            ticket = BiscTicket.parse(ticket)
        await self.start()
        if ticket.topic_id in self.channels:
            return self.channels[ticket.topic_id]
        if any(p.endpoint_id != self.identity.endpoint_id for p in ticket.bootstrap):
            try:
                return await self.join(ticket, timeout)
            except JoinError as exc:
                log.info("reopening %s alone: %s", ticket.topic_id.hex()[:8], exc)
        while ticket.topic_id in self._left_topics:
            self._left_topics.remove(ticket.topic_id)  # members may come back to us now
        channel = await self._open_channel(ticket.secret)
        channel._start(bootstrap=[])
        return channel

    def _forget(self, channel: Channel) -> None:
        if self.channels.get(channel.topic_id) is channel:
            del self.channels[channel.topic_id]
            self._left_topics.append(channel.topic_id)

    # -- admission ---------------------------------------------------------
    async def _dial_channel(self, channel: Channel, addr: EndpointAddr) -> Connection:
        """Connect to `addr` and be admitted to `channel` (both sides prove the secret)."""
        try:
            conn = await self.endpoint.connect(addr, timeout=DIAL_TIMEOUT)
        except TransportError:
            raise
        except OSError as exc:  # unreachable address family and the like
            raise TransportError(str(exc)) from None
        try:
            conn.send_control(
                encode_control(
                    Join(
                        channel.topic_id,
                        admission_proof(channel.secret, conn.binding, "dialer"),
                        self.incarnation,
                    )
                )
            )
            reply = decode_control(await asyncio.wait_for(conn.recv_control(), ADMISSION_TIMEOUT))
        except (TimeoutError, TransportError, MessageError) as exc:
            conn.close("admission failed")
            reason = "no answer" if isinstance(exc, TimeoutError) else str(exc)
            raise JoinError(f"not admitted by {addr.endpoint_id.short()}: {reason}") from None
        if not isinstance(reply, Welcome) or not check_proof(
            channel.secret, conn.binding, "acceptor", reply.proof
        ):
            conn.close("admission failed")
            raise JoinError(f"{addr.endpoint_id.short()} did not prove it holds the channel secret")
        channel._apply_snapshot(reply.snapshot)
        channel._incarnations[conn] = reply.incarnation
        return conn

    async def _accept(self, conn: Connection) -> None:
        """Admit an inbound connection to a channel, or close it saying nothing."""
        try:
            request = decode_control(await asyncio.wait_for(conn.recv_control(), ADMISSION_TIMEOUT))
        except TransportError as exc:  # the dialer went away first (e.g. a losing parallel dial)
            log.info("connection from %s closed before joining: %s", conn.remote_id.short(), exc)
            return
        except (TimeoutError, MessageError) as exc:
            log.warning(
                "closing connection from %s: no valid join request (%s)",
                conn.remote_id.short(),
                exc or "timeout",
            )
            conn.close(DENIED_REASON)
            return
        channel = self.channels.get(request.topic_id) if isinstance(request, Join) else None
        if (channel is not None and not channel.accepting) or (
            channel is None and isinstance(request, Join) and request.topic_id in self._left_topics
        ):
            # A member that has not yet heard we left: expected, not suspicious.
            log.info("declining %s: this node left the channel", conn.remote_id.short())
            conn.close(DENIED_REASON)
            return
        if channel is None or not check_proof(channel.secret, conn.binding, "dialer", request.proof):  # type: ignore[union-attr]
            log.warning("admission denied to %s", conn.remote_id.short())
            conn.close(DENIED_REASON)
            return
        proof = admission_proof(channel.secret, conn.binding, "acceptor")
        with contextlib.suppress(TransportError):
            conn.send_control(encode_control(Welcome(proof, tuple(channel.snapshot()), self.incarnation)))
            channel._incarnations[conn] = request.incarnation  # type: ignore[union-attr]
            channel._register(conn, dialed_by_me=False)
