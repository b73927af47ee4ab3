"""A voice call over the simulated transport with 30 ms jitter and 5% loss:
the same Node, Channel and voice pipeline, with real Opus and real-time playout."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest

from bisc.app.node import Node
from bisc.identity import Identity
from bisc.net.sim import SimNetwork
from tests.test_channels import full_mesh, wait_until
from tests.voice_helpers import RATE, TONE_RMS, band_rms, frame_rms, longest_gap, read_wav

pytestmark = pytest.mark.timeout(90)


async def test_voice_under_jitter_and_loss_has_no_gaps_and_recovers_its_delay(tmp_path: Path) -> None:
    network = SimNetwork(seed=11, latency=0.02, jitter=0.03, loss=0.05, idle_timeout=5.0)
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
        await a.start_voice("tone:440", "none")
        vb = await b.start_voice("none", str(tmp_path / "b.wav"))
        await wait_until(lambda: len(vb.stats()) == 1, 5.0, "b receiving")
        receiver = vb.receivers()[a.me]
        impaired_until = time.monotonic() + 8.0
        buffer_ms: list[float] = []
        while time.monotonic() < impaired_until:
            await asyncio.sleep(0.2)
            buffer_ms.append(receiver.stats(time.monotonic()).buffer_ms)
        impaired = receiver.stats(time.monotonic())
        impaired_len = len(read_wav(tmp_path / "b.wav"))
        # The jitter stops (loss too): the target falls back to the floor and the buffer follows.
        network.set_conditions(jitter=0.0, loss=0.0)
        calm_since = time.monotonic()

        def settled() -> bool:
            st = receiver.stats(time.monotonic())
            return st.target_ms <= 40.0 and st.buffer_ms <= 50.0

        await wait_until(settled, 12.0, "buffer delay back at the floor")
        recovery_s = time.monotonic() - calm_since
        await asyncio.sleep(1.0)
        await b.stop_voice()
    finally:
        for node in nodes:
            await node.close()
        await network.close()

    pcm = read_wav(tmp_path / "b.wav")
    played = pcm[:impaired_len]
    # No gap longer than one frame: losses are filled by FEC or concealment, never silence. (SILK
    # conceals a steady tone at a third of its level or so for a frame or two: quieter, not a gap.)
    assert longest_gap(played, TONE_RMS * 0.1) <= 1
    assert band_rms(played[-3 * RATE :], 440.0) == pytest.approx(TONE_RMS, rel=0.25)
    assert impaired.concealed > 0 and impaired.fec > 0  # there was loss, and FEC recovered some of it
    # From a's first receiver reports on, its packets carry copies of the frame before (RED): most
    # losses after that are played whole.
    assert impaired.recovered > impaired.fec // 2
    # The buffer adapted to ~30 ms of jitter and stayed bounded.
    assert 30.0 <= impaired.target_ms <= 150.0
    assert max(buffer_ms) <= 200.0
    assert statistics.median(buffer_ms[len(buffer_ms) // 2 :]) >= 20.0
    assert recovery_s < 12.0
    assert frame_rms(pcm[impaired_len:]).min() > TONE_RMS * 0.1
