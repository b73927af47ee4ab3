"""Channels end to end over real aioquic on loopback: join, full mesh, chat,
leave, ticket refresh, and peers that must not get in."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bisc.app.channel import Channel
from bisc.app.events import ChatReceived, MemberLeft
from bisc.app.node import JoinError, Node
from bisc.errors import TicketError
from bisc.proto.control import Gossip, encode_control
from bisc.ticket import BiscTicket

pytestmark = pytest.mark.timeout(120)


def describe(channels: list[Channel]) -> str:
    return "; ".join(
        f"{c.display_name}: members={sorted(m.name for m in c.members.values())} "
        f"connected={len(c.connected_peers)}"
        for c in channels
    )


async def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, channels: list[Channel] | None = None
) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            state = describe(channels) if channels else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}. {state}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@contextlib.asynccontextmanager
async def nodes(tmp_path: Path, count: int) -> AsyncIterator[list[Node]]:
    started = [
        await Node(data_dir=tmp_path / f"n{i}", display_name=f"node-{i}", bind="127.0.0.1:0").start()
        for i in range(count)
    ]
    try:
        yield started
    finally:
        for node in started:
            with contextlib.suppress(Exception):
                await node.close()


def full_mesh(channels: list[Channel]) -> bool:
    ids = {c.me for c in channels}
    return all(set(c.members) == ids - {c.me} and c.connected_peers == ids - {c.me} for c in channels)


class Recorder:
    def __init__(self, channel: Channel) -> None:
        self.chats: Counter[str] = Counter()
        self.left: list[MemberLeft] = []
        self.task = asyncio.ensure_future(self._run(channel))

    async def _run(self, channel: Channel) -> None:
        async for event in channel.events():
            if isinstance(event, ChatReceived):
                self.chats[event.text] += 1
            elif isinstance(event, MemberLeft):
                self.left.append(event)


async def test_five_nodes_mesh_chat_leave_refresh(tmp_path: Path) -> None:
    async with nodes(tmp_path, 6) as all_nodes:
        creator = await all_nodes[0].create_channel()
        ticket = creator.ticket().to_text()
        joined = await asyncio.gather(*(n.join(ticket) for n in all_nodes[1:5]))
        channels = [creator, *joined]
        await wait_until(lambda: full_mesh(channels), 5.0, "5 nodes in full mesh", channels)
        names = {c.members[creator.me].name for c in joined}
        assert names == {"node-0"}

        recorders = [Recorder(c) for c in channels]
        for i, channel in enumerate(channels):
            await channel.send_chat(f"hello from {i}")
        expected = {f"hello from {i}" for i in range(5)}
        await wait_until(
            lambda: all(set(r.chats) == expected - {f"hello from {i}"} for i, r in enumerate(recorders)),
            5.0,
            "every chat everywhere",
        )
        await asyncio.sleep(0.3)  # late duplicates would show up now
        assert all(set(r.chats.values()) == {1} for r in recorders), [r.chats for r in recorders]

        # The creator leaves; the other four stay connected to each other.
        await creator.leave()
        rest = channels[1:]
        await wait_until(lambda: full_mesh(rest), 3.0, "the remaining 4 in full mesh", rest)
        assert all(any(e.peer_id == creator.me and e.reason == "left" for e in r.left) for r in recorders[1:])

        # A sixth node joins with a ticket refreshed by a non-creator.
        fresh = await rest[2].refresh_ticket()
        assert creator.me not in {p.endpoint_id for p in fresh.bootstrap}
        sixth = await all_nodes[5].join(fresh)
        await wait_until(
            lambda: full_mesh([*rest, sixth]), 5.0, "the sixth node in full mesh", [*rest, sixth]
        )


async def test_join_without_secret_is_denied(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with nodes(tmp_path, 2) as (a, b):
        channel = await a.create_channel()
        real = channel.ticket()
        forged = BiscTicket(BiscTicket.new_secret(), real.bootstrap)  # right peer, wrong secret
        with pytest.raises(JoinError):
            await b.join(forged, timeout=10)
        assert channel.members == {} and channel.connected_peers == set()
        assert any("admission denied" in r.getMessage() for r in caplog.records)
        assert b.channels == {}


async def test_unreachable_bootstrap_fails_clearly(tmp_path: Path) -> None:
    async with nodes(tmp_path, 2) as (a, b):
        channel = await a.create_channel()
        ticket = channel.ticket()
        await a.close()
        with pytest.raises(JoinError):
            await b.join(ticket, timeout=8)
        assert b.channels == {}  # nothing half-open left behind


async def test_reopen_a_saved_ticket(tmp_path: Path) -> None:
    """Recent channels: back in through a peer that is still there, or alone when nobody answers."""
    async with nodes(tmp_path, 3) as (a, b, c):
        created = await a.create_channel()
        alone_ticket = created.ticket()  # lists only a
        joined = await b.join(alone_ticket, timeout=10)
        await wait_until(lambda: full_mesh([created, joined]), 10, "a and b meshed")
        saved = created.ticket()  # a and b, as the app saves it when leaving
        await created.leave()
        await wait_until(lambda: not joined.connected_peers, 20, "b to see a go")

        # b is still there: a comes back in through it, and b takes a back although a had left.
        back = await a.reopen(saved, timeout=10)
        await wait_until(lambda: full_mesh([back, joined]), 10, "a back with b", [back, joined])
        await back.leave()
        await joined.leave()

        # Nobody answers (b left too): a opens the channel alone, and c joins on a's fresh ticket.
        with pytest.raises(JoinError, match="only this node"):
            await a.join(alone_ticket, timeout=5)  # join() needs someone else to ask
        again = await a.reopen(saved, timeout=5)
        assert again.topic_id == created.topic_id and not again.connected_peers
        late = await c.join(again.ticket(), timeout=10)
        await wait_until(lambda: full_mesh([again, late]), 10, "c with a", [again, late])
        assert await a.reopen(saved) is again  # already in: the same channel


async def test_bad_ticket_text(tmp_path: Path) -> None:
    async with nodes(tmp_path, 1) as (a,):
        with pytest.raises(TicketError):
            await a.join("bisc1notaticket")


async def test_malformed_frames_from_a_member_close_only_that_link(tmp_path: Path) -> None:
    async with nodes(tmp_path, 3) as (a, b, c):
        ca = await a.create_channel()
        cb = await b.join(ca.ticket())
        cc = await c.join(ca.ticket())
        await wait_until(lambda: full_mesh([ca, cb, cc]), 5.0, "mesh")
        conn = cb._connections[a.identity.endpoint_id]
        conn.send_control(b"\xc1garbage")  # not msgpack
        await wait_until(lambda: conn.is_closed, 3.0, "the bad link to close")
        # Garbage inside a well-formed gossip frame is ignored, not fatal.
        other = cc._connections[a.identity.endpoint_id]
        other.send_control(encode_control(Gossip(b"\x00\x01nonsense")))
        await cc.send_chat("still here")
        await wait_until(lambda: full_mesh([ca, cb, cc]), 8.0, "mesh restored")
