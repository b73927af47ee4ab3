"""`bisc demo`: N local nodes on loopback form a channel from one ticket and
exercise every feature that exists, with a live view and a summary table.

Voice: once the mesh has formed every node joins the call with its own tone
(300 + 150*i Hz) and writes what it plays to a WAV file in the demo's
directory, while the chat and file steps run; every node must receive and
play the other N-1 streams and have their tones in its output."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import wave
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bisc.app.channel import Channel
from bisc.app.events import ChatReceived, MemberLeft
from bisc.app.node import Node
from bisc.app.voice import VoiceCall
from bisc.cli.output import print_json, table
from bisc.errors import BiscError
from bisc.identity import EndpointId

POLL = 0.05
DEMO_FILE_SIZE = 8 * 1024 * 1024 + 12345  # a few chunks, not a round number


def register(commands: Any) -> None:
    parser = commands.add_parser("demo", help="run N local nodes and exercise every feature")
    parser.add_argument("--peers", type=int, default=3, help="number of nodes (2..16, default 3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit for the whole demo")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-voice", action="store_true", help="leave the voice call out")
    parser.set_defaults(run=run_demo)


@dataclass
class PeerReport:
    name: str
    join_ms: float | None = None  # ticket -> admitted by a bootstrap peer
    first_member_ms: float | None = None
    full_mesh_ms: float | None = None
    chats: Counter[bytes] = field(default_factory=Counter)
    saw_leave: bool = False
    download_ms: float | None = None
    download_ok: bool = False


_last_live = [""]


def _live(line: str) -> None:
    """One status line, redrawn in place on a terminal, printed on change otherwise."""
    if line == _last_live[0]:
        return
    _last_live[0] = line
    if sys.stdout.isatty():
        sys.stdout.write("\r\033[K" + line.rstrip("\n") + ("\n" if line.endswith("\n") else ""))
    else:
        sys.stdout.write(line.rstrip("\n") + "\n")
    sys.stdout.flush()


async def _collect(channel: Channel, report: PeerReport) -> None:
    async for event in channel.events():
        if isinstance(event, ChatReceived):
            report.chats[event.chat_id] += 1
        elif isinstance(event, MemberLeft):
            report.saw_leave = True


# -- voice -----------------------------------------------------------------------

VOICE_SECONDS = 5.0  # how long the call runs at least (it starts once the mesh has formed)
VOICE_WARMUP = 1.0  # not sampled: the jitter buffers settle and the clocks get mapped
STEADY_SKIP = 50  # end-to-end samples (frames) left out at the start of each stream
SAMPLE_EVERY = 0.25
LEAVE_RESERVE = 2.0  # seconds of the time limit kept for the leave step
TONE_SHARE = 0.2  # a peer's tone counts as heard at this share of the loudest expected tone's level
TONE_FLOOR = 300.0  # ... and at least this RMS (full scale 32767; a tone is sent at ~6950)


def tone_hz(i: int) -> float:
    """The tone peer-i sends in the demo."""
    return 300.0 + 150.0 * i


def _quantiles(samples: list[float]) -> tuple[float | None, float | None]:
    if not samples:
        return None, None
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _steady(samples: list[float]) -> list[float]:
    """The end-to-end delays after the stream settled (the first second left out)."""
    return samples[STEADY_SKIP:] if len(samples) > 2 * STEADY_SKIP else samples[len(samples) // 2 :]


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
        p50, p95 = _quantiles(self.e2e)
        return {
            "frames": self.frames,
            "loss_pct": _round(self.loss_pct, 2),
            "jitter_ms": _round(self.jitter_ms),
            "buffer_ms": _round(self.buffer_ms),
            "e2e_p50_ms": _round(None if p50 is None else p50 * 1000),
            "e2e_p95_ms": _round(None if p95 is None else p95 * 1000),
            "e2e_frames": len(self.e2e),
            "bitrate_kbps": _round(self.bitrate_kbps),
            "concealed": self.concealed,
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


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
        p50, p95 = _quantiles(e2e)
        bitrates = [link.bitrate_kbps for link in links if link.bitrate_kbps is not None]
        return {
            "sends_tone_hz": self.tone_hz,
            "streams": sum(1 for link in links if link.frames > 0),
            "frames": sum(link.frames for link in links),
            "loss_pct": _round(_mean([link.loss_pct for link in links if link.loss_pct is not None]), 2),
            "jitter_ms": _round(_mean([link.jitter_ms for link in links if link.jitter_ms is not None])),
            "buffer_ms": _round(_mean([link.buffer_ms for link in links if link.buffer_ms is not None])),
            "e2e_p50_ms": _round(None if p50 is None else p50 * 1000),
            "e2e_p95_ms": _round(None if p95 is None else p95 * 1000),
            "bitrate_kbps": _round(_mean(bitrates)),  # per stream
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
                _live("voice: " + " ".join(f"{self.heard(i)}/{others}" for i in range(len(self.channels))))
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
                    loss_pct=_mean(link.loss_pct),
                    jitter_ms=_mean(link.jitter_ms),
                    buffer_ms=_mean(link.buffer_ms),
                    e2e=_steady(receiver.e2e_samples()) if receiver is not None else [],
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
        p50, p95 = _quantiles(e2e)
        return {
            "seconds": round(self.seconds, 1),
            "streams": sum(1 for node in self.nodes for link in node.links.values() if link.frames > 0),
            "expected_streams": len(self.nodes) * (len(self.nodes) - 1),
            "frames": sum(link.frames for node in self.nodes for link in node.links.values()),
            "e2e_p50_ms": _round(None if p50 is None else p50 * 1000),
            "e2e_p95_ms": _round(None if p95 is None else p95 * 1000),
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
                    _num(s["loss_pct"], ".1f"),
                    _num(s["jitter_ms"], ".1f"),
                    _num(s["buffer_ms"], ".0f"),
                    _num(s["e2e_p50_ms"], ".0f"),
                    _num(s["e2e_p95_ms"], ".0f"),
                    _num(s["bitrate_kbps"], ".0f"),
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


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


async def _demo(
    peers: int, seconds: float, root: Path, quiet: bool, with_voice: bool = True
) -> tuple[list[PeerReport], dict[str, bool], DemoVoice | None]:
    deadline = time.monotonic() + seconds
    nodes = [
        Node(data_dir=root / f"node{i}", display_name=f"peer-{i}", bind="127.0.0.1:0") for i in range(peers)
    ]
    reports = [PeerReport(f"peer-{i}") for i in range(peers)]
    for node in nodes:
        await node.start()
    channels: list[Channel] = [await nodes[0].create_channel()]
    reports[0].join_ms = 0.0
    ticket = channels[0].ticket().to_text()
    if not quiet:
        print(f"ticket: {ticket}")
    start = time.monotonic()

    async def join(i: int) -> Channel:
        channel = await nodes[i].join(ticket)
        reports[i].join_ms = (time.monotonic() - start) * 1000
        return channel

    channels += await asyncio.gather(*(join(i) for i in range(1, peers)))
    collectors = [asyncio.ensure_future(_collect(c, r)) for c, r in zip(channels, reports, strict=True)]
    others = peers - 1
    while time.monotonic() < deadline:
        elapsed = (time.monotonic() - start) * 1000
        for channel, report in zip(channels, reports, strict=True):
            if report.first_member_ms is None and channel.members:
                report.first_member_ms = elapsed
            if report.full_mesh_ms is None and len(channel.connected_peers) == others == len(channel.members):
                report.full_mesh_ms = elapsed
        if not quiet:
            _live("mesh: " + " ".join(f"{len(c.connected_peers)}/{others}" for c in channels))
        if all(r.full_mesh_ms is not None for r in reports):
            break
        await asyncio.sleep(POLL)
    voice = DemoVoice(channels, root) if with_voice else None
    if voice is not None:
        await voice.start()
    for i, channel in enumerate(channels):
        await channel.send_chat(f"hello from peer-{i}")
    while time.monotonic() < deadline and not all(len(r.chats) >= others for r in reports):
        if not quiet:
            _live("chat: " + " ".join(f"{len(r.chats)}/{others}" for r in reports))
        await asyncio.sleep(POLL)
    # File sharing: peer-0 shares a synthetic file, everyone else downloads it.
    source = root / "demo-file.bin"
    source.write_bytes(os.urandom(DEMO_FILE_SIZE))
    info = await channels[0].share(source)
    share_start = time.monotonic()
    while time.monotonic() < deadline and not all(info.file_hash in c.files for c in channels[1:]):
        await asyncio.sleep(POLL)
    downloads = {}
    for i, channel in enumerate(channels[1:], 1):
        with contextlib.suppress(BiscError):
            downloads[i] = channel.download(info.file_hash)
    expected = source.read_bytes()
    while time.monotonic() < deadline:
        for i, handle in downloads.items():
            if handle.state == "complete" and reports[i].download_ms is None:
                reports[i].download_ms = (time.monotonic() - share_start) * 1000
                reports[i].download_ok = handle.path is not None and handle.path.read_bytes() == expected
        if not quiet:
            _live("file: " + " ".join(f"{h.bytes_done * 100 // max(1, h.size)}%" for h in downloads.values()))
        if all(h.state in ("complete", "failed", "cancelled") for h in downloads.values()):
            break
        await asyncio.sleep(POLL)
    reports[0].download_ok = True
    if voice is not None:
        await voice.settle(deadline, quiet)
        await voice.stop()
    # The last peer leaves gracefully; the others must notice at once.
    await channels[-1].leave()
    while time.monotonic() < deadline and not all(r.saw_leave for r in reports[:-1]):
        await asyncio.sleep(POLL)
    if not quiet:
        _live("done\n")
    for node in nodes:
        await node.close()
    for task in collectors:
        task.cancel()
    await asyncio.gather(*collectors, return_exceptions=True)
    checks = {
        "full_mesh": all(r.full_mesh_ms is not None for r in reports),
        "chat_exactly_once": all(len(r.chats) == others and set(r.chats.values()) == {1} for r in reports),
        "leave_seen": all(r.saw_leave for r in reports[:-1]),
        "file_downloaded_and_verified": all(r.download_ok for r in reports),
    }
    if voice is not None:
        checks |= voice.checks()
    return reports, checks, voice


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def run_demo(args: argparse.Namespace) -> int:
    if not 2 <= args.peers <= 16:
        print("bisc: --peers must be 2..16", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bisc-demo-") as tmp:
        reports, checks, voice = asyncio.run(
            _demo(args.peers, args.seconds, Path(tmp), args.json, not args.no_voice)
        )
    problems = voice.problems() if voice is not None else []
    if args.json:
        print_json(
            {
                "peers": [
                    {
                        "name": r.name,
                        "join_ms": r.join_ms,
                        "first_member_ms": r.first_member_ms,
                        "full_mesh_ms": r.full_mesh_ms,
                        "chats_received": sum(r.chats.values()),
                        "distinct_chats": len(r.chats),
                        "download_ms": r.download_ms,
                        "download_ok": r.download_ok,
                        "voice": voice.nodes[i].summary() if voice is not None else None,
                    }
                    for i, r in enumerate(reports)
                ],
                "voice": voice.channel_wide() if voice is not None else None,
                "voice_problems": problems,
                "checks": checks,
            }
        )
    else:
        print(
            table(
                [
                    "peer",
                    "join ms",
                    "first member ms",
                    "full mesh ms",
                    "chats",
                    "duplicates",
                    "file ms",
                    "MB/s",
                    "file",
                ],
                [
                    [
                        r.name,
                        _ms(r.join_ms),
                        _ms(r.first_member_ms),
                        _ms(r.full_mesh_ms),
                        f"{len(r.chats)}/{args.peers - 1}",
                        str(sum(r.chats.values()) - len(r.chats)),
                        "shared" if i == 0 else _ms(r.download_ms),
                        "" if i == 0 or not r.download_ms else f"{DEMO_FILE_SIZE / 1e3 / r.download_ms:.1f}",
                        "source" if i == 0 else ("verified" if r.download_ok else "FAILED"),
                    ]
                    for i, r in enumerate(reports)
                ],
            )
        )
        print(f"\nfile: {DEMO_FILE_SIZE / 1e6:.1f} MB shared by peer-0, downloaded by the others at once")
        if voice is not None:
            wide = voice.channel_wide()
            print()
            print(voice.table())
            print(
                f"\nvoice: {wide['seconds']:g} s call, every peer a tone; streams {wide['streams']}"
                f"/{wide['expected_streams']}, end-to-end delay p50 {_ms(wide['e2e_p50_ms'])} ms"
                f" p95 {_ms(wide['e2e_p95_ms'])} ms over {wide['e2e_frames']} frames,"
                f" {wide['concealed']} concealed"
            )
        print()
        for name, ok in checks.items():
            print(f"  {'ok  ' if ok else 'FAIL'}  {name.replace('_', ' ')}")
    for problem in problems:
        print(f"bisc: demo: voice did not flow: {problem}", file=sys.stderr)
    failed = [name for name, ok in checks.items() if not ok]
    if failed and not problems:
        print(f"bisc: demo: failed: {', '.join(failed)}", file=sys.stderr)
    return 0 if not failed else 1
