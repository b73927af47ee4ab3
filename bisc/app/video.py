"""A channel's video: camera and screen streams out, every peer's streams in.

Each local stream (camera = stream 1, screen = stream 2) has a capture
thread that reads the source at its frame rate, encodes once and fragments;
the datagrams go out through the MediaSession to every peer that accepted
the stream. The receivers' bandwidth estimates (in their reports) move the
sender along the resolution ladder; the lowest estimate over the peers wins,
since one encoding serves them all. Peers' streams are decoded on their own
threads; `frames()` hands out the newest picture of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bisc.app.video_events import VideoStatsEvent
from bisc.errors import BiscError
from bisc.identity import EndpointId
from bisc.media.video_codec import CLOCK_RATE, VideoCodec, available_codecs
from bisc.media.video_ladder import AUDIO_RESERVE, quality_max_height
from bisc.media.video_receiver import VideoReceiver, VideoStats
from bisc.media.video_sender import SEND_DEADLINE, VideoSender
from bisc.media.video_types import DecodedFrame, VideoFrameIn, VideoSourceError
from bisc.net.transport import MIN_DATAGRAM_SIZE
from bisc.proto.media_control import CAMERA_STREAM, SCREEN_STREAM, StreamOffer, StreamReport

if TYPE_CHECKING:
    from bisc.app.channel import Channel

log = logging.getLogger(__name__)

STATS_INTERVAL = 2.0
LOSSY = 0.01  # a peer losing more than this of our packets gets keyframes twice
MAX_CATCH_UP = 3  # frames captured back to back after a stall; beyond that the clock skips


@runtime_checkable
class VideoSource(Protocol):
    def read_frame(self) -> VideoFrameIn: ...

    def close(self) -> None: ...


# A source, or a function making one on the capture thread (screen capture must be read on the
# thread that opened it).
SourceSpec = VideoSource | Callable[[], VideoSource]


def refuse_reason(offer: StreamOffer) -> str | None:
    if offer.kind != "video":
        return f"stream {offer.stream_id}: {offer.kind} is not video"
    if offer.stream_id not in (CAMERA_STREAM, SCREEN_STREAM):
        return (
            f"stream {offer.stream_id}: video is stream {CAMERA_STREAM} (camera) or {SCREEN_STREAM} (screen)"
        )
    if offer.codec not in available_codecs() or offer.clock_rate != CLOCK_RATE:
        return f"stream {offer.stream_id}: {offer.codec} at {offer.clock_rate} Hz is not supported"
    return None


def codec_for(preferred: VideoCodec, mine: Collection[str], members: Iterable[Collection[str]]) -> VideoCodec:
    """The codec to send: the preferred one when this node and every member can take it (their
    capabilities list "video/<codec>"), else VP8, which every bisc has. One encoding serves all."""
    want = f"video/{preferred}"
    if preferred != "vp8" and want in mine and all(want in caps for caps in members):
        return preferred
    return "vp8"


class _LocalVideo:
    """One stream we send: its source, capture thread, encoder, and what the peers report."""

    def __init__(
        self,
        call: VideoCall,
        stream_id: int,
        source: SourceSpec,
        sender: VideoSender,
        name: str,
        preferred: VideoCodec,
    ):
        self.call = call
        self.stream_id = stream_id
        self.preferred: VideoCodec = preferred  # what the user asked for; sender.codec is what all can take
        self._spec = source
        self.source: VideoSource | None = None
        self.sender = sender
        self.name = name
        self.estimates: dict[EndpointId, int] = {}
        self.losses: dict[EndpointId, float] = {}
        # Refreshed by the loop: the capture thread must not walk the links.
        self.datagram_size = MIN_DATAGRAM_SIZE
        self.stale = 0
        self.errors = 0
        # The newest captured frame for a self-view, with a version that grows with each one: one
        # reference swapped whole per frame (no copy), read by the UI on its own schedule.
        self.latest: tuple[int, VideoFrameIn | None] = (0, None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bisc-capture-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the capture thread (it closes the source itself: some must close where they opened)."""
        self._stop.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout=2.0)

    # LocalStream
    def offer(self) -> StreamOffer:
        return self.sender.offer()

    def sender_clock(self) -> tuple[int, float] | None:
        return self.sender.clock

    def on_accepted(self, peer: EndpointId) -> None:
        # The new viewer's link may take smaller datagrams than the others: refit before its keyframe.
        self.datagram_size = self.call.session.max_datagram_size()
        self.sender.request_keyframe()  # a new viewer needs a picture to start from

    def on_keyframe_request(self, peer: EndpointId) -> None:
        self.sender.request_keyframe()

    def on_report(self, peer: EndpointId, report: StreamReport, rtt: float | None) -> None:
        if report.estimate_bps > 0:
            self.estimates[peer] = report.estimate_bps
        self.losses[peer] = report.loss
        self.sender.protect_keyframes = max(self.losses.values()) > LOSSY
        taking = self.call.session.peers_taking(self.stream_id)
        known = [self.estimates[p] for p in taking if p in self.estimates]
        if known:
            voice = self.call.channel.voice
            # Audio first: at least AUDIO_RESERVE, more while voice packets carry copies (RED).
            reserve = max(AUDIO_RESERVE, voice.sender.wire_bps) if voice is not None and voice.sending else 0
            self.sender.set_estimate(min(known), time.monotonic(), reserve)
        self.datagram_size = self.call.session.max_datagram_size()

    # capture thread
    def _run(self) -> None:
        spec = self._spec
        try:
            source = spec if isinstance(spec, VideoSource) else spec()
        except Exception as exc:
            log.warning("video %s: cannot open the source: %s", self.name, exc)
            self.errors += 1
            return
        self.source = source
        try:
            self._capture(source)
        finally:
            with contextlib.suppress(Exception):
                source.close()

    def _capture(self, source: VideoSource) -> None:
        next_at = time.monotonic()
        loop = self.call._loop
        while not self._stop.is_set():
            period = 1.0 / max(1.0, self.sender.target.fps)
            now = time.monotonic()
            if now < next_at:
                if self._stop.wait(next_at - now):
                    return
                now = time.monotonic()
            if now - next_at > MAX_CATCH_UP * period:
                next_at = now
            next_at += period
            try:
                frame = source.read_frame()
                self.latest = (self.latest[0] + 1, frame)
                datagrams = self.sender.packetize(frame, now, self.datagram_size)
            except Exception as exc:  # a source or encoder failure must not kill the thread silently
                self.errors += 1
                if self.errors <= 3:
                    log.warning("video %s: %s", self.name, exc)
                if isinstance(exc, VideoSourceError) and self.errors > 30:
                    return
                continue
            if datagrams:
                with contextlib.suppress(RuntimeError):  # the loop is gone: shutting down
                    # Stale video is dropped 200 ms after capture, but a keyframe's time runs from when
                    # it is ready: every later picture needs it, and a slow encode (a big screen on a
                    # busy machine) must still get one out. (Giving keyframes a whole second instead
                    # queued deltas behind late ones: 720p glass-to-glass p50 74 -> 128 ms.)
                    ready = time.monotonic() if self.sender.last_had_keyframe else now
                    loop.call_soon_threadsafe(self._send, datagrams, ready + SEND_DEADLINE)

    def _send(self, datagrams: list[bytes], deadline: float) -> None:
        if time.monotonic() > deadline:
            self.stale += 1
            return
        self.call.session.send(self.stream_id, datagrams, deadline)


class VideoCall:
    """Started by Channel.start_video(); stop with Channel.stop_video()."""

    def __init__(self, channel: Channel, *, read_stamps: bool = False) -> None:
        self.channel = channel
        self.session = channel.media
        self.read_stamps = read_stamps
        self._loop = asyncio.get_running_loop()
        self._local: dict[int, _LocalVideo] = {}
        # Read by renderers on any thread: replaced whole, never mutated in place.
        self._remote: dict[tuple[EndpointId, int], VideoReceiver] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        self.session.set_acceptor("video", self)
        self._task = self._loop.create_task(self._stats_loop())

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sid in list(self._local):
            await self._stop_stream(sid)
        self.session.set_acceptor("video", None)

    # -- sending ------------------------------------------------------------------

    async def start_stream(
        self,
        stream_id: int,
        source: SourceSpec,
        *,
        size: tuple[int, int],
        fps: float = 30.0,
        codec: VideoCodec = "vp8",
        quality: str = "auto",
        name: str = "",
    ) -> None:
        """Send `source` as stream `stream_id` (CAMERA_STREAM or SCREEN_STREAM), replacing what it sent.

        quality: "auto" (as far as the network allows), or at most "low" 360p, "standard" 720p,
        "high" 1080p."""
        if stream_id not in (CAMERA_STREAM, SCREEN_STREAM):
            raise BiscError(f"video streams are {CAMERA_STREAM} (camera) and {SCREEN_STREAM} (screen)")
        try:
            max_height = quality_max_height(quality)
        except ValueError as exc:
            raise BiscError(str(exc)) from None
        await self._stop_stream(stream_id)
        sender = VideoSender(
            stream_id,
            codec=self._codec_for(codec),
            source_size=size,
            fps=fps,
            screen=stream_id == SCREEN_STREAM,
            max_height=max_height,
        )
        local = _LocalVideo(self, stream_id, source, sender, name or f"stream {stream_id}", codec)
        local.datagram_size = self.session.max_datagram_size()
        self._local[stream_id] = local
        local.start()
        self.session.add_local(local)
        self._announce()

    async def stop_stream(self, stream_id: int) -> None:
        await self._stop_stream(stream_id)
        self._announce()

    async def _stop_stream(self, stream_id: int) -> None:
        local = self._local.pop(stream_id, None)
        if local is not None:
            self.session.remove_local(stream_id)
            await asyncio.to_thread(local.close)

    def sending(self, stream_id: int) -> bool:
        return stream_id in self._local

    def local_frames(self) -> dict[int, tuple[int, VideoFrameIn | None]]:
        """The newest captured frame of each stream we send (a self-view), with its version."""
        return {sid: local.latest for sid, local in self._local.items()}

    def sender(self, stream_id: int) -> VideoSender | None:
        local = self._local.get(stream_id)
        return local.sender if local else None

    def _announce(self) -> None:
        self.channel.announce_media_state()

    def _codec_for(self, preferred: VideoCodec) -> VideoCodec:
        members = [m.info.capabilities for m in self.channel.members.values()]
        return codec_for(preferred, self.channel.node.capabilities, members)

    def renegotiate(self) -> None:
        """Follow the members: a stream sent in H.264 falls back to VP8 when a member who cannot take
        H.264 joins, and goes back when that member leaves. Its peers get a fresh offer (their decoders
        start over at the keyframe that follows)."""
        for sid, local in list(self._local.items()):
            codec = self._codec_for(local.preferred)
            if codec != local.sender.codec:
                log.info("video %s: sending %s now (what every member can take)", local.name, codec)
                local.sender.set_codec(codec)
                self.session.remove_local(sid)
                self.session.add_local(local)

    # -- receiving (StreamAcceptor) --------------------------------------------------

    def accept(self, peer: EndpointId, offer: StreamOffer) -> VideoReceiver | str:
        reason = refuse_reason(offer)
        if reason is not None:
            return reason
        sid = offer.stream_id
        codec: VideoCodec = "h264" if offer.codec == "h264" else "vp8"
        receiver = VideoReceiver(
            sid,
            codec,
            request_keyframe=_requester(self.session.request_keyframe, peer, sid),
            read_stamps=self.read_stamps,
        )
        self._remote = {**self._remote, (peer, sid): receiver}
        return receiver

    def release(self, peer: EndpointId, stream: object) -> None:
        self._remote = {key: r for key, r in self._remote.items() if r is not stream}

    def subscribe(self, peer: EndpointId, stream_id: int, on: bool = True) -> None:
        """Receive a peer's camera or screen only while it is shown: off stops the peer sending it to us
        (no bandwidth, no decoding); on asks for it again (starting at a fresh keyframe)."""
        self.session.set_wanted(peer, stream_id, on)

    def frames(self) -> dict[tuple[EndpointId, int], tuple[int, DecodedFrame | None]]:
        """The newest picture of every peer's stream, with a version that grows with each one."""
        return {key: receiver.latest() for key, receiver in self._remote.items()}

    def receivers(self) -> dict[tuple[EndpointId, int], VideoReceiver]:
        return dict(self._remote)

    def stats(self) -> dict[tuple[EndpointId, int], VideoStats]:
        now = time.monotonic()
        return {key: receiver.stats(now) for key, receiver in self._remote.items()}

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            self.renegotiate()
            for (peer, sid), stats in self.stats().items():
                member = self.channel.members.get(peer)
                self.channel._emit(VideoStatsEvent(peer, member.name if member else peer.short(), sid, stats))


def _requester(request: Callable[[EndpointId, int], None], peer: EndpointId, sid: int) -> Callable[[], None]:
    return lambda: request(peer, sid)
