"""Voice protocol units, sans-IO: media control messages and the report clock,
per-interval reception statistics, and the voice receiver and sender driven
on a virtual clock (no threads, no network)."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bisc import hotpaths
from bisc.app.voice import refuse_reason
from bisc.codec.reception import MAX_JUMP, ReceptionStats
from bisc.media.opus import FRAME_SAMPLES, MAX_PACKET_BYTES, SAMPLE_RATE, OpusDecoder, OpusEncoder
from bisc.media.voice_receiver import VoiceReceiver
from bisc.media.voice_sender import VoiceSender
from bisc.proto.media_control import (
    MAX_MEDIA_CONTROL,
    MAX_STREAMS,
    KeyframeRequest,
    MediaAnswer,
    MediaControl,
    MediaOffer,
    MediaReport,
    MediaStop,
    ReportClock,
    StreamOffer,
    StreamReport,
    decode_media,
    encode_media,
)
from bisc.proto.messages import MessageError

FRAME_S = 0.02
U32 = 0xFFFFFFFF
TONE_HZ = 440.0
TONE_AMPLITUDE = 0.3 * 32767
TONE_RMS = TONE_AMPLITUDE / math.sqrt(2)

VOICE = StreamOffer(0, "audio", "opus", 48000, 1, 20, True)


def _pack(body: Any) -> bytes:
    return bytes(msgpack.packb(body, use_bin_type=True))


# -- media control: round trips --------------------------------------------------

ROUND_TRIPS: list[MediaControl] = [
    MediaOffer((VOICE,)),
    MediaOffer(()),
    MediaOffer(tuple(StreamOffer(i, "audio", "opus", 48000, 2, 10, i % 2 == 0) for i in range(MAX_STREAMS))),
    MediaAnswer((0,)),
    MediaAnswer((), "video is not supported"),
    MediaAnswer((0, 3, 255), "ünïcode reason"),
    MediaReport(12.5),
    MediaReport(12.5, echo=11.25, hold=0.125),
    MediaReport(1e9, echo=0.0, hold=0.0, sr=((0, U32, 99.5),)),
    MediaReport(3.0, sr=((7, 0, -4.0), (1, 5, 2.0))),
    MediaReport(
        2.0,
        echo=1.0,
        hold=0.5,
        sr=((0, 123456, 1.75),),
        streams=(
            StreamReport(0, 50, 47, 3.5, 40.0, 95.25, 1_500_000),
            StreamReport(255, 0, 0, 0.0, 0.0, -1.0),
        ),
    ),
    MediaReport(2.0, streams=(StreamReport(1, U32, U32, 0.0, 0.0, -1.0),)),
    MediaStop(0),
    MediaStop(255),
    KeyframeRequest(1),
]


@pytest.mark.parametrize("msg", ROUND_TRIPS, ids=lambda m: type(m).__name__)
def test_media_control_round_trip(msg: MediaControl) -> None:
    data = encode_media(msg)
    assert len(data) <= MAX_MEDIA_CONTROL
    assert decode_media(data) == msg


def test_report_round_trip_types() -> None:
    # Integers on the wire come back as floats where the field is a time.
    decoded = decode_media(_pack([3, 5, 4, 0, [[0, 10, 2]], [[0, 50, 49, 1, 2, 3, 0]]]))
    assert isinstance(decoded, MediaReport)
    assert decoded == MediaReport(5.0, 4.0, 0.0, ((0, 10, 2.0),), (StreamReport(0, 50, 49, 1.0, 2.0, 3.0),))
    assert all(isinstance(x, float) for x in (decoded.t, decoded.echo, decoded.hold))


def test_encode_caps_streams() -> None:
    many = tuple(StreamOffer(i, "audio", "opus", 48000, 1, 20, True) for i in range(MAX_STREAMS + 3))
    offer = decode_media(encode_media(MediaOffer(many)))
    assert isinstance(offer, MediaOffer) and offer.streams == many[:MAX_STREAMS]
    answer = decode_media(encode_media(MediaAnswer(tuple(range(MAX_STREAMS + 3)), "x" * 500)))
    assert isinstance(answer, MediaAnswer)
    assert answer.accepted == tuple(range(MAX_STREAMS)) and answer.reason == "x" * 200
    reports = tuple(StreamReport(i, 1, 1, 0.0, 0.0, 0.0) for i in range(MAX_STREAMS + 3))
    report = decode_media(encode_media(MediaReport(1.0, streams=reports)))
    assert isinstance(report, MediaReport) and report.streams == reports[:MAX_STREAMS]


def test_stream_report_loss_is_clamped() -> None:
    assert StreamReport(0, 100, 95, 0, 0, 0).loss == pytest.approx(0.05)
    assert StreamReport(0, 10, 20, 0, 0, 0).loss == 0.0
    assert StreamReport(0, 0, 5, 0, 0, 0).loss == 0.0
    assert StreamReport(0, 10, 0, 0, 0, 0).loss == 1.0


# -- media control: malformed input ------------------------------------------------

GOOD_OFFER = [0, "audio", "opus", 48000, 1, 20, True]
GOOD_STREAM_REPORT = [0, 50, 49, 1.0, 40.0, 90.0, 0]
GOOD_REPORT = [3, 1.0, 0.5, 0.1, [[0, 960, 0.9]], [GOOD_STREAM_REPORT]]

MALFORMED: list[Any] = [
    # not a [kind, ...] list
    None,
    7,
    "offer",
    [],
    {},
    [None],
    ["1", [GOOD_OFFER]],
    [1.0, [GOOD_OFFER]],
    [True, [GOOD_OFFER]],  # a bool is not a kind
    # unknown kinds and wrong lengths
    [0, [GOOD_OFFER]],
    [6, 0],
    [5],
    [5, 256],
    [-1, 0],
    [2**40, 0],
    [1],
    [1, [GOOD_OFFER], 0],
    [2, [0]],
    [3, 1.0, None, 0.0, None],
    [4],
    [4, 0, 0],
    # offers
    [1, GOOD_OFFER],
    [1, [GOOD_OFFER[:6]]],
    [1, [[*GOOD_OFFER, 0]]],
    [1, [[256, *GOOD_OFFER[1:]]]],
    [1, [[-1, *GOOD_OFFER[1:]]]],
    [1, [[True, *GOOD_OFFER[1:]]]],
    [1, [[0.0, *GOOD_OFFER[1:]]]],
    [1, [[0, 1, "opus", 48000, 1, 20, True]]],
    [1, [[0, "audio", b"opus", 48000, 1, 20, True]]],
    [1, [[0, "audio", "opus", 48000.0, 1, 20, True]]],
    [1, [[0, "audio", "opus", True, 1, 20, True]]],
    [1, [[0, "audio", "opus", 0, 1, 20, True]]],
    [1, [[0, "audio", "opus", -48000, 1, 20, True]]],
    [1, [[0, "audio", "opus", 48000, -1, 20, True]]],
    [1, [[0, "audio", "opus", 48000, 1, 1_000_001, True]]],
    [1, [[0, "audio", "opus", 48000, 1, 20, 1]]],
    [1, [[0, "audio", "opus", 48000, 1, 20, None]]],
    [1, [GOOD_OFFER] * (MAX_STREAMS + 1)],  # too many streams
    # answers
    [2, [0], None],
    [2, [0], 5],
    [2, 0, ""],
    [2, [256], ""],
    [2, [-1], ""],
    [2, [True], ""],
    [2, [0.0], ""],
    [2, list(range(MAX_STREAMS + 1)), ""],  # too many streams
    # stops
    [4, 256],
    [4, -1],
    [4, True],
    [4, 0.5],
    [4, None],
    # reports: times
    [3, None, None, 0.0, None, []],
    [3, "1", None, 0.0, None, []],
    [3, True, None, 0.0, None, []],
    [3, math.nan, None, 0.0, None, []],
    [3, math.inf, None, 0.0, None, []],
    [3, -math.inf, None, 0.0, None, []],
    [3, 1e13, None, 0.0, None, []],
    [3, 1.0, math.nan, 0.0, None, []],
    [3, 1.0, False, 0.0, None, []],
    [3, 1.0, None, None, None, []],
    [3, 1.0, None, math.inf, None, []],
    # reports: sender clock
    [3, 1.0, None, 0.0, [[0, 960]], []],
    [3, 1.0, None, 0.0, [[0, 960, 1.0, 0]], []],
    [3, 1.0, None, 0.0, [(0, 960, 1.0, 0)], []],
    [3, 1.0, None, 0.0, [[256, 960, 1.0]], []],
    [3, 1.0, None, 0.0, [[0, U32 + 1, 1.0]], []],  # timestamp > u32
    [3, 1.0, None, 0.0, [[0, -1, 1.0]], []],
    [3, 1.0, None, 0.0, [[0, True, 1.0]], []],
    [3, 1.0, None, 0.0, [[0, 960.0, 1.0]], []],
    [3, 1.0, None, 0.0, [[0, 960, math.nan]], []],
    [3, 1.0, None, 0.0, [[0, 960, None]], []],
    [3, 1.0, None, 0.0, 0, []],
    # reports: streams
    [3, 1.0, None, 0.0, None, None],
    [3, 1.0, None, 0.0, None, GOOD_STREAM_REPORT],
    [3, 1.0, None, 0.0, None, [GOOD_STREAM_REPORT] * (MAX_STREAMS + 1)],  # too many streams
    [3, 1.0, None, 0.0, None, [GOOD_STREAM_REPORT[:5]]],
    [3, 1.0, None, 0.0, None, [[256, 50, 49, 1.0, 40.0, 90.0]]],
    [3, 1.0, None, 0.0, None, [[0, -1, 49, 1.0, 40.0, 90.0]]],  # negative count
    [3, 1.0, None, 0.0, None, [[0, 50, -1, 1.0, 40.0, 90.0]]],
    [3, 1.0, None, 0.0, None, [[0, U32 + 1, 49, 1.0, 40.0, 90.0]]],  # count > u32
    [3, 1.0, None, 0.0, None, [[0, 50, U32 + 1, 1.0, 40.0, 90.0]]],
    [3, 1.0, None, 0.0, None, [[0, True, 49, 1.0, 40.0, 90.0]]],  # bool for a count
    [3, 1.0, None, 0.0, None, [[0, 50.0, 49, 1.0, 40.0, 90.0]]],
    [3, 1.0, None, 0.0, None, [[0, 50, 49, math.nan, 40.0, 90.0]]],
    [3, 1.0, None, 0.0, None, [[0, 50, 49, 1.0, math.inf, 90.0]]],
    [3, 1.0, None, 0.0, None, [[0, 50, 49, 1.0, 40.0, None]]],
    [3, 1.0, None, 0.0, None, [[0, 50, 49, 1.0, 40.0, True]]],
]


def test_malformed_fixtures_are_otherwise_valid() -> None:
    # The malformed cases differ from these in one field only, so they test that field.
    assert decode_media(_pack([1, [GOOD_OFFER]])) == MediaOffer((VOICE,))
    assert isinstance(decode_media(_pack(GOOD_REPORT)), MediaReport)
    assert isinstance(
        decode_media(_pack([3, 1.0, None, 0.0, [[0, U32, 1.0]], [[0, U32, U32, 0, 0, 0, U32]]])), MediaReport
    )
    assert decode_media(_pack([4, 255])) == MediaStop(255)
    assert decode_media(_pack([5, 2])) == KeyframeRequest(2)
    assert decode_media(_pack([2, list(range(MAX_STREAMS)), ""])) == MediaAnswer(tuple(range(MAX_STREAMS)))


@pytest.mark.parametrize("body", MALFORMED, ids=lambda b: repr(b)[:60])
def test_malformed_fields(body: Any) -> None:
    with pytest.raises(MessageError):
        decode_media(_pack(body))


def test_oversized_message() -> None:
    big = _pack([2, [0], "x" * 200]) + b"\x00" * MAX_MEDIA_CONTROL
    with pytest.raises(MessageError, match="bytes"):
        decode_media(big)
    with pytest.raises(MessageError):
        decode_media(b"\x94" + b"\x00" * MAX_MEDIA_CONTROL)
    with pytest.raises(MessageError):
        decode_media(_pack([2, [0], "x" * 300]))  # a string longer than any field allows


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used
        b"\x92\x04",  # truncated
        b"\x92\x04\x00\x00",  # trailing data
        b"\x92\x02\x91\x00",  # truncated string
        b"\x93\x02\x90\xa2\xff\xfe",  # invalid UTF-8
        b"\x92\x04\xc4\x01\x00",  # bin where an int is expected
        b"\x82\x01\x02\x03\x04",  # a map
        b"\x92\x04\xd4\x01\x00",  # ext type
        b"\x92\x04\xd6\xff\x00\x00\x00\x00",  # msgpack timestamp
        b"\x91" * 3000 + b"\x00",  # deep nesting
        b"\xdd\xff\xff\xff\xff",  # array of 4G elements announced
        b"\xdb\xff\xff\xff\xff",  # string of 4G bytes announced
    ],
)
def test_malformed_bytes(data: bytes) -> None:
    with pytest.raises(MessageError):
        decode_media(data)


def _decode_or_message_error(data: bytes) -> MediaControl | None:
    try:
        return decode_media(data)
    except MessageError:
        return None
    # any other exception propagates and fails the test


def test_random_blobs_only_raise_message_error() -> None:
    rng = random.Random(20261125)
    valid = [encode_media(m) for m in ROUND_TRIPS] + [_pack(GOOD_REPORT)]
    decoded = 0
    for i in range(3000):
        if i % 3 == 0:
            data = rng.randbytes(rng.randrange(0, 64))
        else:  # mutations of valid messages reach deeper into the parser
            buf = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                pos = rng.randrange(len(buf))
                buf[pos] = rng.randrange(256) if i % 3 == 1 else buf[pos] ^ (1 << rng.randrange(8))
            data = bytes(buf[: rng.randrange(1, len(buf) + 1)] if rng.random() < 0.3 else buf)
        msg = _decode_or_message_error(data)
        if msg is not None:
            decoded += 1
            # Whatever decodes re-encodes to something that decodes to the same message.
            assert decode_media(encode_media(msg)) == msg
    assert decoded > 50  # the mutations do exercise the successful paths too


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=10), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(kind=st.integers(min_value=0, max_value=5), rest=st.lists(_values, max_size=7))
def test_structured_garbage_only_raises_message_error(kind: int, rest: list[Any]) -> None:
    _decode_or_message_error(_pack([kind, *rest]))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_binary_garbage_only_raises_message_error(data: bytes) -> None:
    _decode_or_message_error(data)


# -- report clock ------------------------------------------------------------------


def _exchange(
    a: ReportClock,
    b: ReportClock,
    *,
    start: float,
    rounds: int,
    offset: float,
    a_to_b: float,
    b_to_a: float,
    hold: float,
) -> None:
    """A sends a report, B holds it for `hold` and answers; times on A's clock (B's is A's + offset)."""
    t = start
    for _ in range(rounds):
        report = decode_media(encode_media(MediaReport(*a.stamp(t))))
        assert isinstance(report, MediaReport)
        t += a_to_b
        b.on_report(report, t + offset)
        t += hold
        answer = decode_media(encode_media(MediaReport(*b.stamp(t + offset))))
        assert isinstance(answer, MediaReport)
        assert answer.hold == pytest.approx(hold)
        t += b_to_a
        a.on_report(answer, t)
        t += 1.0 - a_to_b - hold - b_to_a


def test_report_clock_symmetric_delay() -> None:
    a, b = ReportClock(), ReportClock()
    _exchange(a, b, start=1000.0, rounds=6, offset=123.4, a_to_b=0.04, b_to_a=0.04, hold=0.3)
    assert a.rtt == pytest.approx(0.08, abs=1e-6)
    assert a.offset == pytest.approx(123.4, abs=1e-6)
    # B measured too, from A's echoes of its reports.
    assert b.rtt == pytest.approx(0.08, abs=1e-6)
    assert b.offset == pytest.approx(-123.4, abs=1e-6)


def test_report_clock_asymmetric_delay() -> None:
    a, b = ReportClock(), ReportClock()
    _exchange(a, b, start=50.0, rounds=5, offset=123.4, a_to_b=0.01, b_to_a=0.07, hold=0.25)
    assert a.rtt == pytest.approx(0.08, abs=1e-6)
    assert a.offset is not None
    # The NTP estimate is off by half the asymmetry, never more.
    assert abs(a.offset - 123.4) <= (0.07 - 0.01) / 2 + 1e-6
    assert a.offset == pytest.approx(123.4 - 0.03, abs=1e-6)  # B's t is 70 ms old on arrival, not 40


def test_report_clock_offset_from_the_fastest_round_trip() -> None:
    a, b = ReportClock(), ReportClock()
    _exchange(a, b, start=0.0, rounds=3, offset=123.4, a_to_b=0.3, b_to_a=0.01, hold=0.1)
    assert a.offset is not None and abs(a.offset - 123.4) > 0.1  # queueing one way
    _exchange(a, b, start=10.0, rounds=1, offset=123.4, a_to_b=0.02, b_to_a=0.02, hold=0.1)
    assert a.offset == pytest.approx(123.4, abs=1e-6)
    assert a.rtt is not None and 0.04 < a.rtt < 0.31  # smoothed, moving toward the new rtt
    # A later slow exchange does not displace the best sample.
    _exchange(a, b, start=11.0, rounds=2, offset=123.4, a_to_b=0.01, b_to_a=0.4, hold=0.1)
    assert a.offset == pytest.approx(123.4, abs=1e-6)


def test_report_clock_ignores_negative_and_absurd_rtt() -> None:
    clock = ReportClock()
    clock.on_report(MediaReport(500.0, echo=10.0, hold=0.1), now=10.2)
    assert clock.rtt == pytest.approx(0.1)
    offset = clock.offset
    assert offset == pytest.approx(500.0 - 10.15)
    for report, now in [
        (MediaReport(600.0, echo=20.0, hold=0.5), 20.2),  # negative: held longer than the round trip
        (MediaReport(600.0, echo=25.0, hold=0.0), 20.0),  # echo from our future
        (MediaReport(600.0, echo=20.0, hold=0.0), 90.0),  # a 70 s round trip
        (MediaReport(600.0, echo=20.0, hold=-100.0), 20.5),  # forged hold
    ]:
        clock.on_report(report, now)
        assert clock.rtt == pytest.approx(0.1)
        assert clock.offset == offset
    # The ignored reports still are the newest we got: ours echo the last one.
    t, echo, hold = clock.stamp(21.0)
    assert (t, echo) == (21.0, 600.0) and hold == pytest.approx(0.5)


def test_report_clock_stamp_before_any_report() -> None:
    clock = ReportClock()
    assert clock.stamp(5.0) == (5.0, None, 0.0)
    assert clock.rtt is None and clock.offset is None
    clock.on_report(MediaReport(77.0), now=6.0)  # no echo yet: nothing measured
    assert clock.rtt is None and clock.offset is None
    assert clock.stamp(6.25) == (6.25, 77.0, 0.25)


# -- reception statistics -------------------------------------------------------------


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


# -- voice receiver on a virtual clock --------------------------------------------------


def _tone_frames(n: int, hz: float = TONE_HZ) -> list[npt.NDArray[np.int16]]:
    t = np.arange(n * FRAME_SAMPLES) / SAMPLE_RATE
    pcm = np.round(TONE_AMPLITUDE * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return [pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(n)]


def _peak_hz(pcm: npt.NDArray[np.float64]) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(pcm))


def _rms(pcm: npt.NDArray[Any]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


_TONE_PAYLOADS: list[bytes] = []


def _tone_payloads(n: int) -> list[bytes]:
    if len(_TONE_PAYLOADS) < n:
        encoder = OpusEncoder(bitrate=32000, fec=True, expected_loss_percent=10)
        _TONE_PAYLOADS[:] = [encoder.encode(f) for f in _tone_frames(n)]
    return _TONE_PAYLOADS[:n]


SEQ0 = U32 - 100  # the sequence wraps mid-call
TS0 = U32 - 50 * FRAME_SAMPLES  # and so does the timestamp, elsewhere
T0 = 1000.0  # virtual capture time of frame 0


def _datagram(i: int, payload: bytes) -> bytes:
    return bytes(
        hotpaths.packet.encode_packet(0, (SEQ0 + i) & U32, (TS0 + i * FRAME_SAMPLES) & U32, 0, 1, 0, payload)
    )


class _Call:
    """Packets sent every 20 ms from T0, delivered with the given delays; render every 20 ms."""

    def __init__(self, delays: list[float | None]) -> None:
        payloads = _tone_payloads(len(delays))
        self.arrivals = sorted(
            (T0 + i * FRAME_S + d, i, _datagram(i, payloads[i]))
            for i, d in enumerate(delays)
            if d is not None
        )
        self.receiver = VoiceReceiver(stream_id=0, decoder=OpusDecoder())
        self.receiver.set_sender_clock(TS0, T0)
        self.out: list[tuple[float, npt.NDArray[np.int16] | None]] = []
        self._next = 0
        self.now = T0 + 0.007  # the device clock's phase is unrelated to the sender's

    def run_until(self, end: float) -> None:
        while self.now < end:
            while self._next < len(self.arrivals) and self.arrivals[self._next][0] <= self.now:
                arrival, _, data = self.arrivals[self._next]
                self.receiver.push(data, arrival)
                self._next += 1
            self.out.append((self.now, self.receiver.render(self.now)))
            self.now += FRAME_S


def _jittered_delays(
    n: int, *, seed: int, loss: float, jitter: float, base: float = 0.03
) -> list[float | None]:
    rng = random.Random(seed)
    return [None if rng.random() < loss else base + rng.uniform(0.0, jitter) for _ in range(n)]


def test_receiver_plays_the_tone_through_loss_and_jitter() -> None:
    n = 300  # 6 s
    delays = _jittered_delays(n, seed=7, loss=0.05, jitter=0.03)
    lost = sum(d is None for d in delays)
    assert 8 <= lost <= 25
    call = _Call(delays)
    call.run_until(T0 + 1.0)
    call.receiver.stats(call.now)  # marks the bitrate's start
    mark = call.now
    call.run_until(call.arrivals[-1][0] + FRAME_S)  # one render after the last packet
    rendered = [pcm for _, pcm in call.out]
    start = next(k for k, pcm in enumerate(rendered) if pcm is not None)
    assert start * FRAME_S < 0.2  # playout starts after the prefetch, not later
    playing = rendered[start:]
    assert all(pcm is not None and pcm.shape == (FRAME_SAMPLES,) for pcm in playing)
    frames = [pcm for pcm in playing if pcm is not None]
    # Never a silent frame once playing: losses are filled by FEC or PLC. The floor is 5 % of the
    # tone, not more: libopus (SILK, as used with FEC) recovers a pure tone slowly after a loss, the
    # FEC frame and the first frame decoded after a concealment measure 10-30 % of the tone.
    levels = np.array([_rms(pcm) for pcm in frames]) / TONE_RMS
    assert levels.min() > 0.05, levels.min()
    assert np.mean(levels > 0.7) > 0.7  # and most frames are the tone at (near) full level
    audio = np.concatenate(frames[5:]).astype(np.float64)  # past the codec's start-up
    assert abs(_peak_hz(audio) - TONE_HZ) < 5.0
    assert 0.7 * TONE_RMS < _rms(audio) < 1.3 * TONE_RMS
    stats = call.receiver.stats(call.now)
    assert stats.packets == n - lost
    assert stats.concealed > 0 and stats.fec > 0
    assert stats.fec <= stats.concealed
    assert stats.malformed == 0 and stats.decode_errors == 0
    assert stats.jitter_ms > 3.0  # 30 ms uniform jitter was measured
    # End to end: 30 ms network + up to 30 ms jitter + the buffer; bounded.
    assert 30.0 < stats.e2e_ms <= stats.e2e_p95_ms < 200.0
    samples = call.receiver.e2e_samples()
    assert len(samples) > n * 0.8
    assert min(samples) >= 0.03  # no frame plays before it arrived
    assert stats.speaking
    # The level is that of the frame just played (the tone is at -13.5 dBFS).
    last = call.out[-1][1]
    assert last is not None
    assert stats.level_dbfs == pytest.approx(20 * math.log10(_rms(last) / 32768), abs=0.06)
    assert stats.level_dbfs > -30.0
    # Opus at 32 kb/s plus the headers, since the previous stats() call.
    assert call.now > mark + 4.0
    assert 20.0 < stats.bitrate_kbps < 60.0


def test_receiver_clean_stream_is_near_lossless() -> None:
    n = 150
    call = _Call([0.02] * n)
    call.run_until(T0 + n * FRAME_S + 0.1)
    stats = call.receiver.stats(call.now)
    assert stats.concealed - stats.fec <= 3  # at most a few expands while settling, no losses
    assert stats.fec == 0
    playing = [pcm for _, pcm in call.out if pcm is not None]
    audio = np.concatenate(playing[5 : n - 10]).astype(np.float64)
    assert abs(_peak_hz(audio) - TONE_HZ) < 5.0
    # Constant 20 ms network delay: e2e is that plus the (small) buffer.
    assert 20.0 <= stats.e2e_ms < 120.0


def test_receiver_buffer_returns_to_the_floor_after_jitter() -> None:
    n_jitter, n_calm = 250, 450  # 5 s of 60 ms jitter, then 9 s of none
    delays = _jittered_delays(n_jitter, seed=3, loss=0.0, jitter=0.06, base=0.03) + [0.04] * n_calm
    call = _Call(delays)
    calm_start = T0 + n_jitter * FRAME_S
    call.run_until(calm_start)
    during = call.receiver.stats(call.now)
    assert during.target_ms >= 60.0  # the buffer grew for the jitter
    call.run_until(calm_start + 6.0)
    after = call.receiver.stats(call.now)
    assert after.target_ms <= 40.0
    assert after.buffer_ms <= after.target_ms + 25.0
    _, p95 = call.receiver.e2e_quantiles()
    assert p95 < 0.04 + 0.02 + after.target_ms / 1000 + 0.02


def test_receiver_counts_malformed_pushes_only() -> None:
    receiver = VoiceReceiver(stream_id=0)
    payload = _tone_payloads(1)[0]
    good = _datagram(0, payload)
    bad = [
        b"",
        b"\x01\x00",  # truncated header
        good[:14],
        bytes([9]) + good[1:],  # unknown version
        bytes(hotpaths.packet.encode_packet(1, 0, 0, 0, 1, 0, payload)),  # not the stream we accepted
        bytes(hotpaths.packet.encode_packet(0, 0, 0, 0, 2, 0, payload)),  # a fragment
        bytes(hotpaths.packet.encode_packet(0, 0, 0, 1, 2, 0, payload)),
        bytes(hotpaths.packet.encode_packet(0, 0, 0, 0, 1, 0, b"")),  # no payload
        bytes(hotpaths.packet.encode_packet(0, 0, 0, 0, 1, 0, b"\xfc" * (MAX_PACKET_BYTES + 1))),
    ]
    for k, data in enumerate(bad):
        receiver.push(data, 1.0 + k * 0.001)
    stats = receiver.stats(2.0)
    assert stats.malformed == len(bad)
    assert stats.packets == 0
    assert receiver.jitter.stats()["received"] == 0
    assert receiver.render(2.0) is None
    assert stats.decode_errors == 0 and stats.concealed == 0
    receiver.push(good, 2.0)
    assert receiver.stats(2.0).packets == 1 and receiver.malformed == len(bad)


def test_receiver_garbage_opus_is_a_decode_error_not_a_crash() -> None:
    receiver = VoiceReceiver(stream_id=0)
    garbage = b"\xff\xff\xff\xff\xff"  # a code-3 packet with an impossible frame count
    now = 1.0
    for i in range(10):
        receiver.push(bytes(hotpaths.packet.encode_packet(0, i, i * FRAME_SAMPLES, 0, 1, 0, garbage)), now)
        now += FRAME_S
    outputs = [receiver.render(now + k * FRAME_S) for k in range(10)]
    played = [pcm for pcm in outputs if pcm is not None]
    assert played and all(pcm.shape == (FRAME_SAMPLES,) for pcm in played)
    assert receiver.decode_errors > 0 and receiver.malformed == 0


# -- voice sender --------------------------------------------------------------------------


def _decode(data: bytes) -> Any:
    return hotpaths.packet.decode_packet(data)


def test_sender_packets_are_consecutive() -> None:
    sender = VoiceSender(rng=random.Random(1))
    frames = _tone_frames(60)
    packets: list[Any] = []
    for i, frame in enumerate(frames):
        data = sender.packetize(frame, 10.0 + i * FRAME_S)
        assert data is not None
        packets.append(_decode(data))
        assert sender.clock == (packets[-1].timestamp, 10.0 + i * FRAME_S)
    for prev, cur in itertools.pairwise(packets):
        assert cur.stream_id == 0 and cur.fragment_count == 1 and cur.fragment_index == 0
        assert cur.sequence == (prev.sequence + 1) & U32
        assert cur.timestamp == (prev.timestamp + FRAME_SAMPLES) & U32
    assert sender.frames_encoded == 60
    assert sender.bytes_encoded == sum(len(bytes(p.payload)) for p in packets)
    # The payloads are the tone.
    decoder = OpusDecoder()
    pcm = np.concatenate([decoder.decode(bytes(p.payload)) for p in packets[5:]]).astype(np.float64)
    assert abs(_peak_hz(pcm) - TONE_HZ) < 5.0
    assert sender.offer() == VOICE and refuse_reason(sender.offer()) is None


def test_sender_random_starts_differ() -> None:
    frame = _tone_frames(1)[0]
    firsts = set()
    for seed in range(4):
        data = VoiceSender(rng=random.Random(seed)).packetize(frame, 0.0)
        assert data is not None
        packet = _decode(data)
        firsts.add((packet.sequence, packet.timestamp))
    assert len(firsts) == 4


def test_sender_wraps() -> None:
    sender = VoiceSender(rng=random.Random(2))
    sender._sequence, sender._timestamp = U32, U32 - 100  # steer to the wrap
    frame = _tone_frames(1)[0]
    first, second = (sender.packetize(frame, float(k)) for k in range(2))
    assert first is not None and second is not None
    a, b = _decode(first), _decode(second)
    assert (a.sequence, b.sequence) == (U32, 0)
    assert (a.timestamp, b.timestamp) == (U32 - 100, FRAME_SAMPLES - 101)


def test_sender_mute_stops_the_clock() -> None:
    sender = VoiceSender(rng=random.Random(4))
    frames = _tone_frames(20)
    before = sender.packetize(frames[0], 1.0)
    assert before is not None
    clock = sender.clock
    sender.muted = True
    for k in range(1, 10):
        assert sender.packetize(frames[k], 1.0 + k * FRAME_S) is None
        assert sender.speaking is False
    assert sender.clock == clock
    assert sender.frames_encoded == 1
    assert sender.level_dbfs > -20.0  # the level meter still runs while muted
    sender.muted = False
    after = sender.packetize(frames[10], 1.2)
    assert after is not None
    a, b = _decode(before), _decode(after)
    assert b.sequence == (a.sequence + 1) & U32
    assert b.timestamp == (a.timestamp + FRAME_SAMPLES) & U32  # a pause, not a jump
    assert sender.clock == (b.timestamp, 1.2)


def test_sender_to_receiver() -> None:
    sender = VoiceSender(rng=random.Random(9))
    receiver = VoiceReceiver(stream_id=0)
    frames = _tone_frames(100)
    out: list[npt.NDArray[np.int16]] = []
    for i, frame in enumerate(frames):
        now = 5.0 + i * FRAME_S
        data = sender.packetize(frame, now)
        assert data is not None and sender.clock is not None
        if i == 0:
            receiver.set_sender_clock(*sender.clock)
        receiver.push(data, now + 0.01)
        pcm = receiver.render(now + 0.015)
        if pcm is not None:
            out.append(pcm)
    assert len(out) > 85
    assert abs(_peak_hz(np.concatenate(out[5:]).astype(np.float64)) - TONE_HZ) < 5.0
    p50, _ = receiver.e2e_quantiles()
    assert 0.01 < p50 < 0.15


# -- offer acceptance ------------------------------------------------------------------------


def test_refuse_reason_accepts_voice() -> None:
    assert refuse_reason(VOICE) is None
    assert refuse_reason(StreamOffer(0, "audio", "opus", 48000, 1, 20, False)) is None  # FEC is optional


@pytest.mark.parametrize(
    ("offer", "words"),
    [
        (StreamOffer(1, "video", "vp8", 90000, 1, 33, False), "video"),
        (StreamOffer(0, "video", "opus", 48000, 1, 20, True), "video"),
        (StreamOffer(1, "audio", "opus", 48000, 1, 20, True), "stream 0"),
        (StreamOffer(0, "audio", "pcmu", 48000, 1, 20, True), "Opus"),
        (StreamOffer(0, "audio", "opus", 16000, 1, 20, True), "48 kHz"),
        (StreamOffer(0, "audio", "opus", 48000, 2, 20, True), "mono"),
        (StreamOffer(0, "audio", "opus", 48000, 1, 10, True), "20 ms"),
    ],
)
def test_refuse_reason_refuses(offer: StreamOffer, words: str) -> None:
    reason = refuse_reason(offer)
    assert reason is not None and words in reason
    assert f"stream {offer.stream_id}" in reason
