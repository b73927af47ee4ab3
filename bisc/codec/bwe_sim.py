"""A deterministic bottleneck link for the bandwidth estimator (tests and bench).

A video sender emits one frame every 1/fps seconds, split into packets of
`packet_size` bytes and sent as a burst, at the bitrate the estimator gives
(closed loop) or at a fixed schedule (`send_rate`, open loop). The packets
cross a FIFO link whose capacity may change over time: a packet starts
service when the link is free and takes size * 8 / capacity seconds, then
`prop_delay` more to arrive. A packet that would wait more than `queue_limit`
seconds is tail-dropped; `loss` more are dropped at random (seeded). Losses
are counted per `report_interval` of send time and reported `prop_delay`
after the interval ends. The estimator sees packets and reports in time
order, before each frame is sent, so the loop is causal.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

U32 = 0xFFFFFFFF
CLOCK = 90_000

Schedule = Callable[[float], float]  # time (s) -> bps
# ("packet", timestamp, arrival, size), ("loss", fraction, now), ("estimate", now), ("rtt", rtt)
Event = tuple[Any, ...]


class Estimator(Protocol):
    def on_packet(self, timestamp: int, arrival: float, size: int) -> None: ...
    def on_loss_report(self, fraction_lost: float, now: float) -> None: ...
    def on_rtt(self, rtt: float) -> None: ...
    def estimate(self, now: float) -> int: ...
    @property
    def state(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Sample:
    """One frame: when it was sent, the estimate then, the detector state and the bottleneck queue."""

    time: float
    estimate: int
    state: str
    send_rate: float
    queue_delay: float


def step(before: float, after: float, at: float) -> Schedule:
    """A capacity of `before` bps until time `at`, `after` from then on."""
    return lambda t: before if t < at else after


def simulate(
    bwe: Estimator,
    seconds: float,
    capacity: Schedule,
    *,
    fps: float = 30.0,
    prop_delay: float = 0.02,
    queue_limit: float = 0.5,
    loss: float = 0.0,
    seed: int = 1,
    report_interval: float = 0.5,
    send_rate: Schedule | None = None,
    packet_size: int = 1200,
    first_timestamp: int = 0,
    events: list[Event] | None = None,
) -> list[Sample]:
    """Run a call for `seconds`; one Sample per frame. `events` (if given) records every input to `bwe`."""
    rng = random.Random(seed)
    log: list[Event] = events if events is not None else []
    pending: deque[tuple[float, int, int]] = deque()  # (arrival, timestamp, size), in arrival order
    reports: deque[tuple[float, float]] = deque()  # (time, fraction lost)
    link_free = 0.0
    interval = 0
    sent = lost = 0
    samples: list[Sample] = []
    bwe.on_rtt(2.0 * prop_delay)
    log.append(("rtt", 2.0 * prop_delay))
    for k in range(int(seconds * fps)):
        now = k / fps
        while (interval + 1) * report_interval <= now:
            reports.append(((interval + 1) * report_interval + prop_delay, lost / sent if sent else 0.0))
            interval += 1
            sent = lost = 0
        _deliver(bwe, pending, reports, now, log)
        estimate = bwe.estimate(now)
        log.append(("estimate", now))
        rate = send_rate(now) if send_rate is not None else float(estimate)
        timestamp = (first_timestamp + int(k * CLOCK / fps)) & U32
        frame_bytes = max(1, int(rate / 8.0 / fps))
        count = -(-frame_bytes // packet_size)
        queue = max(0.0, link_free - now)
        for i in range(count):
            size = packet_size if i < count - 1 else frame_bytes - packet_size * (count - 1)
            sent += 1
            if link_free - now > queue_limit or (loss > 0.0 and rng.random() < loss):
                lost += 1
                continue
            start = max(now, link_free)
            link_free = start + size * 8.0 / capacity(start)
            pending.append((link_free + prop_delay, timestamp, size))
        samples.append(Sample(now, estimate, bwe.state, rate, queue))
    return samples


def _deliver(
    bwe: Estimator,
    pending: deque[tuple[float, int, int]],
    reports: deque[tuple[float, float]],
    now: float,
    log: list[Event],
) -> None:
    while True:
        next_packet = pending[0][0] if pending else math.inf
        next_report = reports[0][0] if reports else math.inf
        if min(next_packet, next_report) > now:
            return
        if next_packet <= next_report:
            arrival, timestamp, size = pending.popleft()
            bwe.on_packet(timestamp, arrival, size)
            log.append(("packet", timestamp, arrival, size))
        else:
            at, fraction = reports.popleft()
            bwe.on_loss_report(fraction, at)
            log.append(("loss", fraction, at))


def replay(bwe: Estimator, events: list[Event]) -> list[int]:
    """Feed recorded inputs again; the estimates the "estimate" events return."""
    out: list[int] = []
    for ev in events:
        kind = ev[0]
        if kind == "packet":
            bwe.on_packet(ev[1], ev[2], ev[3])
        elif kind == "estimate":
            out.append(bwe.estimate(ev[1]))
        elif kind == "loss":
            bwe.on_loss_report(ev[1], ev[2])
        else:
            bwe.on_rtt(ev[1])
    return out
