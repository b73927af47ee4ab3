"""Audio jitter buffer: every implementation against the reference, and the
behaviour a listener hears (steady playout, FEC before PLC, delay that follows
the measured jitter), plus the limits that keep hostile input harmless."""

from __future__ import annotations

import itertools
import math
import random
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.equivalence

FRAME = 0.02
SAMPLES = 960
U32 = 0xFFFFFFFF
AUDIO = ("frame", "fec", "accelerate")

# ("push", sequence, timestamp, payload, arrival), ("recover", sequence, payload) or ("pop", now)
Event = tuple[Any, ...]


def _decision(d: Any) -> tuple[str, bytes, int]:
    return (d.kind, d.payload, d.sequence)


def _payload(k: int) -> bytes:
    return bytes([k & 0xFF]) * (20 + k % 7)


def _stream(
    seconds: float,
    *,
    jitter: float = 0.0,
    loss: float = 0.0,
    jitter_until: float = math.inf,
    seed: int = 1,
    first_seq: int = 1000,
    first_ts: int = 123456,
    pop_phase: float = 0.005,
    redundant: bool = False,
) -> list[Event]:
    """A sender of 20 ms packets through a jittery, lossy path, and a device
    pulling one frame every 20 ms; events in time order. With `redundant`, each
    packet carries a copy of the frame before it too (audio RED)."""
    rng = random.Random(seed)
    events: list[tuple[float, int, Event]] = []
    frames = int(seconds / FRAME)
    for k in range(frames):
        sent = k * FRAME
        if rng.random() < loss:
            continue
        delay = rng.uniform(0.0, jitter) if sent < jitter_until else 0.0
        seq = (first_seq + k) & U32
        ts = (first_ts + k * SAMPLES) & U32
        events.append((sent + delay, 0, ("push", seq, ts, _payload(k), sent + delay)))
        if redundant and k > 0:
            events.append((sent + delay, 0, ("recover", (seq - 1) & U32, _payload(k - 1))))
    for p in range(frames + 10):
        now = p * FRAME + pop_phase
        events.append((now, 1, ("pop", now)))
    events.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in events]


def _run(impl: ModuleType, events: list[Event], **kw: Any) -> tuple[list[tuple[Any, ...]], Any]:
    """Feed events; per pop, the decision and the stats after it."""
    jb = impl.JitterBuffer(**kw)
    out: list[tuple[Any, ...]] = []
    for ev in events:
        if ev[0] == "push":
            jb.push(ev[1], ev[2], ev[3], ev[4])
        elif ev[0] == "recover":
            jb.recover(ev[1], ev[2])
        else:
            out.append((_decision(jb.pop(ev[1])), jb.stats()))
    return out, jb


# -- equivalence --------------------------------------------------------------


@st.composite
def schedules(draw: st.DrawFn) -> list[Event]:
    """Jitter, loss, reordering, duplicates, wraparound, jumps, resets and redundant copies."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    seq = draw(st.sampled_from([0, U32 - 40, rng.randrange(U32 + 1)]))
    ts = draw(st.sampled_from([0, U32 - 40 * SAMPLES, rng.randrange(U32 + 1)]))
    jitter = draw(st.sampled_from([0.0, 0.01, 0.03, 0.1, 0.4]))
    loss = draw(st.sampled_from([0.0, 0.05, 0.3]))
    dup = draw(st.sampled_from([0.0, 0.1]))
    hostile = draw(st.sampled_from([0.0, 0.02, 0.2]))
    pops_per_frame = draw(st.sampled_from([1.0, 0.9, 1.1]))
    red = draw(st.sampled_from([0.0, 0.5, 1.0]))  # share of packets carrying the previous frame too
    previous: tuple[int, bytes] | None = None
    frames = draw(st.integers(1, 400))
    timed: list[tuple[float, int, Event]] = []
    for k in range(frames):
        sent = k * FRAME
        s = (seq + k) & U32
        t = (ts + k * SAMPLES) & U32
        if rng.random() < 0.01:  # the sender restarts its stream
            seq, ts = rng.randrange(U32 + 1), rng.randrange(U32 + 1)
        payload = rng.randbytes(rng.randrange(0, 40))
        copy, previous = previous, (s, payload)
        if rng.random() < loss:
            continue
        arrival = sent + rng.uniform(0.0, jitter)
        timed.append((arrival, 0, ("push", s, t, payload, arrival)))
        if copy is not None and rng.random() < red:
            timed.append((arrival, 0, ("recover", *copy)))
        if rng.random() < dup:
            timed.append((arrival + rng.uniform(0, 0.1), 0, ("push", s, t, payload, arrival + 0.05)))
        if rng.random() < hostile:
            bad_s = rng.choice([rng.randrange(U32 + 1), (s + 600) & U32, (s - 600) & U32, s])
            bad_t = rng.choice([rng.randrange(U32 + 1), (t + 10**7) & U32, t])
            timed.append((arrival, 0, ("push", bad_s, bad_t, b"evil", arrival)))
            if red:
                timed.append((arrival, 0, ("recover", bad_s, b"evil")))
    for p in range(int(frames * pops_per_frame) + 20):
        now = p * FRAME / pops_per_frame + rng.uniform(0.0, 0.001)
        timed.append((now, 1, ("pop", now)))
    timed.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in timed]


@settings(max_examples=150, deadline=None)
@given(
    events=schedules(),
    kw=st.sampled_from(
        [
            {},
            {"max_packets": 2},
            {"max_packets": 8, "min_delay": 0.04, "start_delay": 0.04, "max_delay": 0.2},
            {"frame_samples": 480, "min_delay": 0.01, "start_delay": 0.05, "max_delay": 0.5},
        ]
    ),
)
def test_matches_reference(
    jitter_impl: ModuleType, jitter_ref: ModuleType, events: list[Event], kw: dict[str, Any]
) -> None:
    ours = jitter_impl.JitterBuffer(**kw)
    ref = jitter_ref.JitterBuffer(**kw)
    for ev in events:
        if ev[0] == "push":
            assert ours.push(*ev[1:]) is ref.push(*ev[1:]) is None
        elif ev[0] == "recover":
            assert ours.recover(*ev[1:]) is ref.recover(*ev[1:]) is None
        else:
            assert _decision(ours.pop(ev[1])) == _decision(ref.pop(ev[1]))
            assert ours.stats() == ref.stats()
            assert ours.buffered_packets == ref.buffered_packets <= ref.max_packets
    assert ours.stats() == ref.stats()
    assert ours.target_delay == ref.target_delay


# -- behaviour ------------------------------------------------------------------


def _started(results: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    first = next(i for i, (d, _) in enumerate(results) if d[0] != "empty")
    return results[first:]


def test_steady_arrivals_play_every_frame(jitter_impl: ModuleType) -> None:
    results, _ = _run(jitter_impl, _stream(10.0))
    played = _started(results)[:-10]  # the last pops come after the sender stopped
    assert {d[0] for d, _ in played} <= {"frame", "accelerate"}
    assert [d[2] for d, _ in played if d[0] == "frame"] == sorted(d[2] for d, _ in played if d[0] == "frame")
    early = [s["buffer_delay_ms"] for _, s in played[:15]]
    assert all(70 <= v <= 90 for v in early)  # starts at start_delay (80 ms)
    # The start weighs as a few packets: the target is at the floor after about a second, and the
    # buffer in [target, target + a frame] within 8 s (a frame per PATIENCE pops: this steady
    # stream has no pause to cut in).
    assert all(s["target_delay_ms"] == pytest.approx(20.0) for _, s in played[60:])
    assert all(s["buffer_delay_ms"] <= 40.0 for _, s in played[400:])
    stats = played[-1][1]
    assert stats["target_delay_ms"] == pytest.approx(20.0)  # the floor: one frame
    assert stats["buffer_delay_ms"] <= 40.0
    assert 1 <= stats["accelerated"] <= 4  # delay removed a frame at a time
    assert stats["late"] == stats["plc"] == stats["fec"] == 0


def test_jitter_and_loss(jitter_impl: ModuleType) -> None:
    events = _stream(30.0, jitter=0.03, loss=0.05, jitter_until=20.0, seed=7)
    jb = jitter_impl.JitterBuffer()
    pushed: set[int] = set()
    decisions: list[tuple[str, bytes, int]] = []
    targets: list[tuple[float, float]] = []
    for ev in events:
        if ev[0] == "push":
            jb.push(*ev[1:])
            pushed.add(ev[1])
            continue
        d = jb.pop(ev[1])
        decisions.append(_decision(d))
        stats = jb.stats()
        targets.append((ev[1], stats["target_delay_ms"]))
        if d.kind == "plc":  # FEC would have covered it if the next packet were there
            assert (d.sequence + 1) & U32 not in pushed
        if d.kind == "fec":
            assert d.payload == _payload(d.sequence + 1 - 1000)
        if d.kind != "empty":
            assert stats["buffer_delay_ms"] <= 200.0
    stats = jb.stats()
    assert stats["fec"] >= 0.8 * (stats["fec"] + stats["plc"])  # most losses decoded from FEC
    concealed = sum(1 for d in decisions[:-10] if d[0] in ("plc", "expand"))
    assert concealed <= 0.05 * len(decisions)
    # While jittery, the target covers the jitter; once the jitter stops it is back within a few
    # seconds at the floor, plus the frame a lossy link keeps for FEC.
    assert max(t for now, t in targets if 10.0 < now < 20.0) >= 50.0
    assert all(t == pytest.approx(40.0) for now, t in targets if now > 25.0)


def test_redundant_copies_repair_single_losses(jitter_impl: ModuleType) -> None:
    events = _stream(20.0, jitter=0.03, loss=0.1, seed=11, redundant=True)
    lost = 1000 - sum(1 for ev in events if ev[0] == "push")
    results, jb = _run(jitter_impl, events)
    played = _started(results)[:-10]
    stats = jb.stats()
    # Only a loss of two frames in a row needs FEC or concealment; every other one is played whole,
    # from its copy, in order, and counted.
    doubles = stats["fec"] + stats["plc"]
    assert stats["recovered"] >= lost - 2 * doubles > 0
    assert doubles <= 0.25 * lost
    frames = [d[2] for d, _ in played if d[0] in ("frame", "accelerate")]
    assert frames == sorted(frames)
    assert all(d[1] == _payload(d[2] - 1000) for d, _ in played if d[0] in ("frame", "accelerate"))
    # The copies are not packets: neither received, nor duplicates, nor measured as late arrivals.
    assert stats["received"] == 1000 - lost
    assert stats["duplicates"] == 0


def test_a_copy_after_its_frame_played_or_arrived_changes_nothing(jitter_impl: ModuleType) -> None:
    jb = jitter_impl.JitterBuffer(start_delay=0.02)
    jb.recover(5, b"early")  # before the stream started: nothing to place it in
    assert jb.stats()["recovered"] == 0
    jb.push(10, 9600, b"ten", 0.0)
    assert _decision(jb.pop(0.001)) == ("frame", b"ten", 10)
    jb.recover(10, b"copy")  # its turn has passed
    jb.recover(9, b"copy")
    jb.push(12, 11520, b"twelve", 0.04)
    jb.recover(12, b"copy")  # its own packet is here: the copy is not needed
    jb.recover(11, b"eleven")  # lost, and its copy came with 12
    jb.push(11, 10560, b"eleven", 0.045)  # the original after all: measured, not a duplicate
    assert jb.stats()["recovered"] == 1 and jb.stats()["duplicates"] == 0
    assert [_decision(jb.pop(0.041 + 0.02 * i))[1] for i in range(2)] == [b"eleven", b"twelve"]
    jb.recover(10**6, b"far")  # a jump away: ignored
    assert jb.stats()["recovered"] == 1
    with pytest.raises(ValueError):
        jb.recover(-1, b"x")
    with pytest.raises(TypeError):
        jb.recover(1, "text")


def test_wraparound_changes_nothing(jitter_impl: ModuleType) -> None:
    plain, _ = _run(jitter_impl, _stream(6.0, jitter=0.03, loss=0.05, seed=3))
    wrapped, _ = _run(
        jitter_impl, _stream(6.0, jitter=0.03, loss=0.05, seed=3, first_seq=U32 - 100, first_ts=U32 - 50_000)
    )
    assert [(d[0], d[1]) for d, _ in plain] == [(d[0], d[1]) for d, _ in wrapped]
    assert [d[2] for d, _ in plain if d[2] >= 0] == [
        (d[2] - (U32 - 100) + 1000) & U32 for d, _ in wrapped if d[2] >= 0
    ]
    assert [s for _, s in plain] == [s for _, s in wrapped]


def test_hostile_packets_change_only_counters(jitter_impl: ModuleType) -> None:
    clean = _stream(6.0, loss=0.05, seed=5)  # on time: a replay is a duplicate, never late
    rng = random.Random(9)
    dirty: list[Event] = []
    injected = {"duplicates": 0, "jumps": 0}
    for ev in clean:
        dirty.append(ev)
        if ev[0] != "push":
            continue
        seq, ts, arrival = ev[1], ev[2], ev[4]
        roll = rng.random()
        if roll < 0.1:  # replayed, possibly with other contents
            dirty.append(("push", seq, ts, b"evil", arrival + 0.3))
            injected["duplicates"] += 1
        elif roll < 0.2:  # far in the future (or past) by sequence
            dirty.append(("push", (seq + rng.choice([600, -600, 2**31])) & U32, ts, b"evil", arrival))
            injected["jumps"] += 1
        elif roll < 0.3:  # right sequence, timestamp a minute away
            dirty.append(("push", seq, (ts + rng.choice([1, -1]) * 48000 * 60) & U32, b"evil", arrival))
            injected["jumps"] += 1
    base, _ = _run(jitter_impl, clean)
    attacked, jb = _run(jitter_impl, dirty)
    assert [d for d, _ in base] == [d for d, _ in attacked]
    counters = ("received", "duplicates", "jumps")
    for (_, a), (_, b) in zip(base, attacked, strict=True):
        assert {k: v for k, v in a.items() if k not in counters} == {
            k: v for k, v in b.items() if k not in counters
        }
    stats = jb.stats()
    # A timestamp jump on a sequence number already buffered is still a jump.
    assert stats["duplicates"] + stats["jumps"] == sum(injected.values())
    assert stats["resets"] == 0


def test_a_new_stream_resets(jitter_impl: ModuleType) -> None:
    events = _stream(2.0) + [
        ("push", 777_777 + k, 5 + k * SAMPLES, _payload(k), 2.5 + k * FRAME) for k in range(10)
    ]
    events += [("pop", 2.7 + p * FRAME) for p in range(20)]
    results, jb = _run(jitter_impl, events)
    stats = jb.stats()
    assert stats["jumps"] == 2 and stats["resets"] == 1
    assert [d[2] for d, _ in results[-20:] if d[0] == "frame"][:3] == [777_779, 777_780, 777_781]


def test_late_and_duplicate_packets_are_counted(jitter_impl: ModuleType) -> None:
    jb = jitter_impl.JitterBuffer(start_delay=0.02)
    jb.push(10, 9600, b"a", 0.0)
    jb.push(10, 9600, b"a", 0.001)
    assert jb.pop(0.01) == jitter_impl.Decision("frame", b"a", 10)
    jb.push(10, 9600, b"a", 0.02)
    jb.push(9, 8640, b"z", 0.02)
    assert jb.stats()["duplicates"] == 1 and jb.stats()["late"] == 2
    assert jb.pop(0.03).kind == "expand"  # ran dry: build delay
    jb.push(13, 12480, b"d", 0.04)
    jb.push(14, 13440, b"e", 0.041)
    assert _decision(jb.pop(0.05)) == ("plc", b"", 11)  # neither 11 nor 12 is there
    assert _decision(jb.pop(0.07)) == ("fec", b"d", 12)  # 12 from 13's FEC


def test_fec_when_the_next_packet_is_there(jitter_impl: ModuleType) -> None:
    jb = jitter_impl.JitterBuffer(start_delay=0.04, min_delay=0.04)
    jb.push(0, 0, b"p0", 0.0)
    jb.push(2, 1920, b"p2", 0.04)
    jb.push(3, 2880, b"p3", 0.06)
    assert _decision(jb.pop(0.061)) == ("frame", b"p0", 0)
    assert _decision(jb.pop(0.08)) == ("fec", b"p2", 1)
    assert _decision(jb.pop(0.10)) == ("frame", b"p2", 2)


def test_memory_is_bounded(jitter_impl: ModuleType) -> None:
    jb = jitter_impl.JitterBuffer(max_packets=16)
    rng = random.Random(2)
    jb.push(1000, 0, b"x", 0.0)
    for i in range(5000):
        seq = (1000 + rng.randrange(-499, 500)) & U32
        jb.push(seq, ((seq - 1000) * SAMPLES) & U32, b"y" * 100, i * 0.0001)
        assert jb.buffered_packets <= 16
        if i % 7 == 0:
            jb.pop(i * 0.0001)
    flood = jitter_impl.JitterBuffer()
    for i in range(5000):
        flood.push(rng.randrange(U32 + 1), rng.randrange(U32 + 1), b"z", i * 0.001)
        assert flood.buffered_packets <= 64
    stats = jb.stats()
    assert stats["dropped_overflow"] > 0 and stats["duplicates"] > 0


def test_bad_arguments(jitter_impl: ModuleType) -> None:
    jb = jitter_impl.JitterBuffer()
    with pytest.raises(ValueError):
        jb.push(-1, 0, b"", 0.0)
    with pytest.raises(ValueError):
        jb.push(0, 1 << 32, b"", 0.0)
    with pytest.raises(ValueError):
        jb.push(0, 0, b"", math.nan)
    with pytest.raises(TypeError):
        jb.push(0, 0, "text", 0.0)
    with pytest.raises(ValueError):
        jitter_impl.JitterBuffer(max_packets=1)
    with pytest.raises(ValueError):
        jitter_impl.JitterBuffer(min_delay=0.1, start_delay=0.05)
    assert jb.stats()["received"] == 0
    assert _decision(jb.pop(0.0)) == ("empty", b"", -1)


def _drain_excess(jitter_impl: ModuleType, size_of: Any) -> tuple[list[int], int]:
    """Prefetch at the 80 ms start delay, then steady arrivals: the buffer must shrink to the floor.
    Returns the sequences whose frames were dropped by "accelerate", and the final level in ms."""
    jb = jitter_impl.JitterBuffer()
    played: list[int] = []
    for k in range(600):
        jb.push(k, k * SAMPLES, size_of(k), k * FRAME)
        d = jb.pop(k * FRAME + 0.001)
        if d.kind in ("frame", "accelerate"):
            assert d.payload == size_of(d.sequence)
            played.append(d.sequence)
    assert played == sorted(played)
    dropped = sorted(set(range(played[0], played[-1])) - set(played))
    assert len(dropped) == jb.stats()["accelerated"]
    return dropped, int(jb.stats()["buffer_delay_ms"])


def test_delay_is_cut_in_pauses_not_in_speech(jitter_impl: ModuleType) -> None:
    # "Speech" of 80-byte frames with a pause of three 5-byte (silent) frames every 37: frames are only
    # dropped in pauses, never at a word's edge, several in the same pause if need be.
    def speech(k: int) -> bytes:
        return bytes(5) if k % 37 >= 34 else bytes([k & 0xFF]) * 80

    dropped, level = _drain_excess(jitter_impl, speech)
    assert dropped and all(k % 37 >= 34 for k in dropped)
    assert level <= 40


def test_a_lone_quiet_frame_in_speech_is_not_cut(jitter_impl: ModuleType) -> None:
    # One quiet frame between two words is part of the speech's rhythm: cutting there is heard (and
    # costs PESQ dearly); the buffer waits for a real pause, or its patience (then a cut it is forced
    # to make takes the quiet frame rather than a word's).
    def speech(k: int) -> bytes:
        return bytes(5) if k % 37 == 36 else bytes([k & 0xFF]) * 80

    dropped, level = _drain_excess(jitter_impl, speech)
    assert dropped and dropped[0] > jitter_impl.PATIENCE  # not at frame 36 or 73
    assert level <= 40


def test_delay_is_cut_without_pauses_too(jitter_impl: ModuleType) -> None:
    # A steady tone never pauses: after PATIENCE frames without a quiet one the buffer takes it that
    # none is coming and cuts a frame per SETTLE chances (0.5 s), not one per PATIENCE (3 s).
    dropped, level = _drain_excess(jitter_impl, lambda k: bytes([k & 0xFF]) * 80)
    assert len(dropped) >= 2
    assert jitter_impl.PATIENCE - 5 <= dropped[0] <= jitter_impl.PATIENCE + 10
    settle, interval = jitter_impl.SETTLE, jitter_impl.ADJUST_INTERVAL
    assert settle <= dropped[1] - dropped[0] <= settle + interval + 2
    assert level <= 30  # a clean link: one frame buffered


@pytest.mark.parametrize("jitter", [0.0, 0.02, 0.03, 0.05])
def test_a_tone_under_jitter_is_not_pumped(jitter_impl: ModuleType, jitter: float) -> None:
    # Without pauses every step is forced (heard): after the start-up cuts, the level wanders with the
    # jitter inside its band instead of being cut and stretched back and forth.
    results, _ = _run(jitter_impl, _stream(30.0, jitter=jitter, seed=4))
    played = _started(results)[:-10]
    steps = [i for i, (d, _) in enumerate(played) if d[0] in ("accelerate", "expand")]
    later = [i for i in steps if i > 300]
    assert len(later) <= 5, steps  # the target follows the measured jitter now and then
    assert all(b - a >= jitter_impl.SETTLE for a, b in itertools.pairwise(later)), steps
    assert all(d[0] != "plc" for d, _ in played)
