"""Bounded, deadline-aware datagram sending on top of aioquic.

aioquic keeps DATAGRAM frames waiting for congestion window in an unbounded
deque (`QuicConnection._datagrams_pending`) and sends them however late. This
keeps a deadline beside each queued datagram, refuses new ones beyond a bound,
and drops the stale ones at the head before each transmission.
"""

from __future__ import annotations

import math
from collections import deque

from aioquic.quic.connection import QuicConnection

MAX_PENDING_DATAGRAMS = 64  # aioquic's datagram queue is unbounded; refuse beyond this


class DatagramDeadlines:
    def __init__(self, quic: QuicConnection) -> None:
        self._quic = quic
        self._deadlines: deque[float] = deque()  # one per datagram in aioquic's queue
        self.stale = 0

    @property
    def full(self) -> bool:
        return len(self._quic._datagrams_pending) >= MAX_PENDING_DATAGRAMS

    def queue(self, data: bytes, deadline: float | None) -> None:
        self._sync()
        self._deadlines.append(math.inf if deadline is None else deadline)
        self._quic.send_datagram_frame(data)

    def _sync(self) -> None:
        """aioquic pops sent datagrams off the left of its queue: forget their deadlines."""
        for _ in range(len(self._deadlines) - len(self._quic._datagrams_pending)):
            self._deadlines.popleft()

    def drop_stale(self, now: float) -> int:
        """Drop queued datagrams (oldest first) whose deadline has passed; how many."""
        self._sync()
        pending = self._quic._datagrams_pending
        dropped = 0
        while self._deadlines and pending and self._deadlines[0] < now:
            self._deadlines.popleft()
            pending.popleft()
            dropped += 1
        self.stale += dropped
        return dropped
