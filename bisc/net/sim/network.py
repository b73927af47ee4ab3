"""The shared medium: addresses, link conditions, partitions and crashes."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass

from bisc.identity import EndpointId, Identity
from bisc.net.sim.conditions import JitterModel, LinkConditions
from bisc.net.sim.connection import SimConnection
from bisc.net.sim.endpoint import SimEndpoint
from bisc.net.sim.link import _Link
from bisc.net.sim.scheduler import _Scheduler
from bisc.net.transport import TransportError
from bisc.ticket import EndpointAddr

SIM_PORT = 4433


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
