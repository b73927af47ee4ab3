"""Bandwidth estimator: every implementation against the reference (every output
after every input), and the behaviour a call needs over a simulated bottleneck
(bisc.codec.bwe_sim): ramp up on a free path, back off on a queue, follow a
capacity drop, cut on heavy loss only, plus hostile input and bounded memory."""

from __future__ import annotations

import math
import random
import tracemalloc
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bisc.codec import bwe_sim
from bisc.codec.bwe_sim import Event, Sample

U32 = 0xFFFFFFFF
TICKS = 3000  # 90 kHz clock at 30 fps

equivalence = pytest.mark.equivalence


def _snapshot(b: Any) -> tuple[Any, ...]:
    return (b.stats(), b.state, b.rate_control_state, b.delay_based, b.loss_based, b.rtt)


def _apply(b: Any, ev: Event) -> Any:
    """One input; returns its result, or the exception type it raised."""
    try:
        kind = ev[0]
        if kind == "packet":
            return b.on_packet(ev[1], ev[2], ev[3])
        if kind == "loss":
            return b.on_loss_report(ev[1], ev[2])
        if kind == "rtt":
            return b.on_rtt(ev[1])
        if kind == "incoming":
            return b.incoming_rate(ev[1])
        return b.estimate(ev[1])
    except (ValueError, TypeError) as exc:
        return type(exc)


# -- equivalence --------------------------------------------------------------


def _trace(seed: int, *, packets: int, hostile: float, loss_reports: bool) -> list[Event]:
    """Frames of 1..8 packets over a path whose queue grows, drains and jitters, with
    reordering, stream restarts, timestamp jumps, backwards clocks and bad values."""
    rng = random.Random(seed)
    ts = rng.choice([0, U32 - 40 * TICKS, rng.randrange(U32 + 1)])
    now = rng.uniform(-5.0, 1e5)
    queue = 0.0
    last = now
    slope = rng.choice([0.0, 0.3, -0.2, 1.0])
    events: list[Event] = []
    n = 0
    while n < packets:
        if rng.random() < 0.02:
            slope = rng.choice([0.0, 0.5, -0.5, 2.0, 0.1])
        queue = max(0.0, queue + slope * 0.033 + rng.uniform(-0.004, 0.004))
        base = last = max(last, now + queue)  # a FIFO path: arrivals in order
        for _ in range(rng.randint(1, 8)):
            last += rng.uniform(0.0, 0.003)
            events.append(("packet", ts, last, rng.randrange(50, 1201)))
            n += 1
        if rng.random() < 0.05:  # a reordered packet of an older frame
            events.append(("packet", (ts - TICKS * rng.randint(1, 3)) & U32, base + 0.001, 300))
        if loss_reports and rng.random() < 0.3:
            events.append(("loss", rng.choice([0.0, 0.01, 0.05, 0.15, 0.5, 1.0, rng.random()]), base))
        if rng.random() < 0.3:
            events.append(("estimate", base + rng.uniform(-0.01, 0.05)))
        if rng.random() < 0.05:
            events.append(("rtt", rng.choice([0.0, 0.005, 0.05, 0.3, 1.0])))
        if rng.random() < 0.05:
            events.append(("incoming", base))
        if rng.random() < hostile:
            events.append(
                rng.choice(
                    [
                        ("packet", rng.randrange(U32 + 1), base, 100),  # a timestamp jump
                        ("packet", ts, base - rng.uniform(0.001, 10.0), 100),  # the clock going backwards
                        ("packet", ts, math.nan, 100),
                        ("packet", ts, math.inf, 100),
                        ("packet", ts, base, -1),
                        ("packet", -1, base, 100),
                        ("packet", ts, 2e9, 100),
                        ("loss", math.nan, base),
                        ("loss", 1.5, base),
                        ("loss", 0.2, base - 5.0),
                        ("estimate", math.nan),
                        ("estimate", base - 3.0),
                        ("rtt", -1.0),
                        ("rtt", math.inf),
                    ]
                )
            )
        if rng.random() < 0.01:  # the sender restarts, or pauses longer than the stream timeout
            ts = rng.randrange(U32 + 1)
            now += rng.choice([0.0, 4.0])
        ts = (ts + TICKS * rng.choice([1, 1, 1, 2])) & U32
        now += 1.0 / 30.0
    return events


def _compare(ours: Any, ref: Any, events: list[Event]) -> None:
    for ev in events:
        assert _apply(ours, ev) == _apply(ref, ev), ev
        assert _snapshot(ours) == _snapshot(ref), ev


KWARGS = [
    {},
    {"min_bitrate": 50_000, "start_bitrate": 2_000_000, "max_bitrate": 2_000_000},
    {"min_bitrate": 1000, "start_bitrate": 1000, "max_bitrate": 10**10, "clock_rate": 48_000, "rtt": 0.0},
]


@equivalence
@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    packets=st.integers(1, 1500),
    hostile=st.sampled_from([0.0, 0.02, 0.2]),
    loss_reports=st.booleans(),
    kw=st.sampled_from(KWARGS),
)
def test_matches_reference_on_random_traces(
    bwe_impl: ModuleType,
    bwe_ref: ModuleType,
    seed: int,
    packets: int,
    hostile: float,
    loss_reports: bool,
    kw: dict[str, Any],
) -> None:
    events = _trace(seed, packets=packets, hostile=hostile, loss_reports=loss_reports)
    _compare(bwe_impl.BandwidthEstimator(**kw), bwe_ref.BandwidthEstimator(**kw), events)


@equivalence
@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_seeded_traces(bwe_impl: ModuleType, bwe_ref: ModuleType, seed: int) -> None:
    events = _trace(1000 + seed, packets=6000, hostile=0.01, loss_reports=True)
    _compare(bwe_impl.BandwidthEstimator(), bwe_ref.BandwidthEstimator(), events)


@equivalence
@pytest.mark.parametrize(
    ("capacity", "loss"),
    [(bwe_sim.step(4e6, 5e5, 8.0), 0.0), (lambda t: 1e6 if 5 <= t < 10 else 3e6, 0.03)],
)
def test_closed_loop_calls_match_reference(
    bwe_impl: ModuleType, bwe_ref: ModuleType, capacity: bwe_sim.Schedule, loss: float
) -> None:
    """The same call, each implementation driving its own sender: identical frame by frame."""
    kw: dict[str, Any] = {"start_bitrate": 1_000_000, "max_bitrate": 5_000_000}
    ours = bwe_sim.simulate(bwe_impl.BandwidthEstimator(**kw), 15.0, capacity, loss=loss, seed=4)
    ref_bwe = bwe_ref.BandwidthEstimator(**kw)
    events: list[Event] = []
    ref = bwe_sim.simulate(ref_bwe, 15.0, capacity, loss=loss, seed=4, events=events)
    assert ours == ref
    replayed = bwe_impl.BandwidthEstimator(**kw)
    assert bwe_sim.replay(replayed, events) == [s.estimate for s in ref]
    assert _snapshot(replayed) == _snapshot(ref_bwe)


# -- behaviour ----------------------------------------------------------------


def _when(samples: list[Sample], start: float, cond: Any) -> float | None:
    """Seconds after `start` until the first frame meeting cond."""
    for s in samples:
        if s.time >= start and cond(s):
            return s.time - start
    return None


def test_free_path_ramps_to_max_without_overuse(bwe_impl: ModuleType) -> None:
    b = bwe_impl.BandwidthEstimator(start_bitrate=300_000, max_bitrate=2_500_000)
    samples = bwe_sim.simulate(b, 40.0, lambda t: 10e6)
    estimates = [s.estimate for s in samples]
    assert estimates == sorted(estimates)  # never backs off
    # About 8 %/s: 300 kb/s -> 2.5 Mb/s takes ln(8.3)/ln(1.08) = 28 s.
    reached = _when(samples, 0.0, lambda s: s.estimate >= 2_500_000)
    assert reached is not None and 20.0 < reached < 32.0
    assert {s.state for s in samples} == {"normal"}
    stats = b.stats()
    assert stats["overuse"] == stats["decreases"] == stats["loss_decreases"] == 0
    assert max(s.queue_delay for s in samples) == 0.0


def test_queue_at_a_bottleneck_is_detected(bwe_impl: ModuleType) -> None:
    """Open loop: 2 Mb/s into a link that drops from 4 to 1 Mb/s at t=5 s."""
    b = bwe_impl.BandwidthEstimator(start_bitrate=1_000_000, max_bitrate=5_000_000)
    samples = bwe_sim.simulate(b, 8.0, bwe_sim.step(4e6, 1e6, 5.0), send_rate=lambda t: 2e6)
    assert all(s.state == "normal" for s in samples if s.time < 5.0)
    detected = _when(samples, 5.0, lambda s: s.state == "overuse")
    assert detected is not None and detected <= 0.5
    # Below the bottleneck once the incoming rate has been measured at it.
    below = _when(samples, 5.0, lambda s: s.estimate < 1_000_000)
    assert below is not None and below <= 1.0
    assert b.delay_based < 1_000_000


def test_backs_off_then_recovers_when_capacity_returns(bwe_impl: ModuleType) -> None:
    b = bwe_impl.BandwidthEstimator(start_bitrate=1_000_000, max_bitrate=3_000_000)
    samples = bwe_sim.simulate(b, 45.0, lambda t: 1e6 if 10.0 <= t < 20.0 else 4e6)
    assert all(s.state == "normal" for s in samples if s.time < 10.0)
    detected = _when(samples, 10.0, lambda s: s.state == "overuse")
    assert detected is not None and detected <= 0.5
    below = _when(samples, 10.0, lambda s: s.estimate < 1_000_000)
    assert below is not None and below <= 1.5
    during = [s for s in samples if 13.0 <= s.time < 20.0]
    assert all(500_000 <= s.estimate <= 1_100_000 for s in during)  # tracks the bottleneck
    assert max(s.queue_delay for s in during) < 0.2
    # Capacity back at 4 Mb/s: it climbs to the 3 Mb/s cap.
    recovered = _when(samples, 20.0, lambda s: s.estimate >= 3_000_000)
    assert recovered is not None and recovered < 25.0
    assert samples[-1].estimate == 3_000_000


def follow_time(impl: ModuleType) -> tuple[float | None, list[Sample]]:
    """4 Mb/s -> 500 kb/s at t=10 s: seconds until the estimate is at or below 500 kb/s."""
    b = impl.BandwidthEstimator(start_bitrate=3_000_000, max_bitrate=5_000_000)
    samples = bwe_sim.simulate(b, 25.0, bwe_sim.step(4e6, 5e5, 10.0))
    return _when(samples, 10.0, lambda s: s.estimate <= 500_000), samples


def test_follows_a_capacity_drop_within_seconds(bwe_impl: ModuleType) -> None:
    before = None
    took, samples = follow_time(bwe_impl)
    before = [s.estimate for s in samples if 8.0 <= s.time < 10.0]
    assert all(3_000_000 <= e <= 4_700_000 for e in before)  # near the 4 Mb/s link before
    assert took is not None and took <= 2.0
    after = [s for s in samples if s.time >= 13.0]
    # It stays with the new capacity (not collapsing to the minimum) and the queue drains.
    assert all(350_000 <= s.estimate <= 600_000 for s in after)
    assert sum(s.queue_delay for s in after) / len(after) < 0.1


def test_heavy_loss_cuts_light_loss_does_not(bwe_impl: ModuleType) -> None:
    b = bwe_impl.BandwidthEstimator(start_bitrate=1_000_000, max_bitrate=2_000_000)
    assert b.estimate(0.0) == 1_000_000
    b.on_loss_report(0.2, 0.1)
    assert b.estimate(0.1) == 900_000  # x (1 - 0.5 * 0.2), from the delay-based rate
    assert b.loss_based == 900_000
    b.on_loss_report(0.2, 0.2)  # another interval too soon after the cut: hold
    assert b.loss_based == 900_000
    b.on_loss_report(0.2, 0.6)
    assert b.loss_based == 810_000
    b.on_loss_report(0.05, 1.0)  # 2..10 %: hold
    assert b.loss_based == 810_000
    b.on_loss_report(0.01, 1.1)  # under 2 %: +5 %
    assert b.loss_based == int(810_000 * 1.05)
    assert b.stats()["loss_decreases"] == 2


@pytest.mark.parametrize(("loss", "cut"), [(0.01, False), (0.2, True)])
def test_random_loss_on_the_path(bwe_impl: ModuleType, loss: float, cut: bool) -> None:
    b = bwe_impl.BandwidthEstimator(start_bitrate=1_500_000, max_bitrate=2_000_000)
    samples = bwe_sim.simulate(b, 10.0, lambda t: 10e6, loss=loss, seed=3)
    if cut:
        assert b.stats()["loss_decreases"] >= 5
        assert samples[-1].estimate < 500_000
    else:
        assert b.stats()["loss_decreases"] == 0
        assert samples[-1].estimate == 2_000_000
    assert b.stats()["overuse"] == 0  # random loss is not queuing


def test_bursts_reordering_and_wraparound(bwe_impl: ModuleType) -> None:
    """The same call across the u32 timestamp wrap gives the same estimates."""
    plain = bwe_sim.simulate(bwe_impl.BandwidthEstimator(), 12.0, bwe_sim.step(3e6, 6e5, 6.0))
    wrapped = bwe_sim.simulate(
        bwe_impl.BandwidthEstimator(), 12.0, bwe_sim.step(3e6, 6e5, 6.0), first_timestamp=U32 - 5 * 90_000
    )
    assert [(s.estimate, s.state) for s in plain] == [(s.estimate, s.state) for s in wrapped]
    b = bwe_impl.BandwidthEstimator()
    for k in range(100):
        b.on_packet(k * TICKS, k / 30, 1000)
        if k > 5:
            b.on_packet((k - 5) * TICKS, k / 30, 1000)  # late straggler of an older frame
    assert b.stats()["reordered"] == 94
    assert b.stats()["groups"] == 98


def test_bad_input_raises_or_is_counted(bwe_impl: ModuleType) -> None:
    b = bwe_impl.BandwidthEstimator()
    for args in [(0, math.nan, 100), (0, math.inf, 100), (0, 1.0, -1), (-1, 1.0, 10), (1 << 32, 1.0, 10)]:
        with pytest.raises(ValueError):
            b.on_packet(*args)
    with pytest.raises(ValueError):
        b.on_loss_report(math.nan, 0.0)
    with pytest.raises(ValueError):
        b.on_loss_report(-0.1, 0.0)
    with pytest.raises(ValueError):
        b.estimate(math.nan)
    with pytest.raises(ValueError):
        b.on_rtt(-0.5)
    with pytest.raises(ValueError):
        bwe_impl.BandwidthEstimator(min_bitrate=500_000, start_bitrate=100_000)
    with pytest.raises(ValueError):
        bwe_impl.BandwidthEstimator(clock_rate=0)
    assert b.stats()["packets"] == 0
    b.on_packet(0, 10.0, 100)
    b.on_packet(TICKS, 9.0, 100)  # the clock went backwards: ignored, counted
    b.on_loss_report(0.0, 5.0)
    b.on_loss_report(0.5, 4.0)
    stats = b.stats()
    assert stats["packets"] == 1 and stats["backwards"] == 2 and stats["loss_reports"] == 1
    assert b.estimate(20.0) == b.estimate(3.0) >= 300_000  # an old `now` changes nothing
    assert b.incoming_rate(10.0) is None  # no full window yet


def test_timestamp_jumps_and_stream_restarts(bwe_impl: ModuleType) -> None:
    b = bwe_impl.BandwidthEstimator()
    for k in range(60):
        b.on_packet(k * TICKS, k / 30, 1000)
    b.on_packet(1 << 31, 2.0, 1000)  # one wild packet: a jump, ignored
    b.on_packet(60 * TICKS, 2.0, 1000)
    assert b.stats()["jumps"] == 1 and b.stats()["resets"] == 0
    for k in range(3):  # a new stream far away
        b.on_packet(777_000_000 + k * TICKS, 2.1 + k / 30, 1000)
    assert b.stats()["resets"] == 1
    b.on_packet(777_000_000 + 3 * TICKS, 10.0, 1000)  # 8 s of silence: start over
    assert b.stats()["resets"] == 2
    assert b.state == "normal"


def test_memory_is_bounded(bwe_impl: ModuleType) -> None:
    b = bwe_impl.BandwidthEstimator()
    rng = random.Random(5)

    def feed(first: int, count: int) -> None:
        for k in range(first, first + count):
            t = k / 300
            b.on_packet((k // 10) * TICKS & U32, t + rng.uniform(0, 0.002), 1200)
            if k % 30 == 0:
                b.on_loss_report(rng.random() * 0.05, t)
                b.estimate(t)

    # Only what the estimator (and this test, for the compiled one) allocates: other threads left
    # by earlier tests (a session-long app, audio workers) must not count.
    mine = [tracemalloc.Filter(True, __file__), tracemalloc.Filter(True, "*bwe*")]

    def traced() -> int:
        snapshot = tracemalloc.take_snapshot().filter_traces(mine)
        return sum(stat.size for stat in snapshot.statistics("filename"))

    feed(0, 20_000)
    tracemalloc.start()
    try:
        feed(20_000, 2000)
        base = traced()
        feed(22_000, 100_000)
        grown = traced()
    finally:
        tracemalloc.stop()
    assert grown - base < 8192
    assert b.stats()["packets"] == 122_000
