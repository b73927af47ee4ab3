"""Video over the simulated transport with 5% loss and 30 ms jitter: it keeps flowing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bisc.app.node import Node
from bisc.identity import Identity
from bisc.media.video_pattern import PatternSource
from bisc.net.sim import SimNetwork
from bisc.proto.media_control import CAMERA_STREAM
from tests.test_channels import full_mesh, wait_until

pytestmark = pytest.mark.timeout(90)


async def test_video_keeps_flowing_under_loss_and_jitter(tmp_path: Path) -> None:
    network = SimNetwork(seed=5, latency=0.02, jitter=0.03, loss=0.05, idle_timeout=5.0)
    nodes = []
    for i in range(2):
        identity = Identity.generate()
        endpoint = await network.endpoint(identity)
        nodes.append(
            await Node(
                data_dir=tmp_path / f"n{i}", display_name=f"s{i}", identity=identity, endpoint=endpoint
            ).start()
        )
    try:
        a = await nodes[0].create_channel()
        b = await nodes[1].join(a.ticket())
        await wait_until(lambda: full_mesh([a, b]), 10.0, "mesh", [a, b])
        vb = await b.start_video(read_stamps=True)
        await a.start_camera(PatternSource(640, 360, 30.0), size=(640, 360), fps=30.0)
        await wait_until(lambda: (a.me, CAMERA_STREAM) in vb.receivers(), 10.0, "b receives a's camera")
        receiver = vb.receivers()[(a.me, CAMERA_STREAM)]
        await wait_until(lambda: receiver.latest()[0] > 0, 10.0, "a first picture")
        # Watch for 8 s: the longest time without a new picture, and the keyframe requests.
        longest, last_version, last_change = 0.0, receiver.latest()[0], time.monotonic()
        end = time.monotonic() + 8.0
        while time.monotonic() < end:
            await asyncio.sleep(0.02)
            version = receiver.latest()[0]
            now = time.monotonic()
            if version != last_version:
                longest = max(longest, now - last_change)
                last_version, last_change = version, now
        longest = max(longest, time.monotonic() - last_change)
        stats = receiver.stats(time.monotonic())
        requests = receiver.buffer.stats()["keyframe_requests"]
        gaps = receiver.buffer.stats()["gaps"]
        sender = a.video.sender(CAMERA_STREAM) if a.video else None
    finally:
        for node in nodes:
            await node.close()
        await network.close()
    assert longest < 1.0, f"a freeze of {longest:.2f} s"
    assert gaps > 0  # there was loss to recover from
    # Requests are rate-limited: at most one per request interval, however many frames were lost.
    assert requests <= 8.0 / receiver.buffer.request_interval + 3
    assert sender is not None and sender.keyframes >= 2
    assert stats.frames > 100
