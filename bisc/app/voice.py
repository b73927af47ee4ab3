"""A channel's voice call: capture, send to every peer, receive, mix, play.

Threads: the capture side (a device callback or a FrameClock) encodes each
frame once and hands the datagram to the event loop, which fans it out
through the channel's MediaSession to every peer that accepted the stream,
with a deadline. The session routes each peer's voice datagrams to a
VoiceReceiver (accepted here); the playout side (the output device's
callback, or a FrameClock for files and "none") pulls one mixed frame every
20 ms. Negotiation and reports are the session's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from bisc.app.voice_events import MediaStats, SpeakingChanged
from bisc.codec.audio_red import OPUS_RED, RedundancyPolicy
from bisc.identity import EndpointId
from bisc.media.audio_endpoints import AudioEndpoint, open_capture, open_playout
from bisc.media.mixer import mix
from bisc.media.opus import FRAME_SAMPLES, SAMPLE_RATE, AudioError, Pcm
from bisc.media.sources import AudioSource
from bisc.media.voice_receiver import VoiceReceiver, VoiceStats
from bisc.media.voice_sender import QUALITY_BITRATES, SEND_DEADLINE, VoiceSender
from bisc.proto.media_control import OPUS, VOICE_STREAM, StreamOffer, StreamReport

if TYPE_CHECKING:
    from bisc.app.channel import Channel

log = logging.getLogger(__name__)

STATS_INTERVAL = 2.0
SPEAKING_POLL = 0.1
MAX_VOLUME = 4.0

_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


def refuse_reason(offer: StreamOffer) -> str | None:
    """Why we cannot receive this stream, or None if we can."""
    if offer.kind != "audio":
        return f"stream {offer.stream_id}: {offer.kind} is not supported"
    if offer.stream_id != VOICE_STREAM:
        return f"stream {offer.stream_id}: audio is stream {VOICE_STREAM}"
    format_ = (offer.clock_rate, offer.channels, offer.frame_ms)
    if offer.codec not in (OPUS, OPUS_RED) or format_ != (SAMPLE_RATE, 1, 20):
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
        dtx: bool = False,
    ) -> None:
        if quality not in QUALITY_BITRATES:
            raise AudioError(f"unknown audio quality {quality!r}: use {', '.join(QUALITY_BITRATES)}")
        self.channel = channel
        self.session = channel.media
        self._loop = asyncio.get_running_loop()
        self._audio_in = audio_in
        self._audio_out = audio_out
        self._input_device = input_device
        self._output_device = output_device
        self.sender = VoiceSender(bitrate=QUALITY_BITRATES[quality], dtx=dtx)
        self._redundancy = RedundancyPolicy()
        self.stream_id = VOICE_STREAM
        # Read by the playout thread: replaced whole, never mutated in place.
        self._mix: tuple[tuple[EndpointId, VoiceReceiver], ...] = ()
        self._gains: dict[EndpointId, float] = {}
        self._out_reports: dict[EndpointId, StreamReport] = {}
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
        self.session.set_acceptor("audio", self)
        if self._capture is not None:
            self.session.add_local(self)
        self._tasks = [
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
        self._announce_speaking({})  # nobody is heard any more
        self.session.remove_local(VOICE_STREAM)
        self.session.set_acceptor("audio", None)
        # Close the devices off the loop: joining a device thread can take a period or two.
        for endpoint in (self._capture, self._playout):
            if endpoint is not None:
                await asyncio.to_thread(endpoint.close)
        self._capture = None

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
        if new is None and old is not None:
            self.session.remove_local(VOICE_STREAM)
        elif new is not None and old is None:
            self.session.add_local(self)

    # -- what the session asks of the stream we send (LocalStream) ----------------

    def offer(self) -> StreamOffer:
        return self.sender.offer()

    def sender_clock(self) -> tuple[int, float] | None:
        return None if self.sender.muted else self.sender.clock

    def on_accepted(self, peer: EndpointId) -> None:
        pass

    def on_keyframe_request(self, peer: EndpointId) -> None:
        pass  # every Opus frame stands on its own

    def on_report(self, peer: EndpointId, report: StreamReport, rtt: float | None) -> None:
        self._out_reports[peer] = report
        # One encoding for everyone: copies of earlier frames while any receiver loses packets.
        worst = max(r.loss for r in self._out_reports.values())
        self.sender.redundancy = self._redundancy.on_loss(worst, time.monotonic())

    # -- peers' streams we take (StreamAcceptor) ----------------------------------

    def accept(self, peer: EndpointId, offer: StreamOffer) -> VoiceReceiver | str:
        reason = refuse_reason(offer)
        if reason is not None:
            return reason
        receiver = VoiceReceiver(stream_id=offer.stream_id, red=offer.codec == OPUS_RED)
        self._mix = (*((p, r) for p, r in self._mix if p != peer), (peer, receiver))
        return receiver

    def release(self, peer: EndpointId, stream: object) -> None:
        self._mix = tuple((p, r) for p, r in self._mix if r is not stream)
        self._out_reports.pop(peer, None)

    # -- stats -------------------------------------------------------------------

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            for peer, stats in self.stats().items():
                out = self._out_reports.get(peer)
                member = self.channel.members.get(peer)
                self.channel._emit(
                    MediaStats(
                        peer,
                        member.name if member else peer.short(),
                        stats,
                        round(out.loss * 100.0, 2) if out is not None else -1.0,
                        self.sender.redundancy,
                    )
                )

    async def _speaking_loop(self) -> None:
        me = self.channel.me
        while True:
            await asyncio.sleep(SPEAKING_POLL)
            now = {me: self.sender.speaking} | {p: r.speaking.speaking for p, r in self._mix}
            self._announce_speaking(now)

    def _announce_speaking(self, now: dict[EndpointId, bool]) -> None:
        """SpeakingChanged for every change, including peers whose stream went (mic off, left)."""
        for peer, speaking in now.items():
            if self._speaking.get(peer, False) != speaking:
                self.channel._emit(SpeakingChanged(peer, speaking))
        for peer, was in self._speaking.items():
            if was and peer not in now:
                self.channel._emit(SpeakingChanged(peer, False))
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
        self.channel.announce_media_state()
        if not muted:  # the media clock moved on: give receivers the new mapping at once
            self._loop.call_later(0.05, self.session.report_now)

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
        if not self._stopped:
            self.sent_datagrams += self.session.send(VOICE_STREAM, (datagram,), deadline)

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
