"""The video part of `bisc demo`: once the mesh has formed every node sends the stamped test pattern
(640x360 at 30 fps) as its camera and receives everyone else's, reading the capture time drawn into
each picture for the glass-to-glass delay; every node must receive and decode the other N-1 streams.
The first node also shares a "screen" (a synthetic 1280x720 one at 5 fps: CI machines have no
display), which every other node must decode at full resolution."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from bisc.app.channel import Channel
from bisc.app.video import VideoCall
from bisc.cli.demo_common import LEAVE_RESERVE, POLL, live, mean, ms_quantiles, num, rnd, steady
from bisc.cli.output import table
from bisc.errors import BiscError
from bisc.identity import EndpointId
from bisc.media.video_pattern import PatternSource
from bisc.proto.media_control import CAMERA_STREAM, SCREEN_STREAM

VIDEO_SIZE = (640, 360)  # 360p keeps N encoders and N*(N-1) decoders light on a small machine
VIDEO_FPS = 30.0
VIDEO_SECONDS = 6.0  # how long the video runs at least
# Glass-to-glass delays from the first seconds are left out (encoders and decoders starting at once on
# a busy machine can build a backlog that drains within a second or two); if the demo's time limit
# ends the video before that, the first STEADY_SKIP pictures of each stream are left out instead.
VIDEO_WARMUP = 2.0
STEADY_SKIP = 30
SCREEN_SIZE = (1280, 720)
SCREEN_FPS = 5.0


@dataclass
class VideoLink:
    """How one node received one peer's camera stream."""

    peer: str
    packets: int
    frames: int  # pictures decoded
    fps: float
    width: int
    height: int
    bitrate_kbps: float
    estimate_kbps: float
    freezes: int
    dropped: int
    decode_errors: int
    e2e: list[float]  # seconds, steady part

    def to_json(self) -> dict[str, Any]:
        p50, p95 = ms_quantiles(self.e2e)
        return {
            "packets": self.packets,
            "frames": self.frames,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "bitrate_kbps": self.bitrate_kbps,
            "estimate_kbps": self.estimate_kbps,
            "e2e_p50_ms": p50,
            "e2e_p95_ms": p95,
            "e2e_frames": len(self.e2e),
            "freezes": self.freezes,
            "dropped": self.dropped,
            "decode_errors": self.decode_errors,
        }


@dataclass
class NodeVideo:
    """One node's side of the video."""

    name: str
    links: dict[str, VideoLink] = field(default_factory=dict)
    sent_frames: int = 0
    sent_rung: str | None = None
    error: str | None = None
    screen: dict[str, Any] | None = None  # how this node received peer-0's screen share

    def summary(self) -> dict[str, Any]:
        links = list(self.links.values())
        p50, p95 = ms_quantiles([s for link in links for s in link.e2e])
        return {
            "sent_frames": self.sent_frames,
            "sent_rung": self.sent_rung,
            "streams": sum(1 for link in links if link.frames > 0),
            "frames": sum(link.frames for link in links),
            "fps": rnd(mean([link.fps for link in links if link.frames > 0])),  # per stream
            "resolutions": sorted({f"{link.width}x{link.height}" for link in links if link.frames > 0}),
            "bitrate_kbps": rnd(mean([link.bitrate_kbps for link in links if link.frames > 0])),  # per stream
            "e2e_p50_ms": p50,
            "e2e_p95_ms": p95,
            "freezes": sum(link.freezes for link in links),
            "error": self.error,
            "screen": self.screen,
            "from": {link.peer: link.to_json() for link in links},
        }


class DemoVideo:
    """Every node sends the test pattern and decodes everyone else's."""

    def __init__(self, channels: list[Channel]) -> None:
        self.channels = channels
        self.names = {c.me: f"peer-{i}" for i, c in enumerate(channels)}
        self.nodes = [NodeVideo(f"peer-{i}") for i in range(len(channels))]
        self.calls: list[VideoCall | None] = [None] * len(channels)
        self.started = 0.0
        self.seconds = 0.0
        self._warm: dict[tuple[int, EndpointId], int] | None = None  # samples per stream at the warm-up's end

    async def start(self) -> None:
        self.started = time.monotonic()
        for i, channel in enumerate(self.channels):
            try:
                self.calls[i] = await channel.start_video(read_stamps=True)
            except BiscError as exc:
                self.nodes[i].error = f"cannot start video: {exc}"
        for i, channel in enumerate(self.channels):
            if self.calls[i] is None:
                continue
            try:
                source = PatternSource(VIDEO_SIZE[0], VIDEO_SIZE[1], VIDEO_FPS)
                await channel.start_camera(source, size=VIDEO_SIZE, fps=VIDEO_FPS)
                if i == 0:
                    screen = PatternSource(SCREEN_SIZE[0], SCREEN_SIZE[1], SCREEN_FPS, noise=0)
                    await channel.start_screen(screen, size=SCREEN_SIZE, fps=SCREEN_FPS)
            except BiscError as exc:
                self.nodes[i].error = f"cannot send video: {exc}"

    def seen(self, i: int) -> int:
        """How many peers' streams node i has decoded pictures from."""
        call = self.calls[i]
        if call is None:
            return 0
        return sum(
            1 for (_, sid), (version, _) in call.frames().items() if version > 0 and sid == CAMERA_STREAM
        )

    async def settle(self, deadline: float, quiet: bool) -> None:
        """Let the video run VIDEO_SECONDS in all (and until everyone sees everyone, within the limit)."""
        others = len(self.channels) - 1
        until = min(self.started + VIDEO_SECONDS, deadline - LEAVE_RESERVE)
        while time.monotonic() < deadline - LEAVE_RESERVE:
            everyone = all(self.seen(i) == others for i in range(len(self.channels)))
            hopeless = any(node.error is not None for node in self.nodes)
            if (everyone or hopeless) and time.monotonic() >= until:
                break
            if self._warm is None and time.monotonic() >= self.started + VIDEO_WARMUP:
                self._warm = {
                    (i, peer): len(receiver.e2e_samples())
                    for i, call in enumerate(self.calls)
                    if call is not None
                    for (peer, _sid), receiver in call.receivers().items()
                }
            if not quiet:
                live("video: " + " ".join(f"{self.seen(i)}/{others}" for i in range(len(self.channels))))
            await asyncio.sleep(POLL)

    async def stop(self) -> None:
        """Take the figures, then stop every node's video."""
        now = time.monotonic()
        self.seconds = now - self.started
        for i, (node, call) in enumerate(zip(self.nodes, self.calls, strict=True)):
            if call is None:
                continue
            sender = call.sender(CAMERA_STREAM)
            if sender is not None:
                node.sent_frames = sender.frames_encoded
                node.sent_rung = sender.target.rung
            for (peer, sid), receiver in call.receivers().items():
                if sid == SCREEN_STREAM:
                    shot = receiver.stats(now)
                    node.screen = {
                        "from": self.names.get(peer, peer.short()),
                        "frames": shot.frames,
                        "fps": shot.fps,
                        "width": shot.width,
                        "height": shot.height,
                        "bitrate_kbps": shot.bitrate_kbps,
                        "decode_errors": shot.decode_errors,
                    }
                if sid != CAMERA_STREAM:
                    continue
                stats = receiver.stats(now)
                name = self.names.get(peer, peer.short())
                node.links[name] = VideoLink(
                    peer=name,
                    packets=receiver.reception.received,
                    frames=stats.frames,
                    fps=stats.fps,
                    width=stats.width,
                    height=stats.height,
                    bitrate_kbps=stats.bitrate_kbps,
                    estimate_kbps=stats.estimate_kbps,
                    freezes=stats.freezes,
                    dropped=stats.dropped,
                    decode_errors=stats.decode_errors,
                    e2e=self._steady(i, peer, receiver.e2e_samples()),
                )
        for channel in self.channels:
            with contextlib.suppress(BiscError):
                await channel.stop_video()

    def _steady(self, i: int, peer: EndpointId, samples: list[float]) -> list[float]:
        if self._warm is None:
            return steady(samples, STEADY_SKIP)
        return samples[self._warm.get((i, peer), 0) :]

    def problems(self) -> list[str]:
        """What went wrong, one clear line each (empty: everyone decoded everyone's video)."""
        out = []
        everyone = set(self.names.values())
        for node in self.nodes:
            if node.error is not None:
                out.append(f"{node.name}: {node.error}")
                continue
            expected = sorted(everyone - {node.name})
            missing = [p for p in expected if p not in node.links or node.links[p].packets == 0]
            if missing:
                out.append(f"{node.name} received no video from {', '.join(missing)}")
            undecoded = [p for p in expected if p not in missing and node.links[p].frames == 0]
            if undecoded:
                out.append(f"{node.name} received video from {', '.join(undecoded)} but decoded no picture")
            if node is not self.nodes[0] and not self._screen_ok(node):
                out.append(f"{node.name} did not get {self.nodes[0].name}'s screen share at full resolution")
        return out

    @staticmethod
    def _screen_ok(node: NodeVideo) -> bool:
        shot = node.screen
        return shot is not None and shot["frames"] > 0 and (shot["width"], shot["height"]) == SCREEN_SIZE

    def checks(self) -> dict[str, bool]:
        others = len(self.channels) - 1
        return {
            "screen_share_seen_by_all": all(self._screen_ok(node) for node in self.nodes[1:]),
            "video_everyone_sees_everyone": all(
                node.error is None and sum(1 for link in node.links.values() if link.frames > 0) == others
                for node in self.nodes
            ),
        }

    def channel_wide(self) -> dict[str, Any]:
        links = [link for node in self.nodes for link in node.links.values()]
        p50, p95 = ms_quantiles([s for link in links for s in link.e2e])
        decoded = [link for link in links if link.frames > 0]
        return {
            "seconds": round(self.seconds, 1),
            "streams": len(decoded),
            "expected_streams": len(self.nodes) * (len(self.nodes) - 1),
            "frames": sum(link.frames for link in links),
            "fps": rnd(mean([link.fps for link in decoded])),
            "bitrate_kbps": rnd(sum(link.bitrate_kbps for link in decoded)),  # all streams together
            "e2e_p50_ms": p50,
            "e2e_p95_ms": p95,
            "e2e_frames": sum(len(link.e2e) for link in links),
            "freezes": sum(link.freezes for link in links),
            "screen_share": {
                "from": self.nodes[0].name,
                "size": f"{SCREEN_SIZE[0]}x{SCREEN_SIZE[1]}",
                "decoded_by": sum(1 for node in self.nodes[1:] if self._screen_ok(node)),
                "of": len(self.nodes) - 1,
            },
        }

    def table(self) -> str:
        rows = []
        others = len(self.nodes) - 1
        for node in self.nodes:
            s = node.summary()
            decoded = [link for link in node.links.values() if link.frames > 0]
            rows.append(
                [
                    node.name,
                    f"{s['streams']}/{others}",
                    " ".join(str(link.frames) for link in node.links.values()) or "-",
                    num(s["fps"], ".1f"),
                    " ".join(s["resolutions"]) or "-",
                    num(s["bitrate_kbps"], ".0f"),
                    num(s["e2e_p50_ms"], ".0f"),
                    num(s["e2e_p95_ms"], ".0f"),
                    str(s["freezes"]),
                    str(sum(link.dropped for link in decoded)),
                ]
            )
        return table(
            [
                "peer",
                "streams",
                "frames/stream",
                "fps",
                "resolution",
                "kb/s/stream",
                "g2g p50 ms",
                "g2g p95 ms",
                "freezes",
                "dropped",
            ],
            rows,
        )
