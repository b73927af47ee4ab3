"""The same Node and Channel code over the simulated transport: the app layer
does not depend on aioquic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bisc.app.node import Node
from bisc.identity import Identity
from bisc.net.sim import SimNetwork
from tests.test_channels import Recorder, full_mesh, wait_until

pytestmark = pytest.mark.timeout(60)


async def test_channel_over_simulated_network_with_latency_and_jitter(tmp_path: Path) -> None:
    network = SimNetwork(seed=7, latency=0.005, jitter=0.003, loss=0.05, idle_timeout=2.0)
    nodes = []
    for i in range(5):
        identity = Identity.generate()
        endpoint = await network.endpoint(identity)
        nodes.append(
            await Node(
                data_dir=tmp_path / f"n{i}", display_name=f"sim-{i}", identity=identity, endpoint=endpoint
            ).start()
        )
    try:
        creator = await nodes[0].create_channel()
        ticket = creator.ticket()
        channels = [creator, *await asyncio.gather(*(n.join(ticket) for n in nodes[1:]))]
        await wait_until(lambda: full_mesh(channels), 10.0, "full mesh over the simulated network", channels)
        recorders = [Recorder(c) for c in channels]
        await channels[3].send_chat("over the sim")
        await wait_until(
            lambda: all(r.chats["over the sim"] == 1 for i, r in enumerate(recorders) if i != 3),
            5.0,
            "chat everywhere",
        )
        await channels[1].leave()
        rest = [c for i, c in enumerate(channels) if i != 1]
        await wait_until(lambda: full_mesh(rest), 5.0, "the rest without the leaver", rest)
    finally:
        for node in nodes:
            await node.close()
        await network.close()
