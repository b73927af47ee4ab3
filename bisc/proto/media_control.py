"""Media negotiation and receiver reports on a connection's control stream.

Sans-IO: messages in and out as bytes, time passed in by the caller.

- MediaOffer: the streams a peer wants to send (id, kind, codec, clock rate,
  channels, frame length, FEC). Sent on every new link when media starts.
- MediaAnswer: the offered stream ids the receiver accepts. A sender sends a
  stream's datagrams to a peer only after that peer accepted it; a receiver
  routes only the streams it accepted.
- MediaReport: once per second each way. It carries the sender's clock
  (`t`) and echoes the last report it got (`echo`, and `hold`, how long it
  held it), so each end measures the round trip from report round trips; the
  sender's media clock (`sr`: a stream timestamp and the sender time it was
  captured), so the receiver can map timestamps to capture times; and, per
  received stream, the loss and jitter of the last interval.
- MediaStop: the sender stopped a stream (so the receiver can flush it).
- KeyframeRequest: the receiver lost part of a video stream and needs a
  picture it can decode on its own (a PLI).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack

from bisc.proto.messages import MessageError

MAX_STREAMS = 8
MAX_MEDIA_CONTROL = 4096
VOICE_STREAM = 0
OPUS = "opus"

_OFFER, _ANSWER, _REPORT, _STOP, _KEYFRAME = 1, 2, 3, 4, 5
CAMERA_STREAM = 1
SCREEN_STREAM = 2


@dataclass(frozen=True)
class StreamOffer:
    stream_id: int
    kind: str  # "audio" (video comes later)
    codec: str
    clock_rate: int
    channels: int
    frame_ms: int
    fec: bool

    def fields(self) -> list[Any]:
        return [
            self.stream_id,
            self.kind,
            self.codec,
            self.clock_rate,
            self.channels,
            self.frame_ms,
            self.fec,
        ]


@dataclass(frozen=True)
class MediaOffer:
    streams: tuple[StreamOffer, ...]


@dataclass(frozen=True)
class MediaAnswer:
    accepted: tuple[int, ...]
    reason: str = ""  # why the others were refused


@dataclass(frozen=True)
class StreamReport:
    """What the reporter received of one stream in the last interval."""

    stream_id: int
    expected: int  # packets the sequence numbers say were sent in the interval
    received: int
    jitter_ms: float  # RFC 3550 interarrival jitter
    buffer_ms: float  # the reporter's jitter-buffer delay
    e2e_ms: float  # capture to playout, -1 if unknown
    estimate_bps: int = 0  # the reporter's bandwidth estimate for this stream, 0 if none

    @property
    def loss(self) -> float:
        if self.expected <= 0:
            return 0.0
        return max(0.0, min(1.0, 1.0 - self.received / self.expected))


@dataclass(frozen=True)
class MediaReport:
    t: float  # reporter's clock, seconds
    echo: float | None = None  # `t` of the last report received, or None
    hold: float = 0.0  # seconds between receiving that report and sending this one
    # Per stream the reporter sends: (stream id, media timestamp, reporter time of its capture).
    sr: tuple[tuple[int, int, float], ...] = ()
    streams: tuple[StreamReport, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class MediaStop:
    stream_id: int


@dataclass(frozen=True)
class KeyframeRequest:
    stream_id: int


MediaControl = MediaOffer | MediaAnswer | MediaReport | MediaStop | KeyframeRequest


def encode_media(msg: MediaControl) -> bytes:
    body: list[Any]
    if isinstance(msg, MediaOffer):
        body = [_OFFER, [s.fields() for s in msg.streams[:MAX_STREAMS]]]
    elif isinstance(msg, MediaAnswer):
        body = [_ANSWER, list(msg.accepted[:MAX_STREAMS]), msg.reason[:200]]
    elif isinstance(msg, MediaReport):
        streams = [
            [s.stream_id, s.expected, s.received, s.jitter_ms, s.buffer_ms, s.e2e_ms, s.estimate_bps]
            for s in msg.streams[:MAX_STREAMS]
        ]
        clocks = [list(c) for c in msg.sr[:MAX_STREAMS]]
        body = [_REPORT, msg.t, msg.echo, msg.hold, clocks, streams]
    elif isinstance(msg, KeyframeRequest):
        body = [_KEYFRAME, msg.stream_id]
    else:
        body = [_STOP, msg.stream_id]
    return bytes(msgpack.packb(body, use_bin_type=True))


def _u8(x: Any) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x <= 0xFF:
        raise MessageError("a stream id is a u8")
    return x


def _count(x: Any) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x < 1 << 32:
        raise MessageError("a packet count is a u32")
    return x


def _num(x: Any, *, optional: bool = False) -> float:
    if optional and x is None:
        return math.nan
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or abs(x) > 1e12:
        raise MessageError("a time is a finite number")
    return float(x)


def decode_media(data: bytes) -> MediaControl:
    """Parse one media control message; MessageError if malformed."""
    if len(data) > MAX_MEDIA_CONTROL:
        raise MessageError(f"media control message of {len(data)} bytes")
    try:
        raw = msgpack.unpackb(
            data, raw=False, max_array_len=MAX_STREAMS + 8, max_map_len=0, max_str_len=256, max_bin_len=0
        )
    except Exception as exc:  # msgpack raises a family of unrelated types
        raise MessageError(f"undecodable media control message: {type(exc).__name__}") from None
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], int) or isinstance(raw[0], bool):
        raise MessageError("a media control message is [kind, ...]")
    kind, rest = raw[0], raw[1:]
    if kind == _OFFER and len(rest) == 1 and isinstance(rest[0], list) and len(rest[0]) <= MAX_STREAMS:
        return MediaOffer(tuple(_stream_offer(s) for s in rest[0]))
    if (
        kind == _ANSWER
        and len(rest) == 2
        and isinstance(rest[0], list)
        and len(rest[0]) <= MAX_STREAMS
        and isinstance(rest[1], str)
    ):
        return MediaAnswer(tuple(_u8(s) for s in rest[0]), rest[1])
    if kind == _REPORT and len(rest) == 5:
        return _report(rest)
    if kind == _STOP and len(rest) == 1:
        return MediaStop(_u8(rest[0]))
    if kind == _KEYFRAME and len(rest) == 1:
        return KeyframeRequest(_u8(rest[0]))
    raise MessageError(f"malformed media control message of kind {kind}")


def _stream_offer(s: Any) -> StreamOffer:
    if not isinstance(s, list) or len(s) != 7:
        raise MessageError("a stream offer has 7 fields")
    sid, kind, codec, rate, channels, frame_ms, fec = s
    if not (isinstance(kind, str) and isinstance(codec, str) and isinstance(fec, bool)):
        raise MessageError("malformed stream offer")
    for value in (rate, channels, frame_ms):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1_000_000:
            raise MessageError("malformed stream offer")
    return StreamOffer(_u8(sid), kind, codec, rate, channels, frame_ms, fec)


def _report(rest: list[Any]) -> MediaReport:
    t_raw, echo_raw, hold_raw, sr_raw, streams_raw = rest
    t = _num(t_raw)
    echo = _num(echo_raw, optional=True)
    hold = _num(hold_raw)
    if not isinstance(sr_raw, list) or len(sr_raw) > MAX_STREAMS:
        raise MessageError("sender clocks are a list")
    sr = []
    for clock in sr_raw:
        if not isinstance(clock, list) or len(clock) != 3:
            raise MessageError("a sender clock is [stream, timestamp, time]")
        ts = clock[1]
        if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts <= 0xFFFFFFFF:
            raise MessageError("a media timestamp is a u32")
        sr.append((_u8(clock[0]), ts, _num(clock[2])))
    if not isinstance(streams_raw, list) or len(streams_raw) > MAX_STREAMS:
        raise MessageError("malformed stream reports")
    streams = []
    for s in streams_raw:
        if not isinstance(s, list) or len(s) != 7:
            raise MessageError("a stream report has 7 fields")
        streams.append(
            StreamReport(
                _u8(s[0]), _count(s[1]), _count(s[2]), _num(s[3]), _num(s[4]), _num(s[5]), _count(s[6])
            )
        )
    return MediaReport(t, None if math.isnan(echo) else echo, hold, tuple(sr), tuple(streams))


class ReportClock:
    """Round trip time and clock offset from the report exchange with one peer.

    rtt = now - echo - hold (the peer held our report for `hold`). The peer's
    clock minus ours is estimated NTP-style from the report with the smallest
    round trip of the last few, whose one-way delay is closest to rtt / 2.
    """

    KEEP = 8  # offset samples kept (newest)

    def __init__(self) -> None:
        self.rtt: float | None = None
        self._last_peer_t: float | None = None
        self._last_peer_at = 0.0
        self._samples: list[tuple[float, float]] = []  # (rtt, offset)

    def on_report(self, report: MediaReport, now: float) -> None:
        self._last_peer_t = report.t
        self._last_peer_at = now
        if report.echo is None:
            return
        rtt = now - report.echo - report.hold
        if not 0.0 <= rtt < 60.0:
            return  # a report from before a clock jump, or forged: ignore
        self.rtt = rtt if self.rtt is None else 0.875 * self.rtt + 0.125 * rtt
        self._samples.append((rtt, report.t - (now - rtt / 2.0)))
        del self._samples[: -self.KEEP]

    @property
    def offset(self) -> float | None:
        """Peer clock minus ours, seconds (None until one round trip)."""
        if not self._samples:
            return None
        return min(self._samples)[1]

    def stamp(self, now: float) -> tuple[float, float | None, float]:
        """(t, echo, hold) for our next report."""
        if self._last_peer_t is None:
            return now, None, 0.0
        return now, self._last_peer_t, now - self._last_peer_at
