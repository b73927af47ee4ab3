"""One node's presence on a simulated network: dialing and accepting."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from bisc.identity import EndpointId
from bisc.net.sim.conditions import MAX_RETRY_INTERVAL, REASON_CRASHED, REASON_ENDPOINT_CLOSED
from bisc.net.transport import AuthenticationError, ConnectionHandler, Endpoint, TransportError
from bisc.ticket import EndpointAddr

if TYPE_CHECKING:
    from bisc.net.sim.connection import SimConnection
    from bisc.net.sim.network import SimNetwork

log = logging.getLogger(__name__)


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
