"""A simulated path between two connection halves: reliable, ordered
segment delivery, retransmission while the path is down, and the idle
timeout that ends connections over a path that stays down."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from bisc.net.sim.conditions import MAX_RETRY_INTERVAL, REASON_LOST
from bisc.net.sim.scheduler import _Timer
from bisc.net.sim.segments import _Segment

if TYPE_CHECKING:
    from bisc.net.sim.connection import SimConnection
    from bisc.net.sim.network import SimNetwork


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
