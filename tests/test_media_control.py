"""Media control messages, sans-IO: encode/decode round trips, malformed and random input
(which only ever raises MessageError), and the report clock's round-trip time and offset."""

from __future__ import annotations

import math
import random
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from tests.voice_helpers import U32, VOICE


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
