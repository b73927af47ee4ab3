"""A joined channel: gossip, membership and the full mesh of connections.

The protocol logic lives in sans-IO state machines (bisc.proto.gossip,
bisc.proto.membership); this class is their runtime. It feeds them control
frames, timers and the clock, carries out what they ask (send to a peer,
dialing it first if needed), and turns their output into events.

Full mesh: every member connects to every other. Of each pair, the member
with the lower EndpointId dials; the other dials too if no connection has
appeared after MESH_FALLBACK seconds (one side may be unreachable). If both
dialed, both ends keep the connection dialed by the lower id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack

from bisc.app.channel_files import Sharing
from bisc.app.channel_media import ChannelMedia
from bisc.app.events import ChannelEvent
from bisc.app.media_session import MediaSession
from bisc.errors import BiscError
from bisc.files.download import Download
from bisc.files.service import CatalogEntry
from bisc.files.swarm import FileInfo
from bisc.identity import EndpointId
from bisc.net.transport import Connection, TransportError
from bisc.proto import gossip as gp
from bisc.proto.control import Direct, Media, decode_control, encode_control
from bisc.proto.control import Gossip as GossipFrame
from bisc.proto.media_control import decode_media
from bisc.proto.membership import (
    HEARTBEAT_INTERVAL,
    Member,
    MemberJoined,
    MemberLeft,
    Membership,
)
from bisc.proto.messages import (
    MAX_CHAT,
    Chat,
    Heartbeat,
    Message,
    MessageError,
    PeerAnnounce,
    PeerInfo,
    PeerLeave,
    TicketRefresh,
    open_envelope,
    seal,
)
from bisc.ticket import BiscTicket, EndpointAddr, topic_id

if TYPE_CHECKING:
    from bisc.app.node import Node

log = logging.getLogger(__name__)

EVENT_QUEUE = 1024
PENDING_PER_PEER = 64
MESH_CHECK_INTERVAL = 1.0
MESH_FALLBACK = 6.0
DIAL_ATTEMPTS = 6
DIAL_BACKOFF_MAX = 8.0
LEAVE_FLUSH = 0.3
# Two links to one peer made within this window are a simultaneous-dial race;
# a new link to a peer we have had a link with for longer replaces it.
DIAL_RACE_WINDOW = 2.0
# After learning of a new member, announce ourselves again (coalesced): a
# member that joined while our first announcement was spreading never saw it.
REANNOUNCE_DELAY = 0.3
TICKET_EXTRA_PEERS = 2
_CLOSED = object()


class Channel(ChannelMedia):
    """One channel this node is a member of. Create with Node.create_channel()
    or Node.join(ticket)."""

    def __init__(self, node: Node, secret: bytes) -> None:
        self.node = node
        self.secret = secret
        self.topic_id = topic_id(secret)
        self.me = node.identity.endpoint_id
        self.membership = Membership(self.me)
        self.gossip = gp.Gossip(self.me.key, gp.GossipConfig(), random.Random(), peer_data=self._peer_data())
        self._connections: dict[EndpointId, Connection] = {}
        self._conn_dialer: dict[Connection, EndpointId] = {}
        self._conn_since: dict[Connection, float] = {}
        self._incarnations: dict[Connection, bytes] = {}  # the peer's, from admission
        self._dialing: dict[EndpointId, asyncio.Task[None]] = {}
        self._pending: dict[EndpointId, deque[bytes]] = {}
        self._addrs: dict[EndpointId, tuple[tuple[str, int], ...]] = {}
        self._first_seen: dict[EndpointId, float] = {}
        self._events: asyncio.Queue[object] = asyncio.Queue(maxsize=EVENT_QUEUE)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._seq = 0
        self._next_heartbeat = 0.0
        self._next_mesh_check = 0.0
        self._reannounce_at: float | None = None
        self._leaving = False
        self._closed = False
        self._sealed_info = b""  # our newest signed announcement
        self.sharing: Sharing | None = None
        self.media = MediaSession(self)  # negotiation, routing and reports of all media streams
        self.voice = None  # while a call runs (start_voice)
        self.video = None  # while video runs (start_video)
        self.events_dropped = 0
        self.invalid_messages = 0

    # -- public API --------------------------------------------------------
    @property
    def members(self) -> dict[EndpointId, Member]:
        """The other members, by EndpointId."""
        return dict(self.membership.members)

    @property
    def connected_peers(self) -> set[EndpointId]:
        return {p for p, c in self._connections.items() if not c.is_closed}

    @property
    def display_name(self) -> str:
        return self.node.display_name

    def ticket(self) -> BiscTicket:
        """A fresh ticket: this node plus a few connected members as bootstrap peers."""
        bootstrap = [self.node.endpoint.local_addr()]
        for peer in sorted(self.connected_peers, key=lambda p: p.key)[:TICKET_EXTRA_PEERS]:
            addrs = self._addrs.get(peer)
            if addrs:
                bootstrap.append(EndpointAddr.of(peer, addrs))
        return BiscTicket(self.secret, tuple(bootstrap))

    async def refresh_ticket(self) -> BiscTicket:
        """A fresh ticket, also announced to the channel."""
        ticket = self.ticket()
        self._broadcast(TicketRefresh(ticket.to_text()))
        return ticket

    async def send_chat(self, text: str) -> None:
        """Send a chat message to every member (MessageError if too long or empty)."""
        if not text.strip():
            raise MessageError("chat message is empty")
        if len(text) > MAX_CHAT:
            raise MessageError(f"chat message of {len(text)} characters exceeds {MAX_CHAT}")
        self._broadcast(Chat(text))

    async def share(self, path: str | Path, progress: Callable[[int, int], None] | None = None) -> FileInfo:
        """Hash `path` on all cores and announce it to the channel."""
        return await self._files().share(Path(path), progress)

    @property
    def files(self) -> dict[bytes, CatalogEntry]:
        """The channel's file catalog: every announced file and who has it."""
        return self._files().service.files

    def download(self, file_hash: bytes | str) -> Download:
        """Start (or resume) downloading a file; the handle shows progress and can cancel."""
        if isinstance(file_hash, str):
            try:
                file_hash = bytes.fromhex(file_hash)
            except ValueError:
                raise BiscError(f"not a file hash: {file_hash!r}") from None
        return self._files().download(file_hash)

    def _files(self) -> Sharing:
        if self.sharing is None:
            raise BiscError("file sharing is not running in this channel")
        return self.sharing

    async def events(self) -> AsyncIterator[ChannelEvent]:
        """Events until the channel is left."""
        while True:
            item = await self._events.get()
            if item is _CLOSED:
                return
            yield item  # type: ignore[misc]

    async def leave(self) -> None:
        """Announce PeerLeave, then close every connection."""
        if self._closed or self._leaving:
            return
        self._leaving = True  # nothing may be sent after the leave: it would undo it
        with contextlib.suppress(BiscError):
            sealed = self._seal(PeerLeave())
            self.gossip.broadcast(sealed, self._now())
            self._flush()
            # Also straight to every mesh peer: the leave matters more than
            # most messages, and gossip repair needs time we are not staying for.
            for conn in list(self._connections.values()):
                with contextlib.suppress(TransportError):
                    conn.send_control(encode_control(Direct(sealed)))
        await asyncio.sleep(LEAVE_FLUSH)  # still answering grafts meanwhile
        self.gossip.leave(self._now())
        self._flush()
        await asyncio.sleep(0.05)  # let the Disconnects reach the wire
        await self._shutdown("leave")

    # -- start-up (called by Node) -----------------------------------------
    def _start(self, bootstrap: list[EndpointId]) -> None:
        now = self._now()
        if bootstrap:
            self.gossip.join([p.key for p in bootstrap], now)
        self._broadcast(PeerAnnounce(self._info()))
        # The links made while joining predate our announcement: send it along
        # them now rather than waiting for the gossip overlay to form.
        for conn in list(self._connections.values()):
            with contextlib.suppress(TransportError):
                conn.send_control(encode_control(Direct(self._sealed_info)))
        self._next_heartbeat = now + HEARTBEAT_INTERVAL
        self._spawn(self._run())

    def _apply_snapshot(self, snapshot: tuple[bytes, ...]) -> None:
        for sealed in snapshot:
            self._deliver(sealed)

    @property
    def accepting(self) -> bool:
        """False once leaving: admitting anyone then could undo the leave."""
        return not (self._closed or self._leaving)

    def snapshot(self) -> list[bytes]:
        """Signed announcements of the members and of this node, for a joiner."""
        own = [self._sealed_info] if self._sealed_info else []
        own += list(self.sharing.sealed.values()) if self.sharing else []
        return [*own, *self.membership.snapshot()]

    # -- internals ---------------------------------------------------------
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _info(self) -> PeerInfo:
        addr = self.node.endpoint.local_addr()
        return PeerInfo(
            self.node.display_name,
            self.node.capabilities,
            tuple((str(ip), port) for ip, port in addr.addrs),
        )

    def _peer_data(self) -> bytes:
        addr = self.node.endpoint.local_addr()
        return bytes(msgpack.packb([[str(ip), port] for ip, port in addr.addrs]))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _emit(self, event: object) -> None:
        if self._events.full():  # a consumer that stopped reading loses the oldest
            self._events.get_nowait()
            self.events_dropped += 1
        self._events.put_nowait(event)

    def _seal(self, message: Message) -> bytes:
        # Microseconds since the epoch keep sequence numbers increasing across restarts.
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        return seal(self.node.identity, self.topic_id, self._seq, time.time_ns() // 1_000_000, message)

    def _broadcast(self, message: Message) -> bytes:
        """Sign and send `message` to every member; returns the sealed bytes."""
        if self._closed or self._leaving:
            raise BiscError("channel has been left")
        data = self._seal(message)
        if isinstance(message, PeerAnnounce | Heartbeat):
            self._sealed_info = data
        self.gossip.broadcast(data, self._now())
        self._flush()
        return data

    def _deliver(self, sealed: bytes, sender: EndpointId | None = None) -> None:
        """Verify and apply one sealed message; from `sender` itself if given."""
        try:
            envelope = open_envelope(self.topic_id, sealed)
            if sender is not None and envelope.origin != sender:
                raise MessageError("a direct message must come from its origin")
        except MessageError as exc:
            self.invalid_messages += 1
            log.info("dropping invalid channel message: %s", exc)
            return
        for event in self.membership.handle(envelope, sealed, self._now()):
            self._on_membership_event(event)
            if self.sharing is not None:
                self.sharing.on_membership_event(event)

    def _on_membership_event(self, event: ChannelEvent) -> None:
        if isinstance(event, MemberJoined):
            peer = event.member.peer_id
            if event.member.info.addrs:
                self._addrs[peer] = event.member.info.addrs
            self._first_seen[peer] = self._now()
            if self._reannounce_at is None:
                self._reannounce_at = self._now() + REANNOUNCE_DELAY
            if self._should_dial(peer):
                self._ensure_connection(peer)
        elif isinstance(event, MemberLeft):
            self._first_seen.pop(event.peer_id, None)
            conn = self._connections.pop(event.peer_id, None)
            if conn is not None:
                conn.close(f"peer {event.reason}")
            self.gossip.handle_disconnected(event.peer_id.key, self._now())
        self._emit(event)

    def _should_dial(self, peer: EndpointId) -> bool:
        if self.me.key < peer.key:
            return True
        first = self._first_seen.get(peer)
        return first is not None and self._now() - first > MESH_FALLBACK

    def _flush(self) -> None:
        """Carry out everything the gossip state machine asked for."""
        for out in self.gossip.drain():
            if isinstance(out, gp.Send):
                self._send_gossip(EndpointId(out.peer), out.data)
            elif isinstance(out, gp.Deliver):
                self._deliver(out.payload)
            elif isinstance(out, gp.PeerData):
                self._learn_addrs(EndpointId(out.peer), out.data)
        self._wakeup.set()

    def _learn_addrs(self, peer: EndpointId, data: bytes) -> None:
        try:
            raw = msgpack.unpackb(data, max_array_len=16, max_map_len=0, max_str_len=64, max_bin_len=0)
            addrs = tuple((str(h), int(p)) for h, p in raw)[:16]
        except Exception:  # peer data is untrusted input
            return
        if addrs and peer not in self._addrs:
            self._addrs[peer] = addrs

    def _send_gossip(self, peer: EndpointId, data: bytes) -> None:
        frame = encode_control(GossipFrame(data))
        conn = self._connections.get(peer)
        if conn is not None and not conn.is_closed:
            try:
                conn.send_control(frame)
                return
            except TransportError as exc:
                log.debug("send to %s failed: %s", peer.short(), exc)
        queue = self._pending.setdefault(peer, deque(maxlen=PENDING_PER_PEER))
        queue.append(frame)
        self._ensure_connection(peer)

    def _ensure_connection(self, peer: EndpointId) -> None:
        if self._closed or peer == self.me or peer in self._dialing:
            return
        conn = self._connections.get(peer)
        if conn is not None and not conn.is_closed:
            return
        if peer not in self._addrs:
            self._give_up(peer)
            return
        task = self._spawn(self._dial_loop(peer))
        self._dialing[peer] = task
        task.add_done_callback(functools.partial(self._dial_done, peer))

    def _dial_done(self, peer: EndpointId, _task: asyncio.Task[None]) -> None:
        self._dialing.pop(peer, None)

    def _give_up(self, peer: EndpointId) -> None:
        self._pending.pop(peer, None)
        self.gossip.handle_disconnected(peer.key, self._now())
        self._flush()

    async def _dial_loop(self, peer: EndpointId) -> None:
        backoff = 0.25
        for attempt in range(DIAL_ATTEMPTS):
            if self._closed:
                return
            addr = EndpointAddr.of(peer, self._addrs.get(peer, ()))
            try:
                conn = await self.node._dial_channel(self, addr)
            except BiscError as exc:
                log.info("dial %s attempt %d failed: %s", peer.short(), attempt + 1, exc)
            else:
                self._register(conn, dialed_by_me=True)
                return
            if peer not in self.membership.members and not self._pending.get(peer):
                break
            if peer in self.connected_peers:  # the peer dialed us meanwhile
                return
            await asyncio.sleep(backoff * (1 + random.random() / 2))
            backoff = min(backoff * 2, DIAL_BACKOFF_MAX)
        self._give_up(peer)

    def _register(self, conn: Connection, *, dialed_by_me: bool) -> None:
        """Adopt an admitted connection (both dial directions end here)."""
        peer = conn.remote_id
        if self._closed:
            conn.close("channel closed")
            self._incarnations.pop(conn, None)
            return
        dialer = self.me if dialed_by_me else peer
        existing = self._connections.get(peer)
        restarted = self._incarnations.get(existing) != self._incarnations.get(conn) if existing else False
        if existing is not None and not existing.is_closed:
            if not restarted and self._now() - self._conn_since.get(existing, 0.0) < DIAL_RACE_WINDOW:
                # Both ends dialed at once: both keep the one the lower id dialed.
                preferred = min(self.me, peer, key=lambda p: p.key)
                if dialer != preferred or self._conn_dialer.get(existing) == preferred:
                    conn.close("duplicate connection")
                    self._incarnations.pop(conn, None)
                    return
                existing.close("duplicate connection")
            else:
                # The peer dialed although we have an old link: it restarted, or
                # lost the link without us noticing yet. The old one is dead.
                existing.close("replaced by a new connection")
        self._connections[peer] = conn
        self._conn_dialer[conn] = dialer
        self._conn_since[conn] = self._now()
        self._spawn(self._read(conn))
        if self.sharing is not None:
            self.sharing.service.attach(conn)
        self.media.attach(conn)
        own = [self._sealed_info] if self._sealed_info else []
        own += list(self.sharing.sealed.values()) if self.sharing else []
        for sealed in own:  # introduce ourselves (and our files) on every new link at once
            with contextlib.suppress(TransportError):
                conn.send_control(encode_control(Direct(sealed)))
        for frame in self._pending.pop(peer, ()):
            with contextlib.suppress(TransportError):
                conn.send_control(frame)

    async def _read(self, conn: Connection) -> None:
        peer = conn.remote_id
        try:
            while True:
                raw = await conn.recv_control()
                try:
                    frame = decode_control(raw)
                except MessageError as exc:
                    log.warning("closing connection to %s: %s", peer.short(), exc)
                    conn.close("malformed control frame")
                    return
                if isinstance(frame, Direct):
                    self._deliver(frame.sealed, sender=peer)
                elif isinstance(frame, Media):
                    self._on_media(conn, frame.data)
                elif isinstance(frame, GossipFrame):
                    try:
                        self.gossip.handle_message(peer.key, frame.data, self._now())
                    except gp.GossipError as exc:
                        log.info("bad gossip from %s: %s", peer.short(), exc)
                    self._flush()
        except TransportError:
            pass
        finally:
            self._conn_dialer.pop(conn, None)
            self._conn_since.pop(conn, None)
            self._incarnations.pop(conn, None)
            if self._connections.get(peer) is conn:
                del self._connections[peer]
                if self.sharing is not None:
                    self.sharing.service.detach(peer)
                self.media.detach(peer, conn)
                if not self._closed:
                    self.gossip.handle_disconnected(peer.key, self._now())
                    self._flush()

    def _on_media(self, conn: Connection, data: bytes) -> None:
        try:
            msg = decode_media(data)
        except MessageError as exc:
            self.invalid_messages += 1
            log.info("bad media control message from %s: %s", conn.remote_id.short(), exc)
            return
        self.media.on_control(conn.remote_id, msg)

    async def _run(self) -> None:
        """Timers: gossip, heartbeats, member expiry, mesh upkeep."""
        while not self._closed:
            now = self._now()
            deadlines = [self._next_heartbeat, self._next_mesh_check]
            if self._reannounce_at is not None:
                deadlines.append(self._reannounce_at)
            gossip_at = self.gossip.poll_timeout()
            if gossip_at is not None:
                deadlines.append(gossip_at)
            expiry = self.membership.next_expiry()
            if expiry is not None:
                deadlines.append(expiry)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(0.0, min(deadlines) - now))
            if self._closed:
                return
            self._tick(self._now())

    def _tick(self, now: float) -> None:
        gossip_at = self.gossip.poll_timeout()
        if gossip_at is not None and now >= gossip_at:
            self.gossip.handle_timeout(now)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_INTERVAL
            with contextlib.suppress(BiscError):
                self._broadcast(Heartbeat(self._info()))
        if self._reannounce_at is not None and now >= self._reannounce_at:
            self._reannounce_at = None
            with contextlib.suppress(BiscError):
                self._broadcast(PeerAnnounce(self._info()))
        for event in self.membership.expire(now):
            self._on_membership_event(event)
            if self.sharing is not None:
                self.sharing.on_membership_event(event)
        if now >= self._next_mesh_check:
            self._next_mesh_check = now + MESH_CHECK_INTERVAL
            for peer in self.membership.members:
                if peer not in self.connected_peers and self._should_dial(peer):
                    self._ensure_connection(peer)
        self._flush()

    async def _shutdown(self, reason: str) -> None:
        self._closed = True
        await self.stop_voice()
        await self.stop_video()
        await self.media.close()
        self._wakeup.set()
        for conn in list(self._connections.values()):
            conn.close(reason)
        self._connections.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.sharing is not None:
            await self.sharing.close()
        self.node._forget(self)
        self._emit(_CLOSED)
