"""Deterministic timers for the simulated network."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


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
