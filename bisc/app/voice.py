"""A channel's voice call: capture, send to every peer, receive, mix, play.

Threads: the capture side (a device callback or a FrameClock) encodes each
frame once and hands the datagram to the event loop, which fans it out to
every peer that accepted the stream, with a deadline. Datagrams from peers
are pushed into per-peer receivers on the loop; the playout side (the output
device's callback, or a FrameClock for files and "none") pulls one mixed
frame every 20 ms.

Per link: we offer our stream (MediaOffer) and send only once the peer
accepted it (MediaAnswer); we route a peer's datagrams only for the streams
we accepted. Once a second each way a MediaReport carries round-trip timing,
the sender's media clock and the last interval's reception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bisc.app.voice_events import MediaStats, SpeakingChanged
from bisc.errors import BiscError
from bisc.identity import EndpointId
from bisc.media.audio_endpoints import AudioEndpoint, open_capture, open_playout
from bisc.media.mixer import mix
from bisc.media.opus import FRAME_SAMPLES, SAMPLE_RATE, AudioError, Pcm
from bisc.media.sources import AudioSource
from bisc.media.voice_receiver import VoiceReceiver, VoiceStats
from bisc.media.voice_sender import QUALITY_BITRATES, SEND_DEADLINE, VoiceSender
from bisc.net.transport import Connection, DatagramHandler, TransportError
from bisc.proto.control import Media, encode_control
from bisc.proto.media_control import (
    OPUS,
    VOICE_STREAM,
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
from bisc.proto.messages import MediaState

if TYPE_CHECKING:
    from bisc.app.channel import Channel

log = logging.getLogger(__name__)

REPORT_INTERVAL = 1.0
STATS_INTERVAL = 2.0
SPEAKING_POLL = 0.1
MAX_VOLUME = 4.0

_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


@dataclass
class _Link:
    """What we know of one peer's voice."""

    conn: Connection
    clock: ReportClock = field(default_factory=ReportClock)
    accepted_ours: bool = False  # the peer accepted our stream: send to it
    receiver: VoiceReceiver | None = None  # we accepted the peer's stream
    out_report: StreamReport | None = None  # the peer's reception of our stream
    reoffered: bool = False


def refuse_reason(offer: StreamOffer) -> str | None:
    """Why we cannot receive this stream, or None if we can."""
    if offer.kind != "audio":
        return f"stream {offer.stream_id}: {offer.kind} is not supported"
    if offer.stream_id != VOICE_STREAM:
        return f"stream {offer.stream_id}: audio is stream {VOICE_STREAM}"
    if (offer.codec, offer.clock_rate, offer.channels, offer.frame_ms) != (OPUS, SAMPLE_RATE, 1, 20):
        return f"stream {offer.stream_id}: only Opus 48 kHz mono 20 ms frames are supported"
    return None


class VoiceCall:
    """Started by Channel.start_voice(); stop with Channel.stop_voice()."""

    def __init__(
        self,
        channel: Channel,
        *,
        audio_in: str | AudioSource = "mic",
        audio_out: str = "speaker",
        input_device: str | int | None = None,
        output_device: str | int | None = None,
        quality: str = "medium",
    ) -> None:
        if quality not in QUALITY_BITRATES:
            raise AudioError(f"unknown audio quality {quality!r}: use {', '.join(QUALITY_BITRATES)}")
        self.channel = channel
        self._loop = asyncio.get_running_loop()
        self._audio_in = audio_in
        self._audio_out = audio_out
        self._input_device = input_device
        self._output_device = output_device
        self.sender = VoiceSender(bitrate=QUALITY_BITRATES[quality])
        self._links: dict[EndpointId, _Link] = {}
        # Read by the playout thread: replaced whole, never mutated in place.
        self._mix: tuple[tuple[EndpointId, VoiceReceiver], ...] = ()
        self._gains: dict[EndpointId, float] = {}
        self._capture: AudioEndpoint | None = None
        self._playout: AudioEndpoint | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._speaking: dict[EndpointId, bool] = {}
        self._stopped = False
        self.sent_datagrams = 0
        self.stale_frames = 0  # reached the loop after their deadline
        self.playout_errors = 0

    # -- lifecycle -------------------------------------------------------------

    @property
    def sending(self) -> bool:
        return self._capture is not None

    @property
    def input_description(self) -> str:
        return self._capture.description if self._capture else "none"

    @property
    def output_description(self) -> str:
        return self._playout.description if self._playout else "none"

    async def start(self) -> None:
        """Open the output, then the input (AudioError if either cannot), then offer on every link."""
        self._playout = open_playout(self._audio_out, self._produce, self._output_device)
        try:
            self._capture = open_capture(self._audio_in, self._on_frame, self._input_device)
        except BaseException:
            self._playout.close()
            raise
        for conn in list(self.channel._connections.values()):
            self.attach(conn)
        self._tasks = [
            self._loop.create_task(self._report_loop()),
            self._loop.create_task(self._stats_loop()),
            self._loop.create_task(self._speaking_loop()),
        ]

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Close the devices off the loop: joining a device thread can take a period or two.
        for endpoint in (self._capture, self._playout):
            if endpoint is not None:
                await asyncio.to_thread(endpoint.close)
        self._capture = None
        for peer, link in list(self._links.items()):
            if link.accepted_ours:
                self._send_control(link.conn, MediaStop(VOICE_STREAM))
            self._drop_receiver(peer, link)
        self._links.clear()

    async def set_input(self, audio_in: str | AudioSource, device: str | int | None = None) -> None:
        """Switch what we send: start or stop the microphone, or change source ("none" stops).

        AudioError if the new input cannot be opened (the old one keeps running then)."""
        if self._stopped:
            raise AudioError("the voice call has stopped")
        new = open_capture(audio_in, self._on_frame, device if device is not None else self._input_device)
        old, self._capture = self._capture, new
        self._audio_in = audio_in
        if old is not None:
            await asyncio.to_thread(old.close)
        for link in self._links.values():
            if new is None and link.accepted_ours:
                link.accepted_ours = False
                self._send_control(link.conn, MediaStop(VOICE_STREAM))
            elif new is not None and not link.accepted_ours:
                link.reoffered = False
                self._send_offer(link)

    # -- links -----------------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        """A new link: tell the peer what we send (an empty offer asks it to offer again)."""
        if self._stopped:
            return
        old = self._links.get(conn.remote_id)
        if old is not None and old.conn is not conn:
            self._drop_receiver(conn.remote_id, old)
        link = _Link(conn)
        self._links[conn.remote_id] = link
        self._send_offer(link)
        self._send_report(link)

    def detach(self, peer: EndpointId, conn: Connection) -> None:
        link = self._links.get(peer)
        if link is not None and link.conn is conn:
            self._drop_receiver(peer, link)
            del self._links[peer]

    def _send_offer(self, link: _Link) -> None:
        streams = (self.sender.offer(),) if self.sending else ()
        self._send_control(link.conn, MediaOffer(streams))

    def _send_control(self, conn: Connection, msg: MediaControl) -> None:
        with contextlib.suppress(TransportError):
            conn.send_control(encode_control(Media(encode_media(msg))))

    def _drop_receiver(self, peer: EndpointId, link: _Link) -> None:
        if link.receiver is not None:
            link.conn.set_datagram_handler(VOICE_STREAM, None)
            link.receiver = None
            self._mix = tuple((p, r) for p, r in self._mix if p != peer)

    # -- control messages ------------------------------------------------------

    def on_control(self, peer: EndpointId, msg: MediaControl) -> None:
        link = self._links.get(peer)
        if link is None:
            return
        now = time.monotonic()
        if isinstance(msg, MediaOffer):
            self._on_offer(peer, link, msg)
        elif isinstance(msg, MediaAnswer):
            link.accepted_ours = VOICE_STREAM in msg.accepted and self.sending
            if not link.accepted_ours and msg.reason:
                log.info("%s does not take our audio: %s", peer.short(), msg.reason)
        elif isinstance(msg, MediaReport):
            self._on_report(link, msg, now)
        elif isinstance(msg, MediaStop) and msg.stream_id == VOICE_STREAM:
            self._drop_receiver(peer, link)

    def _on_offer(self, peer: EndpointId, link: _Link, offer: MediaOffer) -> None:
        accepted: list[int] = []
        reasons: list[str] = []
        for stream in offer.streams:
            reason = refuse_reason(stream)
            if reason is None:
                accepted.append(stream.stream_id)
            else:
                reasons.append(reason)
        if VOICE_STREAM in accepted and link.receiver is None:
            receiver = VoiceReceiver(stream_id=VOICE_STREAM)
            link.receiver = receiver
            link.conn.set_datagram_handler(VOICE_STREAM, self._datagram_handler(receiver))
            self._mix = (*self._mix, (peer, receiver))
        elif VOICE_STREAM not in accepted:
            self._drop_receiver(peer, link)
        self._send_control(link.conn, MediaAnswer(tuple(accepted), "; ".join(reasons)))
        # The peer (re)started voice after our offer was refused: offer once more.
        if self.sending and not link.accepted_ours and not link.reoffered:
            link.reoffered = True
            self._send_offer(link)

    def _datagram_handler(self, receiver: VoiceReceiver) -> DatagramHandler:
        def handle(data: bytes) -> None:
            receiver.push(data, time.monotonic())

        return handle

    def _on_report(self, link: _Link, report: MediaReport, now: float) -> None:
        link.clock.on_report(report, now)
        receiver = link.receiver
        if receiver is not None:
            receiver.rtt = link.clock.rtt
            offset = link.clock.offset
            if report.sr is not None and report.sr[0] == VOICE_STREAM and offset is not None:
                receiver.set_sender_clock(report.sr[1], report.sr[2] - offset)
        for stream in report.streams:
            if stream.stream_id == VOICE_STREAM:
                link.out_report = stream

    # -- reports and stats -------------------------------------------------------

    def _send_report(self, link: _Link) -> None:
        t, echo, hold = link.clock.stamp(time.monotonic())
        clock = self.sender.clock if self.sending and not self.sender.muted else None
        sr = (VOICE_STREAM, clock[0], clock[1]) if clock is not None else None
        streams: tuple[StreamReport, ...] = ()
        receiver = link.receiver
        if receiver is not None:
            interval = receiver.reception.interval()
            receiver.loss_pct = interval.loss * 100.0
            jb = receiver.jitter.stats()
            p50, _ = receiver.e2e_quantiles()
            streams = (
                StreamReport(
                    VOICE_STREAM,
                    interval.expected,
                    interval.received,
                    receiver.reception.jitter * 1000.0,
                    float(jb["buffer_delay_ms"]),
                    p50 * 1000.0 if p50 >= 0 else -1.0,
                ),
            )
        self._send_control(link.conn, MediaReport(t, echo, hold, sr, streams))

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            for link in list(self._links.values()):
                self._send_report(link)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            for peer, stats in self.stats().items():
                link = self._links.get(peer)
                out = link.out_report if link is not None else None
                member = self.channel.members.get(peer)
                self.channel._emit(
                    MediaStats(
                        peer,
                        member.name if member else peer.short(),
                        stats,
                        round(out.loss * 100.0, 2) if out is not None else -1.0,
                    )
                )

    async def _speaking_loop(self) -> None:
        me = self.channel.me
        while True:
            await asyncio.sleep(SPEAKING_POLL)
            now = {me: self.sender.speaking} | {p: r.speaking.speaking for p, r in self._mix}
            for peer, speaking in now.items():
                if self._speaking.get(peer, False) != speaking:
                    self.channel._emit(SpeakingChanged(peer, speaking))
            self._speaking = now

    def stats(self) -> dict[EndpointId, VoiceStats]:
        """Per peer we receive voice from: loss, jitter, delays, bitrate, RTT."""
        now = time.monotonic()
        return {peer: receiver.stats(now) for peer, receiver in self._mix}

    def receivers(self) -> dict[EndpointId, VoiceReceiver]:
        return dict(self._mix)

    # -- user controls -----------------------------------------------------------

    @property
    def muted(self) -> bool:
        return self.sender.muted

    def mute(self, muted: bool = True) -> None:
        """Stop (or resume) sending audio, and tell the channel."""
        if muted == self.sender.muted:
            return
        self.sender.muted = muted
        with contextlib.suppress(BiscError):
            self.channel._broadcast(MediaState(audio_muted=muted))
        if not muted:  # the media clock moved on: give receivers the new mapping at once
            self._loop.call_later(0.05, self._report_all)

    def _report_all(self) -> None:
        for link in list(self._links.values()):
            self._send_report(link)

    def set_volume(self, peer: EndpointId, gain: float) -> None:
        """Playback gain for one peer: 0 silences, 1 is as sent, up to MAX_VOLUME."""
        if not 0.0 <= gain <= MAX_VOLUME:
            raise AudioError(f"volume must be within 0..{MAX_VOLUME}, got {gain}")
        self._gains[peer] = gain

    # -- media threads -----------------------------------------------------------

    def _on_frame(self, pcm: Pcm, capture_time: float) -> None:
        """Capture thread: encode once, hand the datagram to the loop."""
        datagram = self.sender.packetize(pcm, capture_time)
        if datagram is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: we are shutting down
            self._loop.call_soon_threadsafe(self._send, datagram, capture_time + SEND_DEADLINE)

    def _send(self, datagram: bytes, deadline: float) -> None:
        if time.monotonic() > deadline:
            self.stale_frames += 1
            return
        for link in self._links.values():
            if link.accepted_ours and link.conn.send_datagram(datagram, deadline):
                self.sent_datagrams += 1

    def _produce(self, now: float) -> Pcm:
        """Playout thread: the next 20 ms of everyone, mixed."""
        frames: list[Pcm] = []
        gains: list[float] = []
        for peer, receiver in self._mix:
            try:
                pcm = receiver.render(now)
            except Exception:  # one peer's trouble must not silence the others
                self.playout_errors += 1
                continue
            if pcm is not None:
                frames.append(pcm)
                gains.append(self._gains.get(peer, 1.0))
        if not frames:
            return _SILENCE
        return mix(frames, gains)
