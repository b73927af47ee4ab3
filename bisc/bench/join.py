"""Join time on loopback: real nodes, real aioquic, one ticket.

For each network size, one node creates a channel and the others join with
its ticket at the same moment. Measured from the start of join():
- first member: the joiner sees its first other member;
- full mesh: every node sees every other as a member and is connected to it.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bisc.app.channel import Channel
from bisc.app.node import Node

POLL = 0.005
TIMEOUT = 30.0


def _full_mesh(channels: list[Channel]) -> bool:
    ids = {c.me for c in channels}
    return all(set(c.members) == ids - {c.me} and c.connected_peers == ids - {c.me} for c in channels)


async def _one_run(size: int, root: Path) -> dict[str, float]:
    nodes = [
        await Node(data_dir=root / f"n{i}", display_name=f"n{i}", bind="127.0.0.1:0").start()
        for i in range(size)
    ]
    try:
        creator = await nodes[0].create_channel()
        ticket = creator.ticket().to_text()
        start = time.perf_counter()
        first_member: list[float] = []

        async def join(node: Node) -> Channel:
            channel = await node.join(ticket)
            while not channel.members:
                await asyncio.sleep(POLL)
            first_member.append(time.perf_counter() - start)
            return channel

        channels = [creator, *await asyncio.gather(*(join(n) for n in nodes[1:]))]
        while not _full_mesh(channels):
            if time.perf_counter() - start > TIMEOUT:
                raise TimeoutError(f"{size} nodes did not form a full mesh in {TIMEOUT} s")
            await asyncio.sleep(POLL)
        full_mesh = time.perf_counter() - start
        return {
            "first_member_ms_p50": statistics.median(first_member) * 1000,
            "first_member_ms_max": max(first_member) * 1000,
            "full_mesh_ms": full_mesh * 1000,
        }
    finally:
        for node in nodes:
            await node.close()


def run(sizes: Sequence[int] = (2, 5, 8), repeats: int = 3) -> list[dict[str, Any]]:
    """One row per size: the median over `repeats` runs of each figure."""
    rows: list[dict[str, Any]] = []
    for size in sizes:
        runs = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="bisc-join-") as tmp:
                runs.append(asyncio.run(_one_run(size, Path(tmp))))
        rows.append(
            {"nodes": size, "repeats": repeats}
            | {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        )
    return rows
