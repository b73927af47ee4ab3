"""Per-interval reception statistics (ReceptionStats): loss per interval, sequence and
timestamp wraps, reordering and duplicates, interarrival jitter, strays and sender restarts."""

from __future__ import annotations

import random

import pytest

from bisc.codec.reception import MAX_JUMP, ReceptionStats
from bisc.media.opus import FRAME_SAMPLES, SAMPLE_RATE
from tests.voice_helpers import FRAME_S, U32


def test_reception_interval_loss_is_per_interval() -> None:
    rng = random.Random(5)
    stats = ReceptionStats(SAMPLE_RATE)
    seq0, ts0 = 1000, 77
    lost = {i for i in range(1000) if rng.random() < 0.05}
    lost.discard(0)
    assert 30 <= len(lost) <= 70
    prev_max = seq0 - 1
    total_expected = total_received = 0
    for start in range(0, 1000, 50):
        got = [i for i in range(start, start + 50) if i not in lost]
        for i in got:
            stats.on_packet(seq0 + i, ts0 + i * FRAME_SAMPLES, 100, i * FRAME_S)
        interval = stats.interval()
        top = seq0 + max(got)
        assert interval.expected == top - prev_max
        assert interval.received == len(got)
        assert interval.loss == pytest.approx(1 - len(got) / (top - prev_max))
        prev_max = top
        total_expected += interval.expected
        total_received += interval.received
    assert total_received == 1000 - len(lost) == stats.received
    assert total_expected == seq0 + max(set(range(1000)) - lost) - (seq0 - 1)
    assert stats.bytes == 100 * stats.received
    # A clean interval after the lossy ones reports no loss: nothing is cumulative.
    for i in range(1000, 1050):
        stats.on_packet(seq0 + i, ts0 + i * FRAME_SAMPLES, 100, i * FRAME_S)
    clean = stats.interval()
    assert clean.loss == 0.0
    assert clean.received == clean.expected == 1050 - 1 - max(set(range(1000)) - lost)
    # And an interval with nothing received expects nothing.
    empty = stats.interval()
    assert (empty.expected, empty.received, empty.loss) == (0, 0, 0.0)


def test_reception_lossy_interval_after_clean_one() -> None:
    stats = ReceptionStats(SAMPLE_RATE)
    for i in range(50):
        stats.on_packet(i, i * FRAME_SAMPLES, 80, i * FRAME_S)
    assert stats.interval().loss == 0.0
    for i in range(50, 100):
        if i % 10 != 5:
            stats.on_packet(i, i * FRAME_SAMPLES, 80, i * FRAME_S)
    interval = stats.interval()
    assert (interval.expected, interval.received) == (50, 45)
    assert interval.loss == pytest.approx(0.1)


def test_reception_sequence_and_timestamp_wrap() -> None:
    stats = ReceptionStats(SAMPLE_RATE)
    seq0, ts0 = U32 - 20, U32 - 5 * FRAME_SAMPLES
    for i in range(100):
        stats.on_packet((seq0 + i) & U32, (ts0 + i * FRAME_SAMPLES) & U32, 60, 3.0 + i * FRAME_S)
        if i == 49:
            first = stats.interval()
    second = stats.interval()
    assert (first.expected, first.received, first.loss) == (50, 50, 0.0)
    assert (second.expected, second.received, second.loss) == (50, 50, 0.0)
    assert stats.jitter < 1e-9  # the timestamp wrap is not a transit jump
    assert stats.strays == 0


def test_reception_reordering_and_duplicates() -> None:
    stats = ReceptionStats(SAMPLE_RATE)
    order = [0, 2, 1, 3, 3, 5, 4, 4, 6, 7, 7, 7, 9, 8]  # all of 0..9, some twice, some swapped
    for n, i in enumerate(order):
        stats.on_packet(500 + i, i * FRAME_SAMPLES, 50, n * FRAME_S)
    interval = stats.interval()
    assert interval.expected == 10
    assert interval.received == 10  # duplicates do not make negative loss
    assert interval.loss == 0.0
    # Only late packets: the highest sequence did not move, nothing was expected.
    for i in (3, 4, 5):
        stats.on_packet(500 + i, i * FRAME_SAMPLES, 50, 1.0)
    late = stats.interval()
    assert (late.expected, late.received, late.loss) == (0, 0, 0.0)
    # Heavy duplication within an interval: loss clamped at 0, and a hole still counts.
    for _ in range(5):
        stats.on_packet(510, 10 * FRAME_SAMPLES, 50, 2.0)
    stats.on_packet(512, 12 * FRAME_SAMPLES, 50, 2.04)
    dup = stats.interval()
    assert dup.expected == 3 and dup.received == 3 and dup.loss == 0.0
    stats.on_packet(520, 20 * FRAME_SAMPLES, 50, 2.2)
    holes = stats.interval()
    assert holes.expected == 8 and holes.received == 1
    assert 0.0 <= holes.loss <= 1.0 and holes.loss == pytest.approx(7 / 8)


def test_reception_jitter_zero_when_paced() -> None:
    stats = ReceptionStats(SAMPLE_RATE)
    for i in range(500):
        stats.on_packet(i, 12345 + i * FRAME_SAMPLES, 60, 100.0 + 0.05 + i * FRAME_S)
    assert stats.jitter < 1e-9


def test_reception_jitter_uniform() -> None:
    # Transit = constant + U(-10 ms, +10 ms): D is triangular on ±20 ms, E|D| = 20/3 ms.
    rng = random.Random(11)
    stats = ReceptionStats(SAMPLE_RATE)
    samples: list[float] = []
    for i in range(3000):
        arrival = 10.0 + i * FRAME_S + 0.05 + rng.uniform(-0.01, 0.01)
        stats.on_packet(i, i * FRAME_SAMPLES, 60, arrival)
        if i >= 500:
            samples.append(stats.jitter)
    mean_j = sum(samples) / len(samples)
    assert 0.0058 < mean_j < 0.0075, mean_j
    assert 0.004 < stats.jitter < 0.0095, stats.jitter


def test_reception_jitter_scales_with_spread() -> None:
    def final_jitter(spread: float) -> float:
        rng = random.Random(3)
        stats = ReceptionStats(SAMPLE_RATE)
        for i in range(2000):
            stats.on_packet(i, i * FRAME_SAMPLES, 60, i * FRAME_S + rng.uniform(-spread, spread))
        return stats.jitter

    low, high = final_jitter(0.002), final_jitter(0.02)
    assert 0.0008 < low < 0.002 and 0.008 < high < 0.02


def test_reception_strays_ignored_then_new_stream() -> None:
    stats = ReceptionStats(SAMPLE_RATE)
    for i in range(50):
        stats.on_packet(i, i * FRAME_SAMPLES, 60, i * FRAME_S)
    stats.on_packet(50 + 10000, 9 * FRAME_SAMPLES, 60, 1.0)  # a stray
    assert stats.strays == 1 and stats.received == 50
    for i in range(50, 100):
        stats.on_packet(i, i * FRAME_SAMPLES, 60, i * FRAME_S)
    first = stats.interval()
    assert (first.expected, first.received, first.loss) == (100, 100, 0.0)
    assert stats.jitter < 1e-9  # the stray's timing did not count either
    # A stray just inside the limit is a loss burst, not a stray.
    stats.on_packet(99 + MAX_JUMP, (99 + MAX_JUMP) * FRAME_SAMPLES, 60, (99 + MAX_JUMP) * FRAME_S)
    burst = stats.interval()
    assert (burst.expected, burst.received, stats.strays) == (MAX_JUMP, 1, 1)
    # Three in a row far away: the sender restarted, count the new stream afresh.
    base, ts_base, t_base = 3_000_000_000, 42, 50.0
    for k in range(3):
        stats.on_packet(base + k, ts_base + k * FRAME_SAMPLES, 60, t_base + k * FRAME_S)
    assert stats.strays == 3  # the first two were strays, the third started the stream
    before = stats.received
    for k in range(3, 53):
        stats.on_packet(base + k, ts_base + k * FRAME_SAMPLES, 60, t_base + k * FRAME_S)
    assert stats.received == before + 50
    new = stats.interval()
    assert new.expected == 51 and new.received == 51 and new.loss == 0.0
    assert stats.jitter < 1e-9  # the restart is not a jitter spike
