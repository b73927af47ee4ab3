"""Fragmenter and reassembler: every implementation against the reference,
plus the limits that keep a hostile sender from costing unbounded memory."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bisc.errors import FrameTooLargeError, PacketError

pytestmark = pytest.mark.equivalence

FRAME_FIELDS = ("stream_id", "sequence", "timestamp", "flags", "fragment_count", "payload")


def _frame(frame: Any) -> tuple[Any, ...] | None:
    return None if frame is None else tuple(getattr(frame, f) for f in FRAME_FIELDS)


def _split(impl: ModuleType, payload: bytes, seq: int = 0, mds: int = 100, **kw: Any) -> list[bytes]:
    args: dict[str, Any] = dict(stream_id=1, first_sequence=seq, timestamp=(seq * 3000) & 0xFFFFFFFF, flags=1)
    args.update(kw)
    return list(impl.fragment_frame(payload, max_datagram_size=mds, **args))


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=5000),
    mds=st.integers(16, 1500),
    seq=st.integers(0, 0xFFFFFFFF),
)
def test_fragment_matches_reference(
    fragment_impl: ModuleType, fragment_ref: ModuleType, payload: bytes, mds: int, seq: int
) -> None:
    datagrams = _split(fragment_impl, payload, seq, mds)
    assert datagrams == _split(fragment_ref, payload, seq, mds)
    assert all(len(d) <= mds for d in datagrams)
    sizes = [len(d) - 15 for d in datagrams]
    assert max(sizes) - min(sizes) <= 1  # evenly sized, no runt at the end


def test_fragment_sequence_wraps(fragment_impl: ModuleType, packet_ref: ModuleType) -> None:
    datagrams = _split(fragment_impl, b"x" * 400, seq=0xFFFFFFFE, mds=115)
    seqs = [packet_ref.decode_packet(d).sequence for d in datagrams]
    assert seqs == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1]
    reassembler = fragment_impl.Reassembler()
    frames = [reassembler.push(d, 0.0) for d in reversed(datagrams)]
    assert frames[:-1] == [None] * 3
    assert frames[-1].payload == b"x" * 400
    assert frames[-1].sequence == 0xFFFFFFFE


def test_frame_too_large_is_an_error_not_truncation(fragment_impl: ModuleType) -> None:
    with pytest.raises(FrameTooLargeError, match="65535"):
        _split(fragment_impl, bytes(70000), mds=16, max_frame_size=1 << 20)
    with pytest.raises(FrameTooLargeError, match="max_frame_size"):
        _split(fragment_impl, bytes(1001), mds=1200, max_frame_size=1000)
    with pytest.raises(PacketError, match="no room"):
        _split(fragment_impl, b"abc", mds=15)


def test_exactly_65535_fragments_is_allowed(fragment_impl: ModuleType) -> None:
    datagrams = _split(fragment_impl, bytes(65535), mds=16, max_frame_size=1 << 20)
    assert len(datagrams) == 65535


def test_empty_frame_is_one_fragment(fragment_impl: ModuleType) -> None:
    datagrams = _split(fragment_impl, b"", mds=1200)
    assert len(datagrams) == 1
    frame = fragment_impl.Reassembler().push(datagrams[0], 0.0)
    assert frame.payload == b"" and frame.fragment_count == 1 and frame.is_keyframe


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple[bytes, float]]:
    """Interleaved, reordered, duplicated and lossy fragments of several frames,
    plus the odd well-formed but contradictory datagram, with time advancing."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    from bisc.codec import fragment as ref

    datagrams: list[bytes] = []
    seq = draw(st.integers(0, 0xFFFFFFFF))
    for _ in range(draw(st.integers(1, 12))):
        payload = rng.randbytes(rng.randrange(0, 900))
        parts = ref.fragment_frame(
            payload,
            stream_id=rng.randrange(3),
            first_sequence=seq,
            timestamp=seq,
            flags=rng.randrange(2),
            max_datagram_size=rng.choice([40, 100, 300]),
        )
        seq = (seq + len(parts)) & 0xFFFFFFFF
        parts = [p for p in parts if rng.random() > 0.1]  # loss
        parts += [p for p in parts if rng.random() < 0.1]  # duplicates
        datagrams += parts
    rng.shuffle(datagrams)
    if draw(st.booleans()) and datagrams:  # contradict an earlier fragment's count
        bad = bytearray(datagrams[0])
        bad[13:15] = (int.from_bytes(bad[13:15], "big") + 1).to_bytes(2, "big")
        datagrams.insert(rng.randrange(len(datagrams) + 1), bytes(bad))
    now = 0.0
    out = []
    for d in datagrams:
        now += rng.choice([0.0, 0.001, 0.01, 0.3])
        out.append((d, now))
    return out


@settings(max_examples=300, deadline=None)
@given(schedule=schedules(), limits=st.sampled_from([(2, 600, 8), (4, 10_000, 64), (16, 100_000, 4096)]))
def test_reassembly_matches_reference(
    fragment_impl: ModuleType,
    fragment_ref: ModuleType,
    schedule: list[tuple[bytes, float]],
    limits: tuple[int, int, int],
) -> None:
    in_flight, max_size, max_fragments = limits
    kw = dict(
        max_frames_in_flight=in_flight,
        max_frame_size=max_size,
        max_fragments=max_fragments,
        timeout=0.5,
        history=8,
    )
    ours, ref = fragment_impl.Reassembler(**kw), fragment_ref.Reassembler(**kw)
    for datagram, now in schedule:
        assert _frame(ours.push(datagram, now)) == _frame(ref.push(datagram, now))
        assert ours.stats() == ref.stats()
        assert ours.in_flight == ref.in_flight <= in_flight
        assert ours.buffered_bytes == ref.buffered_bytes <= in_flight * max_size
    assert ours.expire(1e9) == ref.expire(1e9)
    assert ours.in_flight == 0 and ours.stats() == ref.stats()


def test_reorder_duplicates_and_loss(fragment_impl: ModuleType) -> None:
    payload = bytes(range(256)) * 10
    datagrams = _split(fragment_impl, payload, seq=100, mds=215)
    reassembler = fragment_impl.Reassembler(timeout=1.0)
    order = list(reversed(datagrams))
    results = [reassembler.push(d, 0.1) for d in [order[0], order[0], *order[1:]]]
    assert next(r for r in results if r is not None).payload == payload
    assert reassembler.stats()["duplicates"] == 1
    assert reassembler.push(datagrams[3], 0.2) is None  # late copy of a finished frame
    assert reassembler.stats()["late"] == 1
    # A frame missing one fragment is dropped after the timeout, not kept forever.
    lossy = _split(fragment_impl, payload, seq=500, mds=215)
    for d in lossy[1:]:
        assert reassembler.push(d, 1.0) is None
    assert reassembler.in_flight == 1
    assert reassembler.expire(2.0) == 1
    assert reassembler.in_flight == 0 and reassembler.stats()["expired"] == 1


def test_memory_stays_bounded_under_flood(fragment_impl: ModuleType, packet_ref: ModuleType) -> None:
    """A sender opening many frames with huge fragment counts and never
    finishing them: at most max_frames_in_flight frames of max_frame_size."""
    reassembler = fragment_impl.Reassembler(max_frames_in_flight=4, max_frame_size=10_000, max_fragments=100)
    for i in range(2000):
        count = 50 if i % 2 else 60000
        datagram = packet_ref.encode_packet(1, i * 70000, 0, 0, count, 0, b"z" * 1000)
        reassembler.push(datagram, 0.0)
        assert reassembler.in_flight <= 4
        assert reassembler.buffered_bytes <= 4 * 10_000
    stats = reassembler.stats()
    assert stats["oversize"] == 1000  # the 60000-fragment frames
    assert stats["evicted"] == 1000 - 4


def test_frame_growing_past_limit_is_dropped(fragment_impl: ModuleType) -> None:
    datagrams = _split(fragment_impl, bytes(5000), mds=1015)
    reassembler = fragment_impl.Reassembler(max_frame_size=3000)
    assert all(reassembler.push(d, 0.0) is None for d in datagrams)
    assert reassembler.stats()["oversize"] == 1
    assert reassembler.in_flight == 0


def test_malformed_datagram_raises_packet_error(fragment_impl: ModuleType) -> None:
    reassembler = fragment_impl.Reassembler()
    for bad in (b"", b"\x01" * 5, b"\x09" + bytes(20)):
        with pytest.raises(PacketError):
            reassembler.push(bad, 0.0)
    assert reassembler.stats() == dict.fromkeys(reassembler.stats(), 0)


def test_bad_limits_rejected(fragment_impl: ModuleType) -> None:
    with pytest.raises(ValueError):
        fragment_impl.Reassembler(max_frame_size=0)
    with pytest.raises(ValueError):
        fragment_impl.Reassembler(timeout=0)
