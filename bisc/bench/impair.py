"""A loopback UDP relay that drops, delays and reorders datagrams, for benchmarks.

This machine's kernel has no netem qdisc, so impairment is done in user space:
a peer is told to send to the relay's address instead of the real one, and the
relay forwards each datagram after a random delay, or drops it. The decision
(drop? how late?) lives in `ImpairmentModel`, a pure class driven by a seeded
random.Random so tests can check it without sockets.

Each client address gets its own upstream socket, so the target sees one
distinct source per client and its replies can be routed back.
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass, field

Addr = tuple[str, int]

# Packets held for delayed delivery per direction; a 48 kbit/s call at 50
# packets/s with 100 ms of delay holds ~5, so this only bites on floods.
DEFAULT_CAPACITY = 1024


class Verdict(enum.Enum):
    FORWARD = "forward"
    DROP_LOSS = "drop_loss"
    DROP_FULL = "drop_full"


@dataclass
class DirectionStats:
    forwarded: int = 0
    dropped_loss: int = 0
    dropped_full: int = 0
    forwarded_bytes: int = 0  # UDP payload bytes forwarded (no IP/UDP headers)

    def as_dict(self) -> dict[str, int]:
        return {
            "forwarded": self.forwarded,
            "forwarded_bytes": self.forwarded_bytes,
            "dropped_loss": self.dropped_loss,
            "dropped_full": self.dropped_full,
        }


@dataclass
class ImpairmentModel:
    """Drop with probability `loss`; otherwise delay by delay_ms + uniform[0, jitter_ms].

    Independent per-packet delays reorder packets whenever the jitter exceeds
    their spacing, as netem does without its rate option.
    """

    loss: float = 0.0
    jitter_ms: float = 0.0
    delay_ms: float = 0.0
    seed: int = 1
    capacity: int = DEFAULT_CAPACITY
    # A bottleneck: packets leave one after another at rate_bps (None: unlimited), and one that would
    # wait more than max_queue_ms behind the others is dropped (a drop-tail router queue).
    rate_bps: float | None = None
    max_queue_ms: float = 200.0
    rng: random.Random = field(init=False, repr=False)
    _busy_until: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.set(self.loss, self.jitter_ms, self.delay_ms)
        self.rng = random.Random(self.seed)

    def set(self, loss: float, jitter_ms: float, delay_ms: float) -> None:
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss must be in [0, 1], got {loss}")
        if jitter_ms < 0 or delay_ms < 0:
            raise ValueError("jitter_ms and delay_ms must be >= 0")
        self.loss, self.jitter_ms, self.delay_ms = loss, jitter_ms, delay_ms

    def set_rate(self, rate_bps: float | None) -> None:
        if rate_bps is not None and rate_bps <= 0:
            raise ValueError(f"rate_bps must be positive or None, got {rate_bps}")
        self.rate_bps = rate_bps

    def decide(self, queued: int, size: int = 0, now: float = 0.0) -> tuple[Verdict, float]:
        """Verdict for one packet of `size` bytes at time `now` and its delay in seconds, given how
        many are already queued."""
        # Draw both numbers every time so a packet's fate does not depend on the queue state.
        drop = self.rng.random() < self.loss
        delay = (self.delay_ms + self.rng.uniform(0.0, self.jitter_ms)) / 1000.0
        if drop:
            return Verdict.DROP_LOSS, 0.0
        if queued >= self.capacity:
            return Verdict.DROP_FULL, 0.0
        if self.rate_bps is not None:
            start = max(now, self._busy_until)
            if start - now > self.max_queue_ms / 1000.0:
                return Verdict.DROP_FULL, 0.0
            self._busy_until = start + size * 8 / self.rate_bps
            delay += self._busy_until - now
        return Verdict.FORWARD, delay


class _Direction:
    """One way through the relay: a model, its counters and the packets in flight."""

    def __init__(self, model: ImpairmentModel) -> None:
        self.model = model
        self.stats = DirectionStats()
        self.pending: set[asyncio.TimerHandle] = set()

    def submit(self, loop: asyncio.AbstractEventLoop, send: _Sender, data: bytes, addr: Addr | None) -> None:
        verdict, delay = self.model.decide(len(self.pending), len(data), loop.time())
        if verdict is Verdict.DROP_LOSS:
            self.stats.dropped_loss += 1
        elif verdict is Verdict.DROP_FULL:
            self.stats.dropped_full += 1
        elif delay <= 0:
            self._deliver(None, send, data, addr)
        else:
            handle: asyncio.TimerHandle | None = None

            def fire() -> None:
                self._deliver(handle, send, data, addr)

            handle = loop.call_later(delay, fire)
            self.pending.add(handle)

    def _deliver(
        self, handle: asyncio.TimerHandle | None, send: _Sender, data: bytes, addr: Addr | None
    ) -> None:
        if handle is not None:
            self.pending.discard(handle)
        if send.closed:
            return
        send.sendto(data, addr)
        self.stats.forwarded += 1
        self.stats.forwarded_bytes += len(data)

    def cancel(self) -> None:
        for handle in self.pending:
            handle.cancel()
        self.pending.clear()


class _Sender:
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    @property
    def closed(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def sendto(self, data: bytes, addr: Addr | None) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, relay: ImpairedRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.relay._from_client(data, (addr[0], addr[1]))


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: ImpairedRelay, client: Addr) -> None:
        self.relay = relay
        self.client = client

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.relay._from_target(data, self.client)


class ImpairedRelay:
    """Forward client -> target and target -> client through independent impairments."""

    def __init__(
        self,
        target: Addr,
        loss: float = 0.05,
        jitter_ms: float = 30.0,
        delay_ms: float = 0.0,
        seed: int = 1,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.target = target
        # Different seeds per direction so the two ways are independent.
        self.up = _Direction(ImpairmentModel(loss, jitter_ms, delay_ms, 2 * seed, capacity))
        self.down = _Direction(ImpairmentModel(loss, jitter_ms, delay_ms, 2 * seed + 1, capacity))
        self._listen = _Sender()
        self._upstreams: dict[Addr, _Sender] = {}
        self._connecting: dict[Addr, list[bytes]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.addr: Addr = ("127.0.0.1", 0)

    async def start(self) -> ImpairedRelay:
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=("127.0.0.1", 0)
        )
        self._listen.transport = transport
        host, port = transport.get_extra_info("sockname")[:2]
        self.addr = (host, port)
        return self

    def set_impairment(
        self, loss: float | None = None, jitter_ms: float | None = None, delay_ms: float | None = None
    ) -> None:
        """Change the impairment of both directions from now on (None keeps a value)."""
        for d in (self.up, self.down):
            m = d.model
            m.set(
                m.loss if loss is None else loss,
                m.jitter_ms if jitter_ms is None else jitter_ms,
                m.delay_ms if delay_ms is None else delay_ms,
            )

    def set_rate(self, rate_bps: float | None) -> None:
        """Limit both directions to rate_bps (None: unlimited), from now on."""
        for d in (self.up, self.down):
            d.model.set_rate(rate_bps)

    def counters(self) -> dict[str, dict[str, int]]:
        return {"up": self.up.stats.as_dict(), "down": self.down.stats.as_dict()}

    @property
    def clients(self) -> list[Addr]:
        return list(self._upstreams)

    def _from_client(self, data: bytes, client: Addr) -> None:
        assert self._loop is not None
        upstream = self._upstreams.get(client)
        if upstream is None:
            # First datagram from this client: open its upstream socket, hold data meanwhile.
            waiting = self._connecting.get(client)
            if waiting is None:
                self._connecting[client] = [data]
                self._loop.create_task(self._open_upstream(client))
            else:
                waiting.append(data)
            return
        self.up.submit(self._loop, upstream, data, None)

    async def _open_upstream(self, client: Addr) -> None:
        assert self._loop is not None
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), local_addr=("127.0.0.1", 0), remote_addr=self.target
        )
        upstream = _Sender()
        upstream.transport = transport
        self._upstreams[client] = upstream
        for data in self._connecting.pop(client, []):
            self.up.submit(self._loop, upstream, data, None)

    def _from_target(self, data: bytes, client: Addr) -> None:
        assert self._loop is not None
        self.down.submit(self._loop, self._listen, data, client)

    def close(self) -> None:
        self.up.cancel()
        self.down.cancel()
        for upstream in self._upstreams.values():
            if upstream.transport is not None:
                upstream.transport.close()
        self._upstreams.clear()
        if self._listen.transport is not None:
            self._listen.transport.close()

    async def __aenter__(self) -> ImpairedRelay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()
