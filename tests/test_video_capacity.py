"""Video against a changing link capacity, over real aioquic on loopback (issue requirement).

The joiner's link crosses an ImpairedRelay used as a bottleneck (no loss, no jitter, a drop-tail
queue): at 4 Mb/s the sender climbs to 720p; when the capacity drops to 500 kb/s the receiver's
estimate follows within a few seconds, the glass-to-glass delay comes back under 200 ms and the
sender steps down the ladder; when it returns to 4 Mb/s the sender climbs again. Each phase waits
for its condition (with a time limit) and a timeline of what was measured is printed on failure.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bisc.app import Node
from bisc.app.channel import Channel
from bisc.bench.impair import ImpairedRelay
from bisc.media.video_ladder import LADDER
from bisc.media.video_pattern import PatternSource
from bisc.proto.media_control import CAMERA_STREAM
from bisc.ticket import BiscTicket, EndpointAddr
from tests.test_channels import full_mesh, wait_until

pytestmark = pytest.mark.timeout(120)

HIGH = 4_000_000
LOW = 500_000
TICK = 0.25
RUNGS = [r.name for r in LADDER]


@dataclass
class Sample:
    t: float  # seconds since the video started
    capacity_kbps: float
    estimate_kbps: float  # the receiver's bandwidth estimate
    rung: str  # what the sender sends
    target_kbps: float  # the sender's encoder bitrate
    received_kbps: float
    delay_ms: float | None  # glass to glass, median over the pictures since the previous sample
    pictures: int


class Timeline:
    def __init__(self, sender: Channel, receiver: Channel) -> None:
        self.sender = sender
        self.receiver = receiver
        self.samples: list[Sample] = []
        self.capacity = HIGH
        self.start = time.monotonic()
        self.marks: list[tuple[float, str]] = []

    def mark(self, what: str) -> float:
        t = time.monotonic() - self.start
        self.marks.append((t, what))
        return t

    def sample(self) -> Sample | None:
        send = self.sender.video.sender(CAMERA_STREAM) if self.sender.video else None
        recv = (
            self.receiver.video.receivers().get((self.sender.me, CAMERA_STREAM))
            if self.receiver.video
            else None
        )
        if send is None or recv is None:
            return None
        now = time.monotonic()
        stats = recv.stats(now)
        fresh = stats.frames - (self.samples[-1].pictures if self.samples else 0)
        newest = recv.e2e_samples()[-min(fresh, 15) :] if fresh > 0 else []
        s = Sample(
            t=now - self.start,
            capacity_kbps=self.capacity / 1000,
            estimate_kbps=stats.estimate_kbps,
            rung=send.target.rung,
            target_kbps=send.target.bitrate / 1000,
            received_kbps=stats.bitrate_kbps,
            delay_ms=statistics.median(newest) * 1000 if newest else None,
            pictures=stats.frames,
        )
        self.samples.append(s)
        return s

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(TICK)

    def last(self) -> Sample:
        return self.samples[-1] if self.samples else Sample(0, 0, 0, "-", 0, 0, None, 0)

    def render(self) -> str:
        lines = [f"{'t s':>6} {'cap kb/s':>8} {'est kb/s':>8} {'rung':>5} {'enc kb/s':>8} {'rx kb/s':>8} "
                 f"{'delay ms':>8} {'pics':>6}"]  # fmt: skip
        marks = list(self.marks)
        for s in self.samples:
            while marks and marks[0][0] <= s.t:
                lines.append(f"-- {marks[0][0]:.1f} s: {marks.pop(0)[1]}")
            delay = "-" if s.delay_ms is None else f"{s.delay_ms:.0f}"
            lines.append(
                f"{s.t:6.1f} {s.capacity_kbps:8.0f} {s.estimate_kbps:8.0f} {s.rung:>5} {s.target_kbps:8.0f} "
                f"{s.received_kbps:8.0f} {delay:>8} {s.pictures:6d}"
            )
        return "\n".join(lines)


async def _until(timeline: Timeline, predicate: Callable[[Sample], bool], limit: float, what: str) -> float:
    """Seconds until predicate(the newest sample) holds; AssertionError with the timeline otherwise."""
    start = time.monotonic()
    while True:
        s = timeline.sample()
        if s is not None and predicate(s):
            took = time.monotonic() - start
            timeline.mark(f"{what} after {took:.1f} s")
            return took
        if time.monotonic() - start > limit:
            timeline.mark(f"NOT {what} within {limit:g} s")
            raise AssertionError(f"{what}: not within {limit:g} s\n{timeline.render()}")
        await asyncio.sleep(TICK)


def _rank(rung: str) -> int:
    return RUNGS.index(rung) if rung in RUNGS else -1


async def test_video_follows_a_changing_link_capacity(tmp_path: Path) -> None:
    nodes = [
        await Node(data_dir=tmp_path / f"n{i}", display_name=f"c{i}", bind="127.0.0.1:0").start()
        for i in range(2)
    ]
    relay: ImpairedRelay | None = None
    try:
        a = await nodes[0].create_channel()
        ticket = a.ticket()
        boot = ticket.bootstrap[0]
        host, port = next((str(ip), p) for ip, p in boot.addrs if ip.version == 4)
        relay = await ImpairedRelay((host, port), loss=0.0, jitter_ms=0.0, seed=7).start()
        relay.set_rate(HIGH)
        b = await nodes[1].join(BiscTicket(ticket.secret, (EndpointAddr.of(boot.endpoint_id, [relay.addr]),)))
        chans = [a, b]
        await wait_until(lambda: full_mesh(chans), 10.0, "two peers connected through the relay", chans)

        await b.start_video(read_stamps=True)
        await a.start_camera(PatternSource(1280, 720, 30.0), size=(1280, 720), fps=30.0)
        timeline = Timeline(a, b)
        timeline.capacity = HIGH

        # 1. A 4 Mb/s link: the sender reaches 720p.
        climb = await _until(timeline, lambda s: _rank(s.rung) >= _rank("720p"), 25.0, "720p at 4 Mb/s")
        await asyncio.sleep(2.0)
        timeline.sample()

        # 2. The link drops to 500 kb/s.
        relay.set_rate(LOW)
        timeline.capacity = LOW
        timeline.mark("capacity 500 kb/s")
        follow = await _until(timeline, lambda s: s.estimate_kbps < 600, 5.0, "estimate below 600 kb/s")
        down = await _until(timeline, lambda s: _rank(s.rung) <= _rank("360p"), 5.0, "360p or lower")
        settle = await _until(
            timeline,
            lambda s: s.delay_ms is not None and s.delay_ms < 200 and s.pictures > 0,
            8.0,
            "delay below 200 ms",
        )
        pictures = timeline.last().pictures
        await asyncio.sleep(1.0)
        low_rung = timeline.sample() or timeline.last()
        assert low_rung.pictures > pictures, f"no pictures at 500 kb/s\n{timeline.render()}"

        # 3. Back to 4 Mb/s: it climbs at least one rung.
        relay.set_rate(HIGH)
        timeline.capacity = HIGH
        timeline.mark("capacity 4 Mb/s")
        start_rank = _rank(timeline.last().rung)
        back = await _until(
            timeline, lambda s: _rank(s.rung) > start_rank, 25.0, "a rung up after the link came back"
        )
        print(
            f"\n720p after {climb:.1f} s; at 500 kb/s: estimate followed in {follow:.1f} s, "
            f"stepped down {down:.1f} s later, delay < 200 ms {settle:.1f} s later; "
            f"climbed back in {back:.1f} s\n{timeline.render()}"
        )
    finally:
        if relay is not None:
            relay.close()
        for node in nodes:
            await node.close()
