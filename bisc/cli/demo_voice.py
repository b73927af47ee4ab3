"""The voice part of `bisc demo`: once the mesh has formed every node joins the call with its own
tone (300 + 150*i Hz) and writes what it plays to a WAV file in the demo's directory, while the chat
and file steps run; every node must receive and play the other N-1 streams and have their tones in
its output."""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bisc.app.channel import Channel
from bisc.app.voice import VoiceCall
from bisc.cli.demo_common import LEAVE_RESERVE, POLL, live, mean, num, quantiles, rnd, steady
from bisc.cli.output import table
from bisc.errors import BiscError
from bisc.identity import EndpointId

VOICE_SECONDS = 5.0  # how long the call runs at least (it starts once the mesh has formed)
VOICE_WARMUP = 1.0  # not sampled: the jitter buffers settle and the clocks get mapped
STEADY_SKIP = 50  # end-to-end samples (frames) left out at the start of each stream
SAMPLE_EVERY = 0.25
TONE_SHARE = 0.2  # a peer's tone counts as heard at this share of the loudest expected tone's level
TONE_FLOOR = 300.0  # ... and at least this RMS (full scale 32767; a tone is sent at ~6950)


def tone_hz(i: int) -> float:
    """The tone peer-i sends in the demo."""
    return 300.0 + 150.0 * i


@dataclass
class _LinkSamples:
    jitter_ms: list[float] = field(default_factory=list)
    buffer_ms: list[float] = field(default_factory=list)
    loss_pct: list[float] = field(default_factory=list)
    first: tuple[float, int] | None = None  # (time, bytes received) at the first sample


@dataclass
class VoiceLink:
    """How one node received one peer's voice."""

    peer: str
    frames: int
    loss_pct: float | None
    jitter_ms: float | None
    buffer_ms: float | None
    e2e: list[float]  # seconds, steady part
    bitrate_kbps: float | None
    concealed: int

    def to_json(self) -> dict[str, Any]:
        p50, p95 = quantiles(self.e2e)
        return {
            "frames": self.frames,
            "loss_pct": rnd(self.loss_pct, 2),
            "jitter_ms": rnd(self.jitter_ms),
            "buffer_ms": rnd(self.buffer_ms),
            "e2e_p50_ms": rnd(None if p50 is None else p50 * 1000),
            "e2e_p95_ms": rnd(None if p95 is None else p95 * 1000),
            "e2e_frames": len(self.e2e),
            "bitrate_kbps": rnd(self.bitrate_kbps),
            "concealed": self.concealed,
        }


@dataclass
class NodeVoice:
    """One node's side of the call."""

    name: str
    tone_hz: float
    links: dict[str, VoiceLink] = field(default_factory=dict)
    tones_heard: list[str] = field(default_factory=list)  # peers whose tone is in the node's output
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        links = list(self.links.values())
        e2e = [s for link in links for s in link.e2e]
        p50, p95 = quantiles(e2e)
        bitrates = [link.bitrate_kbps for link in links if link.bitrate_kbps is not None]
        return {
            "sends_tone_hz": self.tone_hz,
            "streams": sum(1 for link in links if link.frames > 0),
            "frames": sum(link.frames for link in links),
            "loss_pct": rnd(mean([link.loss_pct for link in links if link.loss_pct is not None]), 2),
            "jitter_ms": rnd(mean([link.jitter_ms for link in links if link.jitter_ms is not None])),
            "buffer_ms": rnd(mean([link.buffer_ms for link in links if link.buffer_ms is not None])),
            "e2e_p50_ms": rnd(None if p50 is None else p50 * 1000),
            "e2e_p95_ms": rnd(None if p95 is None else p95 * 1000),
            "bitrate_kbps": rnd(mean(bitrates)),  # per stream
            "concealed": sum(link.concealed for link in links),
            "tones_heard": self.tones_heard,
            "error": self.error,
            "from": {link.peer: link.to_json() for link in links},
        }


class DemoVoice:
    """Every node sends its own tone and records what it hears to a WAV file in the demo's directory."""

    def __init__(self, channels: list[Channel], root: Path) -> None:
        self.channels = channels
        self.root = root
        self.names = {c.me: f"peer-{i}" for i, c in enumerate(channels)}
        self.nodes = [NodeVoice(f"peer-{i}", tone_hz(i)) for i in range(len(channels))]
        self.calls: list[VoiceCall | None] = [None] * len(channels)
        self._samples: list[dict[EndpointId, _LinkSamples]] = [{} for _ in channels]
        self._sampler: asyncio.Task[None] | None = None
        self.started = 0.0
        self.seconds = 0.0

    def _wav(self, i: int) -> Path:
        return self.root / f"voice-peer-{i}.wav"

    async def start(self) -> None:
        self.started = time.monotonic()
        for i, channel in enumerate(self.channels):
            try:
                self.calls[i] = await channel.start_voice(f"tone:{tone_hz(i):g}", str(self._wav(i)))
            except BiscError as exc:
                self.nodes[i].error = f"cannot start voice: {exc}"
        self._sampler = asyncio.ensure_future(self._sample())

    def heard(self, i: int) -> int:
        """How many peers' streams node i is receiving."""
        call = self.calls[i]
        if call is None:
            return 0
        return sum(1 for r in call.receivers().values() if r.reception.received > 0)

    async def settle(self, deadline: float, quiet: bool) -> None:
        """Let the call run VOICE_SECONDS in all (and until everyone hears everyone, within the limit)."""
        others = len(self.channels) - 1
        until = min(self.started + VOICE_SECONDS, deadline - LEAVE_RESERVE)
        while time.monotonic() < deadline - LEAVE_RESERVE:
            everyone = all(self.heard(i) == others for i in range(len(self.channels)))
            hopeless = any(node.error is not None for node in self.nodes)  # a call did not start
            if (everyone or hopeless) and time.monotonic() >= until:
                break
            if not quiet:
                live("voice: " + " ".join(f"{self.heard(i)}/{others}" for i in range(len(self.channels))))
            await asyncio.sleep(POLL)

    async def _sample(self) -> None:
        await asyncio.sleep(VOICE_WARMUP)
        while True:
            now = time.monotonic()
            for call, samples in zip(self.calls, self._samples, strict=True):
                if call is None:
                    continue
                receivers = call.receivers()
                for peer, stats in call.stats().items():
                    link = samples.setdefault(peer, _LinkSamples())
                    if stats.packets == 0:
                        continue
                    if link.first is None and peer in receivers:
                        link.first = (now, receivers[peer].reception.bytes)
                    link.jitter_ms.append(stats.jitter_ms)
                    link.buffer_ms.append(stats.buffer_ms)
                    link.loss_pct.append(stats.loss_pct)
            await asyncio.sleep(SAMPLE_EVERY)

    async def stop(self) -> None:
        """Take the figures, stop every call, then look for the tones in what each node played."""
        now = time.monotonic()
        self.seconds = now - self.started
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        for node, call, samples in zip(self.nodes, self.calls, self._samples, strict=True):
            if call is None:
                continue
            receivers = call.receivers()
            for peer, stats in call.stats().items():
                link = samples.get(peer, _LinkSamples())
                receiver = receivers.get(peer)
                bitrate = None
                if receiver is not None and link.first is not None and now > link.first[0]:
                    bitrate = (receiver.reception.bytes - link.first[1]) * 8 / (now - link.first[0]) / 1000
                name = self.names.get(peer, peer.short())
                node.links[name] = VoiceLink(
                    peer=name,
                    frames=stats.packets,
                    loss_pct=mean(link.loss_pct),
                    jitter_ms=mean(link.jitter_ms),
                    buffer_ms=mean(link.buffer_ms),
                    e2e=steady(receiver.e2e_samples(), STEADY_SKIP) if receiver is not None else [],
                    bitrate_kbps=bitrate,
                    concealed=stats.concealed,
                )
        for channel in self.channels:
            with contextlib.suppress(BiscError):
                await channel.stop_voice()
        for i, node in enumerate(self.nodes):
            if self.calls[i] is not None:
                node.tones_heard = self._tones_heard(i)

    def _tones_heard(self, i: int) -> list[str]:
        try:
            with wave.open(str(self._wav(i)), "rb") as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        except (OSError, EOFError, wave.Error):
            return []
        if len(pcm) < 4800:
            return []
        window = np.hanning(len(pcm))
        spectrum = np.abs(np.fft.rfft(pcm * window)) ** 2
        freqs = np.fft.rfftfreq(len(pcm), 1.0 / 48000)
        scale = len(pcm) * float(np.sum(window**2))

        def band_rms(hz: float) -> float:
            return float(np.sqrt(2.0 * np.sum(spectrum[np.abs(freqs - hz) <= 20.0]) / scale))

        levels = {f"peer-{j}": band_rms(tone_hz(j)) for j in range(len(self.channels)) if j != i}
        loudest = max(levels.values(), default=0.0)
        return [name for name, level in levels.items() if level >= max(TONE_FLOOR, TONE_SHARE * loudest)]

    def problems(self) -> list[str]:
        """What went wrong, one clear line each (empty: everyone heard everyone)."""
        out = []
        everyone = set(self.names.values())
        for node in self.nodes:
            if node.error is not None:
                out.append(f"{node.name}: {node.error}")
                continue
            expected = sorted(everyone - {node.name})
            missing = [p for p in expected if p not in node.links or node.links[p].frames == 0]
            if missing:
                out.append(f"{node.name} received no voice from {', '.join(missing)}")
            unplayed = [p for p in expected if p not in missing and not node.links[p].e2e]
            if unplayed:
                out.append(f"{node.name} played no voice frames from {', '.join(unplayed)}")
            silent = [p for p in expected if p not in missing and p not in node.tones_heard]
            if silent:
                out.append(f"{node.name}'s output lacks the tone of {', '.join(silent)}")
        return out

    def checks(self) -> dict[str, bool]:
        others = len(self.channels) - 1
        return {
            "voice_everyone_hears_everyone": all(
                node.error is None
                and sum(1 for link in node.links.values() if link.frames > 0 and link.e2e) == others
                for node in self.nodes
            ),
            "voice_tones_heard": all(len(node.tones_heard) == others for node in self.nodes),
        }

    def channel_wide(self) -> dict[str, Any]:
        e2e = [s for node in self.nodes for link in node.links.values() for s in link.e2e]
        p50, p95 = quantiles(e2e)
        return {
            "seconds": round(self.seconds, 1),
            "streams": sum(1 for node in self.nodes for link in node.links.values() if link.frames > 0),
            "expected_streams": len(self.nodes) * (len(self.nodes) - 1),
            "frames": sum(link.frames for node in self.nodes for link in node.links.values()),
            "e2e_p50_ms": rnd(None if p50 is None else p50 * 1000),
            "e2e_p95_ms": rnd(None if p95 is None else p95 * 1000),
            "e2e_frames": len(e2e),
            "concealed": sum(link.concealed for node in self.nodes for link in node.links.values()),
        }

    def table(self) -> str:
        rows = []
        others = len(self.nodes) - 1
        for node in self.nodes:
            s = node.summary()
            rows.append(
                [
                    node.name,
                    f"{s['sends_tone_hz']:g}",
                    f"{s['streams']}/{others}",
                    f"{len(node.tones_heard)}/{others}",
                    str(s["frames"]),
                    num(s["loss_pct"], ".1f"),
                    num(s["jitter_ms"], ".1f"),
                    num(s["buffer_ms"], ".0f"),
                    num(s["e2e_p50_ms"], ".0f"),
                    num(s["e2e_p95_ms"], ".0f"),
                    num(s["bitrate_kbps"], ".0f"),
                    str(s["concealed"]),
                ]
            )
        return table(
            [
                "peer",
                "sends Hz",
                "streams",
                "tones",
                "frames",
                "loss %",
                "jitter ms",
                "buffer ms",
                "e2e p50 ms",
                "e2e p95 ms",
                "kb/s",
                "concealed",
            ],
            rows,
        )
