"""A channel's media links: negotiation, datagram routing and reports, for every stream.

One per channel. Local streams (our voice, camera, screen) are offered on
every link; a peer's stream is routed to us only once an acceptor for its
kind (voice, video) took it. An offer always lists all our streams and an
answer all those accepted, so the latest exchange is the whole truth.

Once a second per link a MediaReport carries the round-trip stamps, the
sender clock of each of our streams and the reception of each of the peer's
streams; what the peer reports about our streams goes back to them (loss,
its bandwidth estimate), and so do keyframe requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bisc.identity import EndpointId
from bisc.net.transport import MIN_DATAGRAM_SIZE, Connection, DatagramHandler, TransportError
from bisc.proto.control import Media, encode_control
from bisc.proto.media_control import (
    KeyframeRequest,
    MediaAnswer,
    MediaControl,
    MediaOffer,
    MediaReport,
    MediaStop,
    ReportClock,
    StreamOffer,
    StreamReport,
    encode_media,
)

if TYPE_CHECKING:
    from bisc.app.channel import Channel

log = logging.getLogger(__name__)

REPORT_INTERVAL = 1.0


class LocalStream(Protocol):
    """A stream we send."""

    stream_id: int

    def offer(self) -> StreamOffer: ...

    def sender_clock(self) -> tuple[int, float] | None:
        """(media timestamp, capture time) of the newest frame sent, or None."""

    def on_accepted(self, peer: EndpointId) -> None:
        """The peer takes the stream from now on (video: send it a keyframe)."""

    def on_keyframe_request(self, peer: EndpointId) -> None: ...

    def on_report(self, peer: EndpointId, report: StreamReport, rtt: float | None) -> None:
        """What the peer received of this stream in its last interval."""


class RemoteStream(Protocol):
    """A peer's stream we receive."""

    def push(self, data: bytes, arrival: float) -> None: ...

    def interval_report(self) -> StreamReport:
        """Reception since the last call, for our report to the sender."""

    def on_sender_report(self, timestamp: int, capture_local: float | None, rtt: float | None) -> None:
        """The sender's clock (mapped onto ours, None until a round trip) and the link's RTT."""

    def close(self) -> None: ...


class StreamAcceptor(Protocol):
    def accept(self, peer: EndpointId, offer: StreamOffer) -> RemoteStream | str:
        """A receiver for the offered stream, or why not."""

    def release(self, peer: EndpointId, stream: RemoteStream) -> None:
        """The stream ended (stopped, refused by a newer offer, or the link went)."""


@dataclass
class _Link:
    conn: Connection
    clock: ReportClock = field(default_factory=ReportClock)
    accepted: frozenset[int] = frozenset()  # our streams the peer takes
    remote: dict[int, tuple[RemoteStream, StreamAcceptor]] = field(default_factory=dict)
    offered: dict[int, StreamOffer] = field(default_factory=dict)  # the peer's latest offer
    declined: set[int] = field(default_factory=set)  # offered streams we do not want now
    reoffered: bool = False


class MediaSession:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._links: dict[EndpointId, _Link] = {}
        self._local: dict[int, LocalStream] = {}
        self._acceptors: dict[str, StreamAcceptor] = {}
        self._task: asyncio.Task[None] | None = None
        self.datagrams_sent = 0

    # -- what we send and take ----------------------------------------------------

    def add_local(self, stream: LocalStream) -> None:
        self._local[stream.stream_id] = stream
        self._offer_everywhere()
        self._ensure_reporting()
        self.report_now()  # start the round-trip clock now: the sender clock mapping needs one

    def remove_local(self, stream_id: int) -> None:
        if self._local.pop(stream_id, None) is None:
            return
        for link in self._links.values():
            if stream_id in link.accepted:
                link.accepted = link.accepted - {stream_id}
                self._send(link.conn, MediaStop(stream_id))

    def set_acceptor(self, kind: str, acceptor: StreamAcceptor | None) -> None:
        """Take (or stop taking) peers' streams of `kind` ("audio", "video")."""
        old = self._acceptors.pop(kind, None)
        if old is not None:
            for peer, link in self._links.items():
                for sid, (_stream, owner) in list(link.remote.items()):
                    if owner is old:
                        self._drop_remote(peer, link, sid)
        if acceptor is not None:
            self._acceptors[kind] = acceptor
            self._ensure_reporting()
            # Peers offered while we refused: an empty offer asks them to offer again.
            for link in self._links.values():
                self._send(link.conn, MediaOffer(tuple(s.offer() for s in self._local.values())))
            self.report_now()

    def peers_taking(self, stream_id: int) -> list[EndpointId]:
        return [peer for peer, link in self._links.items() if stream_id in link.accepted]

    def rtt(self, peer: EndpointId) -> float | None:
        link = self._links.get(peer)
        return link.clock.rtt if link is not None else None

    def max_datagram_size(self) -> int:
        """The smallest datagram limit over the links taking our streams (what one fan-out can use);
        over every link while none takes any yet, so the first frames already fit."""
        links = [link for link in self._links.values() if link.accepted] or list(self._links.values())
        return min((link.conn.max_datagram_size for link in links), default=MIN_DATAGRAM_SIZE)

    def send(self, stream_id: int, datagrams: Sequence[bytes], deadline: float) -> int:
        """Fan the datagrams out to every peer taking the stream; how many went out."""
        sent = 0
        for link in self._links.values():
            if stream_id in link.accepted:
                for data in datagrams:
                    if link.conn.send_datagram(data, deadline):
                        sent += 1
        self.datagrams_sent += sent
        return sent

    def request_keyframe(self, peer: EndpointId, stream_id: int) -> None:
        link = self._links.get(peer)
        if link is not None:
            self._send(link.conn, KeyframeRequest(stream_id))

    # -- links --------------------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        old = self._links.pop(conn.remote_id, None)
        if old is not None and old.conn is not conn:
            self._drop_all(conn.remote_id, old)
        link = _Link(conn)
        self._links[conn.remote_id] = link
        if self._local or self._acceptors:
            self._send(conn, MediaOffer(tuple(s.offer() for s in self._local.values())))
            self._send_report(link)

    def detach(self, peer: EndpointId, conn: Connection) -> None:
        link = self._links.get(peer)
        if link is not None and link.conn is conn:
            self._drop_all(peer, link)
            del self._links[peer]

    async def close(self) -> None:
        for peer, link in list(self._links.items()):
            for sid in link.accepted:
                self._send(link.conn, MediaStop(sid))
            self._drop_all(peer, link)
        self._local.clear()
        self._acceptors.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _offer_everywhere(self) -> None:
        offer = MediaOffer(tuple(s.offer() for s in self._local.values()))
        for link in self._links.values():
            link.reoffered = False
            self._send(link.conn, offer)

    def _send(self, conn: Connection, msg: MediaControl) -> None:
        with contextlib.suppress(TransportError):
            conn.send_control(encode_control(Media(encode_media(msg))))

    def _drop_remote(self, peer: EndpointId, link: _Link, stream_id: int) -> None:
        entry = link.remote.pop(stream_id, None)
        if entry is not None:
            link.conn.set_datagram_handler(stream_id, None)
            stream, acceptor = entry
            stream.close()
            acceptor.release(peer, stream)

    def _drop_all(self, peer: EndpointId, link: _Link) -> None:
        for sid in list(link.remote):
            self._drop_remote(peer, link, sid)

    # -- control messages ---------------------------------------------------------

    def on_control(self, peer: EndpointId, msg: MediaControl) -> None:
        link = self._links.get(peer)
        if link is None:
            return
        if isinstance(msg, MediaOffer):
            self._on_offer(peer, link, msg)
        elif isinstance(msg, MediaAnswer):
            newly = frozenset(msg.accepted) & self._local.keys() - link.accepted
            link.accepted = frozenset(msg.accepted) & self._local.keys()
            if msg.reason:
                log.info("%s refused some of our streams: %s", peer.short(), msg.reason)
            for sid in newly:
                self._local[sid].on_accepted(peer)
        elif isinstance(msg, MediaReport):
            self._on_report(peer, link, msg)
        elif isinstance(msg, MediaStop):
            self._drop_remote(peer, link, msg.stream_id)
        elif isinstance(msg, KeyframeRequest):
            local = self._local.get(msg.stream_id)
            if local is not None and msg.stream_id in link.accepted:
                local.on_keyframe_request(peer)

    def _on_offer(self, peer: EndpointId, link: _Link, offer: MediaOffer) -> None:
        accepted: list[int] = []
        reasons: list[str] = []
        link.offered = {s.stream_id: s for s in offer.streams}
        for sid in list(link.remote):
            if sid not in link.offered:
                self._drop_remote(peer, link, sid)
        for stream in offer.streams:
            reason = self._take(peer, link, stream)
            if reason is None:
                accepted.append(stream.stream_id)
            else:
                reasons.append(reason)
        self._send(link.conn, MediaAnswer(tuple(accepted), "; ".join(reasons)))
        # The peer (re)started media after refusing ours: offer ours once more.
        if self._local and not (self._local.keys() <= link.accepted) and not link.reoffered:
            link.reoffered = True
            self._send(link.conn, MediaOffer(tuple(s.offer() for s in self._local.values())))

    def _take(self, peer: EndpointId, link: _Link, stream: StreamOffer) -> str | None:
        """Receive an offered stream (None), or why not."""
        if stream.stream_id in link.remote:
            return None
        if stream.stream_id in link.declined:
            return f"stream {stream.stream_id}: not wanted now"
        acceptor = self._acceptors.get(stream.kind)
        if acceptor is None:
            return f"stream {stream.stream_id}: {stream.kind} is off here"
        result = acceptor.accept(peer, stream)
        if isinstance(result, str):
            return result
        link.remote[stream.stream_id] = (result, acceptor)
        link.conn.set_datagram_handler(stream.stream_id, _handler(result))
        return None

    def set_wanted(self, peer: EndpointId, stream_id: int, wanted: bool) -> None:
        """Receive (or stop receiving) one of a peer's streams, e.g. video only while it is shown.

        The peer learns it from a fresh answer, so it stops sending what nobody watches."""
        link = self._links.get(peer)
        if link is None:
            return
        if wanted:
            link.declined.discard(stream_id)
            offer = link.offered.get(stream_id)
            if offer is not None:
                self._take(peer, link, offer)
        else:
            link.declined.add(stream_id)
            self._drop_remote(peer, link, stream_id)
        self._send(link.conn, MediaAnswer(tuple(sorted(link.remote))))

    def _on_report(self, peer: EndpointId, link: _Link, report: MediaReport) -> None:
        link.clock.on_report(report, time.monotonic())
        rtt, offset = link.clock.rtt, link.clock.offset
        for sid, ts, t in report.sr:
            entry = link.remote.get(sid)
            if entry is not None:
                entry[0].on_sender_report(ts, t - offset if offset is not None else None, rtt)
        for stream_report in report.streams:
            local = self._local.get(stream_report.stream_id)
            if local is not None:
                local.on_report(peer, stream_report, rtt)

    # -- reports ------------------------------------------------------------------

    def _send_report(self, link: _Link) -> None:
        t, echo, hold = link.clock.stamp(time.monotonic())
        clocks = []
        for sid, local in self._local.items():
            clock = local.sender_clock()
            if clock is not None and sid in link.accepted:
                clocks.append((sid, clock[0], clock[1]))
        streams = tuple(stream.interval_report() for stream, _ in link.remote.values())
        self._send(link.conn, MediaReport(t, echo, hold, tuple(clocks), streams))

    def report_now(self) -> None:
        """Send every link a report at once (a sender clock just jumped, e.g. after unmuting)."""
        for link in list(self._links.values()):
            self._send_report(link)

    def _ensure_reporting(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._report_loop())

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            for link in list(self._links.values()):
                if link.accepted or link.remote:
                    self._send_report(link)


def _handler(stream: RemoteStream) -> DatagramHandler:
    def handle(data: bytes) -> None:
        stream.push(data, time.monotonic())

    return handle
