"""An in-memory simulated network implementing the Transport interface.

`SimNetwork` is the shared medium; `await network.endpoint(identity)` gives a
`SimEndpoint` with a fake address (10.x.y.z:4433, only a key in the
network's table: nothing here touches a socket). Everything runs on the real
asyncio event loop, so the same application code runs on this transport as on
the aioquic one; delays are timers on that loop.

What is modelled
- Datagrams: each is delayed by latency + jitter (uniform or gaussian), may be
  lost, and with probability `reorder` gets an extra delay; reordering follows
  from the differing delays. At most MAX_IN_FLIGHT_DATAGRAMS are in flight per
  connection; more are refused (False, counted) to keep memory bounded.
- Control frames and streams: reliable and ordered, like QUIC streams. A lost
  segment arrives one retransmission timeout (3 x latency + 50 ms) later and
  holds back everything sent after it. While the path is down (partition,
  crashed peer) segments wait and are retried with back-off.
- Partitions and crashes: connections over a path that stays down for
  `idle_timeout` seconds close on both sides with reason "lost"; a path that
  comes back sooner keeps its connections (QUIC keep-alives would).
- A graceful close reaches the peer one latency later, after anything sent
  before it.

All randomness (loss, jitter, connection bindings) comes from one
`random.Random(seed)`. Events due at the same moment run in the order they
were scheduled, and the delays of everything sent within one event-loop
iteration are measured from the same instant, so a seeded run delivers the
same sequence as long as the application sends the same things in the same
loop iterations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import ipaddress
import itertools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from bisc.identity import EndpointId, Identity
from bisc.net.transport import (
    MAX_CONTROL_FRAME,
    AuthenticationError,
    Connection,
    ConnectionHandler,
    Endpoint,
    FrameTooLargeError,
    Stream,
    TransportError,
    control_queue,
)
from bisc.ticket import EndpointAddr

log = logging.getLogger(__name__)

SIM_PORT = 4433
MAX_IN_FLIGHT_DATAGRAMS = 1024  # per connection and direction
STREAM_WINDOW = 256 * 1024  # bytes a stream receiver buffers (flow-control window)
STREAM_SEGMENT = 16 * 1024  # largest stream data segment
STREAM_HIGH_WATER = 64 * 1024  # drain() waits while more than this is unsent
MAX_RETRY_INTERVAL = 1.0  # cap of the retransmission back-off while a path is down
RTO_FLOOR = 0.05

JitterModel = Literal["uniform", "gaussian"]

# Reasons a connection closes with when the simulation (not the application) ends it.
REASON_LOST = "lost"
REASON_CRASHED = "crashed"
REASON_ENDPOINT_CLOSED = "endpoint closed"
REASON_CONTROL_OVERFLOW = "control queue overflow"


@dataclass(frozen=True)
class LinkConditions:
    """How one path behaves; one-way latency and jitter in seconds."""

    latency: float = 0.01
    jitter: float = 0.0
    loss: float = 0.0
    reorder: float = 0.0

    def __post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must not be negative")
        for name in ("loss", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")

    @property
    def rto(self) -> float:
        """Retransmission timeout: how much later a lost reliable segment arrives."""
        return 3 * self.latency + RTO_FLOOR


@dataclass
class SimStats:
    """Counters over the whole simulated network."""

    datagrams_sent: int = 0
    datagrams_delivered: int = 0
    datagrams_lost: int = 0  # dropped by the random loss model
    datagrams_blocked: int = 0  # dropped because the path was down or the receiver closed
    segments_sent: int = 0
    segments_retransmitted: int = 0  # reliable segments delayed by a simulated loss
    connections_opened: int = 0
    connections_lost: int = 0


# -- reliable segments --------------------------------------------------------


@dataclass(slots=True)
class _Control:
    frame: bytes


@dataclass(slots=True)
class _Close:
    reason: str


@dataclass(slots=True)
class _StreamOpen:
    sid: int


@dataclass(slots=True)
class _StreamData:
    sid: int
    data: bytes


@dataclass(slots=True)
class _StreamFin:
    sid: int


@dataclass(slots=True)
class _StreamReset:
    sid: int


@dataclass(slots=True)
class _Credit:
    sid: int
    amount: int


_Segment = _Control | _Close | _StreamOpen | _StreamData | _StreamFin | _StreamReset | _Credit


# -- scheduling ---------------------------------------------------------------


class _Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Scheduler:
    """Timers ordered by (time, scheduling order) behind one loop timer.

    asyncio's own timer heap does not keep equal deadlines in FIFO order, and
    its clock moves between two sends of one burst; both would make seeded
    runs differ. Here "now" is the due time of the event being processed, or
    else one reading per loop iteration.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heap: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._handle_when = 0.0
        self._now: float | None = None  # virtual time while processing events
        self._tick: float | None = None  # cached loop time for this iteration

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def now(self) -> float:
        if self._now is not None:
            return self._now
        if self._tick is None:
            self._tick = self.loop.time()
            self.loop.call_soon(self._clear_tick)
        return self._tick

    def _clear_tick(self) -> None:
        self._tick = None

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        return self.call_at(self.now() + max(delay, 0.0), callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if self._handle is None or when < self._handle_when:
            self._arm(when)
        return timer

    def sleep(self, delay: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        self.call_later(delay, wake)
        return future

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle_when = when
        self._handle = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        horizon = max(self.loop.time(), self._handle_when)
        heap = self._heap
        try:
            while heap and heap[0][0] <= horizon:
                when, _, timer = heapq.heappop(heap)
                if timer.cancelled:
                    continue
                self._now = when
                try:
                    timer.callback()
                except Exception:
                    log.exception("simulated network event failed")
        finally:
            self._now = None
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0][0])

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._heap.clear()


# -- the network --------------------------------------------------------------


class SimNetwork:
    """The shared medium of a simulation: addresses, link conditions, faults."""

    def __init__(
        self,
        seed: int,
        latency: float = 0.01,
        jitter: float = 0.0,
        loss: float = 0.0,
        reorder: float = 0.0,
        max_datagram_size: int = 1200,
        *,
        idle_timeout: float = 10.0,
        jitter_model: JitterModel = "uniform",
    ) -> None:
        if max_datagram_size < 2:
            raise ValueError("max_datagram_size must be at least 2")
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if jitter_model not in ("uniform", "gaussian"):
            raise ValueError(f"unknown jitter model {jitter_model!r}")
        self.rng = random.Random(seed)
        self.max_datagram_size = max_datagram_size
        self.idle_timeout = idle_timeout
        self.jitter_model: JitterModel = jitter_model
        self.stats = SimStats()
        self._defaults = LinkConditions(latency, jitter, loss, reorder)
        self._overrides: dict[frozenset[EndpointId], dict[str, float]] = {}
        self._partitions: list[tuple[frozenset[EndpointId], frozenset[EndpointId]]] = []
        self._scheduler = _Scheduler()
        self._by_addr: dict[tuple[ipaddress.IPv4Address, int], SimEndpoint] = {}
        self._live: dict[EndpointId, SimEndpoint] = {}
        self._endpoints: list[SimEndpoint] = []
        self._links: dict[_Link, None] = {}  # insertion-ordered, for determinism
        self._host_counter = itertools.count(1)
        self._conn_counter = itertools.count(1)

    # -- endpoints ------------------------------------------------------------
    async def endpoint(self, identity: Identity | EndpointId) -> SimEndpoint:
        """A new endpoint on this network with a fresh fake address."""
        endpoint_id = identity.endpoint_id if isinstance(identity, Identity) else identity
        if endpoint_id in self._live:
            raise TransportError(f"endpoint {endpoint_id.short()} is already on the network")
        host = next(self._host_counter)
        if host >= 1 << 24:
            raise TransportError("the simulated address space is exhausted")
        ip = ipaddress.IPv4Address((10 << 24) | host)
        endpoint = SimEndpoint(self, endpoint_id, ip, SIM_PORT)
        self._by_addr[(ip, SIM_PORT)] = endpoint
        self._live[endpoint_id] = endpoint
        self._endpoints.append(endpoint)
        return endpoint

    def endpoints(self) -> list[SimEndpoint]:
        """Endpoints that are up (neither closed nor crashed)."""
        return list(self._live.values())

    def _resolve(self, addr: EndpointAddr) -> SimEndpoint | None:
        """The endpoint at one of addr's addresses (a crashed one counts: its
        address stays silent), or by id when addr has no direct address."""
        for ip, port in addr.addrs:
            if isinstance(ip, ipaddress.IPv4Address):
                endpoint = self._by_addr.get((ip, port))
                if endpoint is not None:
                    return endpoint
        if not addr.addrs:
            return self._live.get(addr.endpoint_id)
        return None

    def _forget(self, endpoint: SimEndpoint) -> None:
        self._by_addr.pop((endpoint.ip, endpoint.port), None)
        if self._live.get(endpoint.endpoint_id) is endpoint:
            del self._live[endpoint.endpoint_id]

    # -- conditions -----------------------------------------------------------
    @property
    def conditions(self) -> LinkConditions:
        return self._defaults

    def set_conditions(
        self,
        *,
        latency: float | None = None,
        jitter: float | None = None,
        loss: float | None = None,
        reorder: float | None = None,
    ) -> None:
        """Change the default link conditions, effective for what is sent next."""
        changes = _changes(latency=latency, jitter=jitter, loss=loss, reorder=reorder)
        self._defaults = dataclasses.replace(self._defaults, **changes)
        self._refresh_links()

    def set_link(
        self,
        a: EndpointId,
        b: EndpointId,
        *,
        latency: float | None = None,
        jitter: float | None = None,
        loss: float | None = None,
        reorder: float | None = None,
    ) -> None:
        """Override conditions of the path between a and b (both directions)."""
        changes = _changes(latency=latency, jitter=jitter, loss=loss, reorder=reorder)
        merged = {**self._overrides.get(frozenset((a, b)), {}), **changes}
        dataclasses.replace(self._defaults, **merged)  # validate
        self._overrides[frozenset((a, b))] = merged
        self._refresh_links()

    def clear_link(self, a: EndpointId, b: EndpointId) -> None:
        self._overrides.pop(frozenset((a, b)), None)
        self._refresh_links()

    def link_conditions(self, a: EndpointId, b: EndpointId) -> LinkConditions:
        overrides = self._overrides.get(frozenset((a, b)))
        if not overrides:
            return self._defaults
        return dataclasses.replace(self._defaults, **overrides)

    def _refresh_links(self) -> None:
        for link in self._links:
            link.refresh_conditions()

    # -- faults ---------------------------------------------------------------
    def partition(self, group_a: Iterable[EndpointId], group_b: Iterable[EndpointId]) -> None:
        """Drop everything between group_a and group_b until heal()."""
        a, b = frozenset(group_a), frozenset(group_b)
        if a & b:
            raise ValueError("an endpoint cannot be on both sides of a partition")
        self._partitions.append((a, b))
        self._reevaluate()

    def heal(self) -> None:
        """Remove every partition."""
        self._partitions.clear()
        self._reevaluate()

    def crash(self, endpoint_id: EndpointId) -> None:
        """The endpoint vanishes without closing anything; its peers notice
        after the idle timeout and dialing its address times out."""
        endpoint = self._live.get(endpoint_id)
        if endpoint is None:
            raise KeyError(f"no live endpoint {endpoint_id.short()}")
        endpoint._crash()
        if self._live.get(endpoint_id) is endpoint:
            del self._live[endpoint_id]
        self._reevaluate()

    def is_partitioned(self, a: EndpointId, b: EndpointId) -> bool:
        return any((a in x and b in y) or (a in y and b in x) for x, y in self._partitions)

    def _path_up(self, a: SimEndpoint, b: SimEndpoint) -> bool:
        if a.crashed or b.crashed:
            return False
        if not self._partitions:
            return True
        return not self.is_partitioned(a.endpoint_id, b.endpoint_id)

    def _reevaluate(self) -> None:
        for link in list(self._links):
            link.check_path()

    # -- datagrams ------------------------------------------------------------
    def _jitter(self, conditions: LinkConditions) -> float:
        if self.jitter_model == "gaussian":
            return abs(self.rng.gauss(0.0, conditions.jitter))
        return self.rng.random() * conditions.jitter

    def _transmit_datagram(self, link: _Link, src: SimConnection, data: bytes) -> None:
        conditions = link.conditions
        rng = self.rng
        # Always the same number of draws per datagram, so one change in
        # conditions does not shift every later random choice.
        lost = rng.random() < conditions.loss
        delay = conditions.latency + self._jitter(conditions)
        reordered = rng.random() < conditions.reorder
        extra = rng.random()
        self.stats.datagrams_sent += 1
        if lost:
            self.stats.datagrams_lost += 1
            return
        dst = link.other(src)
        if dst.is_closed or not self._path_up(src.endpoint, dst.endpoint):
            self.stats.datagrams_blocked += 1
            return
        if reordered:
            delay += conditions.latency + extra * max(conditions.latency, conditions.jitter, 0.001)
        src._datagrams_in_flight += 1

        def deliver() -> None:
            src._datagrams_in_flight -= 1
            if dst.is_closed or not self._path_up(src.endpoint, dst.endpoint):
                self.stats.datagrams_blocked += 1
                return
            self.stats.datagrams_delivered += 1
            dst._dispatch_datagram(data)

        self._scheduler.call_later(delay, deliver)

    # -- connections ----------------------------------------------------------
    def _open_link(self, dialer: SimEndpoint, acceptor: SimEndpoint) -> _Link:
        binding = self.rng.randbytes(32)
        number = next(self._conn_counter)
        near = SimConnection(dialer, acceptor.endpoint_id, acceptor.local_addr(), binding, True, number)
        far = SimConnection(acceptor, dialer.endpoint_id, dialer.local_addr(), binding, False, number)
        link = _Link(self, near, far)
        self._links[link] = None
        self.stats.connections_opened += 1
        dialer._connections[near] = None
        acceptor._connections[far] = None
        return link

    def _link_done(self, link: _Link) -> None:
        self._links.pop(link, None)

    async def close(self) -> None:
        """Close every endpoint and stop the network's timers."""
        for endpoint in list(self._endpoints):
            await endpoint.close()
        self._scheduler.close()


def _changes(**values: float | None) -> dict[str, float]:
    return {name: value for name, value in values.items() if value is not None}


class _Pipe:
    """One direction of a link's reliable, ordered segment delivery."""

    def __init__(self, link: _Link, src: SimConnection, dst: SimConnection) -> None:
        self.link = link
        self.src = src
        self.dst = dst
        self._queue: deque[tuple[float, _Segment]] = deque()
        self._last_at = 0.0
        self._timer: _Timer | None = None
        self._backoff = 0.0

    def push(self, segment: _Segment, *, lossy: bool = True) -> None:
        network = self.link.network
        conditions = self.link.conditions
        delay = conditions.latency + network._jitter(conditions)
        if lossy and network.rng.random() < conditions.loss:
            delay += conditions.rto
            network.stats.segments_retransmitted += 1
        network.stats.segments_sent += 1
        at = max(network._scheduler.now() + delay, self._last_at)
        self._last_at = at
        self._queue.append((at, segment))
        if self._timer is None:
            self._timer = network._scheduler.call_at(at, self._run)

    def _run(self) -> None:
        self._timer = None
        network = self.link.network
        scheduler = network._scheduler
        now = scheduler.now()
        queue = self._queue
        while queue and queue[0][0] <= now:
            if self.dst.is_closed:
                queue.clear()
                return
            if not network._path_up(self.src.endpoint, self.dst.endpoint):
                # Retransmit with back-off until the path returns or the
                # connection times out.
                conditions = self.link.conditions
                self._backoff = min(max(self._backoff * 2, conditions.rto), MAX_RETRY_INTERVAL)
                retry_at = now + self._backoff
                self._last_at = max(self._last_at, retry_at)
                self._timer = scheduler.call_at(retry_at, self._run)
                return
            self._backoff = 0.0
            _, segment = queue.popleft()
            self.dst._on_segment(segment)
        if self.dst.is_closed:
            queue.clear()
        elif queue:
            self._timer = scheduler.call_at(queue[0][0], self._run)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


class _Link:
    """Two connection halves and the simulated path between them."""

    def __init__(self, network: SimNetwork, near: SimConnection, far: SimConnection) -> None:
        self.network = network
        self.near = near
        self.far = far
        self.conditions = network.link_conditions(near.endpoint.endpoint_id, far.endpoint.endpoint_id)
        self.pipes = {id(near): _Pipe(self, near, far), id(far): _Pipe(self, far, near)}
        self._idle_timer: _Timer | None = None
        near._link = far._link = self
        self.refresh_conditions()
        self.check_path()

    def other(self, conn: SimConnection) -> SimConnection:
        return self.far if conn is self.near else self.near

    def pipe_from(self, conn: SimConnection) -> _Pipe:
        return self.pipes[id(conn)]

    def refresh_conditions(self) -> None:
        self.conditions = self.network.link_conditions(
            self.near.endpoint.endpoint_id, self.far.endpoint.endpoint_id
        )
        self.near.stats.rtt = self.far.stats.rtt = 2 * self.conditions.latency

    def check_path(self) -> None:
        """Start the idle timer when the path goes down, stop it when it returns."""
        up = self.network._path_up(self.near.endpoint, self.far.endpoint)
        if up and self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        elif not up and self._idle_timer is None:
            self._idle_timer = self.network._scheduler.call_later(self.network.idle_timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._idle_timer = None
        lost = False
        for conn in (self.near, self.far):
            if not conn.is_closed:
                lost = True
                conn._close_local(REASON_LOST)
        if lost:
            self.network.stats.connections_lost += 1
        self.finish()

    def side_closed(self) -> None:
        if self.near.is_closed and self.far.is_closed:
            self.finish()

    def finish(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        for pipe in self.pipes.values():
            if pipe.dst.is_closed:
                pipe.cancel()
        self.network._link_done(self)


# -- endpoint -----------------------------------------------------------------


class SimEndpoint(Endpoint):
    """One node's presence on a SimNetwork."""

    def __init__(
        self, network: SimNetwork, endpoint_id: EndpointId, ip: ipaddress.IPv4Address, port: int
    ) -> None:
        self.network = network
        self.endpoint_id = endpoint_id
        self.ip = ip
        self.port = port
        self.crashed = False
        self.closed = False
        self._handler: ConnectionHandler | None = None
        self._connections: dict[SimConnection, None] = {}  # insertion-ordered
        self._tasks: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"<SimEndpoint {self.endpoint_id.short()} {self.ip}:{self.port}>"

    def local_addr(self) -> EndpointAddr:
        return EndpointAddr(self.endpoint_id, ((self.ip, self.port),))

    @property
    def connections(self) -> list[SimConnection]:
        """Open connections of this endpoint."""
        return [conn for conn in self._connections if not conn.is_closed]

    def set_connection_handler(self, handler: ConnectionHandler) -> None:
        self._handler = handler

    def _check_up(self) -> None:
        if self.crashed:
            raise TransportError("endpoint has crashed")
        if self.closed:
            raise TransportError("endpoint is closed")

    async def connect(self, addr: EndpointAddr, timeout: float = 10.0) -> SimConnection:
        self._check_up()
        target = self.network._resolve(addr)
        if target is None:
            raise TransportError(f"nothing is listening at {_describe(addr)}")
        if target is self:
            raise TransportError("cannot dial this endpoint itself")
        try:
            return await asyncio.wait_for(self._handshake(target, addr), timeout)
        except TimeoutError:
            raise TransportError(f"connecting to {_describe(addr)} timed out after {timeout} s") from None

    async def _handshake(self, target: SimEndpoint, addr: EndpointAddr) -> SimConnection:
        network = self.network
        backoff = 0.0
        while True:
            conditions = network.link_conditions(self.endpoint_id, target.endpoint_id)
            delay = 2 * conditions.latency
            for _ in range(2):  # the Initial flight each way may be lost
                if network.rng.random() < conditions.loss:
                    delay += conditions.rto
            await network._scheduler.sleep(delay)
            self._check_up()
            if target.closed:
                raise TransportError(f"{_describe(addr)} closed the connection attempt")
            if network._path_up(self, target):
                break
            backoff = min(max(2 * backoff, conditions.rto), MAX_RETRY_INTERVAL)
            await network._scheduler.sleep(backoff)
        if target.endpoint_id != addr.endpoint_id:
            raise AuthenticationError(
                f"peer at {_describe(addr)} is {target.endpoint_id.short()}, "
                f"expected {addr.endpoint_id.short()}"
            )
        link = network._open_link(self, target)
        target._accept(link.far)
        return link.near

    def _accept(self, conn: SimConnection) -> None:
        handler = self._handler
        if handler is None:
            log.debug("%r: inbound connection from %s with no handler", self, conn.remote_id.short())
            return
        self._spawn(handler(conn), f"connection handler for {conn.remote_id.short()}")

    def _spawn(self, awaitable: Awaitable[None], what: str) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)

        def done(finished: asyncio.Future[None]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("%s failed", what, exc_info=finished.exception())

        task.add_done_callback(done)

    def _crash(self) -> None:
        # The address stays in the network's table, silent: dialing it times out.
        self.crashed = True
        for conn in list(self._connections):
            conn._close_local(REASON_CRASHED)
        self._connections.clear()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for conn in list(self._connections):
            conn.close(REASON_ENDPOINT_CLOSED)
        self._connections.clear()
        self.network._forget(self)


def _describe(addr: EndpointAddr) -> str:
    where = ", ".join(f"{ip}:{port}" for ip, port in addr.addrs) or "(no address)"
    return f"{addr.endpoint_id.short()} at {where}"


# -- connection ---------------------------------------------------------------


class SimConnection(Connection):
    """One side of a simulated connection."""

    _link: _Link

    def __init__(
        self,
        endpoint: SimEndpoint,
        remote_id: EndpointId,
        remote_addr: EndpointAddr,
        binding: bytes,
        initiator: bool,
        number: int,
    ) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.remote_id = remote_id
        self.remote_addr = remote_addr
        self.binding = binding
        self.initiator = initiator
        self.number = number
        self._closed = False
        self._reason = ""
        self._closed_event = asyncio.Event()
        self._control = control_queue()
        self._streams: dict[int, SimStream] = {}
        self._next_sid = 0 if initiator else 1
        self._datagrams_in_flight = 0

    def __repr__(self) -> str:
        side = "dialer" if self.initiator else "acceptor"
        return (
            f"<SimConnection #{self.number} {side} {self.endpoint.endpoint_id.short()}"
            f" -> {self.remote_id.short()}{' closed' if self._closed else ''}>"
        )

    # -- datagrams ------------------------------------------------------------
    @property
    def max_datagram_size(self) -> int:
        return self.endpoint.network.max_datagram_size

    def send_datagram(self, data: bytes) -> bool:
        if (
            self._closed
            or len(data) > self.endpoint.network.max_datagram_size
            or self._datagrams_in_flight >= MAX_IN_FLIGHT_DATAGRAMS
        ):
            self.stats.datagrams_dropped += 1
            return False
        self.stats.datagrams_sent += 1
        self.endpoint.network._transmit_datagram(self._link, self, bytes(data))
        return True

    # -- control frames -------------------------------------------------------
    def send_control(self, frame: bytes) -> None:
        if len(frame) > MAX_CONTROL_FRAME:
            raise FrameTooLargeError(f"control frame of {len(frame)} bytes exceeds {MAX_CONTROL_FRAME}")
        self._check_open()
        self.stats.control_frames_sent += 1
        self._push(_Control(bytes(frame)))

    async def recv_control(self) -> bytes:
        while True:
            if self._closed and self._control.empty():
                raise TransportError(f"connection closed: {self._reason}")
            item = await self._control.get()
            if item is not None:
                return item
            # the close sentinel: leave one for any other waiter
            if self._control.empty():
                self._control.put_nowait(None)
            raise TransportError(f"connection closed: {self._reason}")

    # -- streams --------------------------------------------------------------
    async def open_stream(self) -> SimStream:
        self._check_open()
        sid = self._next_sid
        self._next_sid += 4
        stream = SimStream(self, sid)
        self._streams[sid] = stream
        self._push(_StreamOpen(sid))
        return stream

    # -- lifecycle ------------------------------------------------------------
    def close(self, reason: str = "") -> None:
        if self._closed:
            return
        self._push(_Close(reason), lossy=False)
        self._close_local(reason)

    async def wait_closed(self) -> str:
        await self._closed_event.wait()
        return self._reason

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def close_reason(self) -> str | None:
        return self._reason if self._closed else None

    # -- internals ------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"connection closed: {self._reason}")

    def _push(self, segment: _Segment, *, lossy: bool = True) -> None:
        self._link.pipe_from(self).push(segment, lossy=lossy)

    def _close_local(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._reason = reason
        self._closed_event.set()
        if not self._control.full():
            self._control.put_nowait(None)
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            stream._on_connection_closed(reason)
        self.endpoint._connections.pop(self, None)
        self._link.side_closed()

    def _forget_stream(self, stream: SimStream) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]

    def _on_segment(self, segment: _Segment) -> None:
        if self._closed:
            return
        match segment:
            case _Control(frame):
                self.stats.control_frames_received += 1
                try:
                    self._control.put_nowait(frame)
                except asyncio.QueueFull:
                    log.warning("%r: control queue overflow", self)
                    self.close(REASON_CONTROL_OVERFLOW)
            case _StreamData(sid, data):
                stream = self._streams.get(sid)
                if stream is not None:
                    stream._on_data(data)
            case _Credit(sid, amount):
                stream = self._streams.get(sid)
                if stream is not None:
                    stream._on_credit(amount)
            case _StreamFin(sid):
                stream = self._streams.get(sid)
                if stream is not None:
                    stream._on_fin()
            case _StreamReset(sid):
                stream = self._streams.pop(sid, None)
                if stream is not None:
                    stream._on_reset()
            case _StreamOpen(sid):
                self._on_stream_open(sid)
            case _Close(reason):
                self._close_local(reason)

    def _on_stream_open(self, sid: int) -> None:
        stream = SimStream(self, sid)
        self._streams[sid] = stream
        handler = self._stream_handler
        if handler is None:
            log.debug("%r: peer opened stream %d with no stream handler; resetting", self, sid)
            stream.reset()
            return
        self.endpoint._spawn(handler(stream), f"stream handler for stream {sid}")


# -- streams ------------------------------------------------------------------


class SimStream(Stream):
    """A reliable bidirectional stream with a flow-control window."""

    def __init__(self, conn: SimConnection, stream_id: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        # receiving
        self._recv = bytearray()
        self._eof = False
        self._unreported = 0
        self._read_error: TransportError | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        # sending
        self._send = bytearray()
        self._credit = STREAM_WINDOW
        self._fin_pending = False
        self._fin_sent = False
        self._write_error: TransportError | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return f"<SimStream {self.stream_id} of {self._conn!r}>"

    # -- reading --------------------------------------------------------------
    async def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""
        if n < 0:
            parts: list[bytes] = []
            while True:
                block = await self.read(STREAM_WINDOW)
                if not block:
                    return b"".join(parts)
                parts.append(block)
        while not self._recv and not self._eof:
            if self._read_error is not None:
                raise self._read_error
            self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        if self._read_error is not None:
            raise self._read_error
        data = bytes(self._recv[:n])
        del self._recv[:n]
        self._consumed(len(data))
        return data

    async def readexactly(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        buffer = bytearray()
        while len(buffer) < n:
            block = await self.read(n - len(buffer))
            if not block:
                raise asyncio.IncompleteReadError(bytes(buffer), n)
            buffer += block
        return bytes(buffer)

    def at_eof(self) -> bool:
        return self._eof and not self._recv

    def _consumed(self, amount: int) -> None:
        if self._eof or not amount:
            return
        self._unreported += amount
        if (self._unreported >= STREAM_SEGMENT or not self._recv) and not self._conn.is_closed:
            self._conn._push(_Credit(self.stream_id, self._unreported))
            self._unreported = 0

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_data(self, data: bytes) -> None:
        if self._eof or self._read_error is not None:
            return
        self._recv += data
        self._wake_reader()

    def _on_fin(self) -> None:
        self._eof = True
        self._wake_reader()
        self._maybe_done()

    # -- writing --------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._write_error is not None:
            raise self._write_error
        if self._fin_pending:
            raise TransportError("stream is finished; no more writes")
        if not data:
            return
        self._send += data
        self._pump()

    async def drain(self) -> None:
        while True:
            if self._write_error is not None:
                raise self._write_error
            if len(self._send) <= STREAM_HIGH_WATER:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def finish(self) -> None:
        if self._write_error is not None or self._fin_pending:
            return
        self._fin_pending = True
        self._pump()

    def reset(self) -> None:
        error = TransportError("stream reset")
        if self._read_error is None:
            self._read_error = error
        if self._write_error is None:
            self._write_error = error
        self._send.clear()
        self._recv.clear()
        conn = self._conn
        if conn._streams.get(self.stream_id) is self:
            conn._forget_stream(self)
            if not conn.is_closed:
                conn._push(_StreamReset(self.stream_id))
        self._wake_all()

    def _pump(self) -> None:
        conn = self._conn
        while self._send and self._credit > 0 and not conn.is_closed:
            size = min(len(self._send), self._credit, STREAM_SEGMENT)
            chunk = bytes(self._send[:size])
            del self._send[:size]
            self._credit -= size
            conn._push(_StreamData(self.stream_id, chunk))
        if self._fin_pending and not self._fin_sent and not self._send and not conn.is_closed:
            self._fin_sent = True
            conn._push(_StreamFin(self.stream_id))
            self._maybe_done()
        if len(self._send) <= STREAM_HIGH_WATER:
            self._wake_drainers()

    def _on_credit(self, amount: int) -> None:
        self._credit += amount
        self._pump()

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- lifecycle ------------------------------------------------------------
    def _maybe_done(self) -> None:
        if self._fin_sent and self._eof:
            self._conn._forget_stream(self)

    def _on_reset(self) -> None:
        error = TransportError("stream reset by peer")
        self._read_error = self._read_error or error
        self._write_error = self._write_error or error
        self._send.clear()
        self._recv.clear()
        self._wake_all()

    def _on_connection_closed(self, reason: str) -> None:
        error = TransportError(f"connection closed: {reason}")
        if not self._eof and self._read_error is None:
            self._read_error = error
        if self._write_error is None and not self._fin_sent:
            self._write_error = error
        self._send.clear()
        self._wake_all()

    def _wake_all(self) -> None:
        self._wake_reader()
        self._wake_drainers()
