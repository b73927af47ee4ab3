"""Per-stream reception statistics, RFC 3550 style (sans-IO).

Counts what arrived against what the sequence numbers say was sent, per
reporting interval (loss is never cumulative), and the interarrival jitter:
J += (|D| - J) / 16, D the change in transit time between two consecutive
arrivals, in seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

_WRAP = 1 << 32
MAX_JUMP = 500  # packets (10 s of voice): further from the stream is a stray, not a loss
RESET_AFTER = 3  # consecutive strays that are a new stream


@dataclass(frozen=True)
class Interval:
    expected: int
    received: int

    @property
    def loss(self) -> float:
        if self.expected <= 0:
            return 0.0
        return max(0.0, min(1.0, 1.0 - self.received / self.expected))


class ReceptionStats:
    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.received = 0  # packets, all time
        self.bytes = 0
        self.jitter = 0.0  # seconds
        self._started = False
        self._max_ext = 0  # highest extended sequence seen
        self._base_ext = 0  # first extended sequence
        self._transit: float | None = None
        self._last_ts_ext = 0
        self._interval_start_ext = 0  # _max_ext at the start of the interval
        self._interval_received = 0
        self._strays = 0
        self.strays = 0  # packets far outside the stream, not counted

    def on_packet(self, sequence: int, timestamp: int, size: int, arrival: float) -> None:
        """Count one accepted packet (the caller already rejected garbage)."""
        if self._started:
            delta = (sequence - self._max_ext) % _WRAP
            if delta >= _WRAP // 2:
                delta -= _WRAP
            if abs(delta) > MAX_JUMP:
                self._strays += 1
                if self._strays < RESET_AFTER:
                    self.strays += 1
                    return
                self._started = False  # a new stream: start counting afresh
                self._transit = None
        self._strays = 0
        self.received += 1
        self.bytes += size
        self._interval_received += 1
        if not self._started:
            self._started = True
            self._max_ext = sequence
            self._base_ext = sequence
            self._interval_start_ext = sequence - 1
            self._last_ts_ext = timestamp
        else:
            # Unwrap near the highest sequence seen so far.
            delta = (sequence - self._max_ext) % _WRAP
            if delta >= _WRAP // 2:
                delta -= _WRAP
            ext = self._max_ext + delta
            self._max_ext = max(self._max_ext, ext)
            tdelta = (timestamp - self._last_ts_ext) % _WRAP
            if tdelta >= _WRAP // 2:
                tdelta -= _WRAP
            self._last_ts_ext += tdelta
        transit = arrival - self._last_ts_ext / self.clock_rate
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < 10.0:  # a jump (new stream, clock reset) is not jitter
                self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

    def interval(self) -> Interval:
        """What was expected and received since the last call; starts a new interval."""
        expected = max(0, self._max_ext - self._interval_start_ext) if self._started else 0
        out = Interval(expected, min(self._interval_received, expected) if expected else 0)
        self._interval_start_ext = self._max_ext
        self._interval_received = 0
        return out


class RateMarks:
    """Bitrate over the last few seconds from (time, total bytes) marks, whoever asks and on any clock:
    a mark is kept at most every 0.5 s, and the rate is measured from one 0.5 to 3 s old."""

    def __init__(self) -> None:
        self._marks: deque[tuple[float, int]] = deque(maxlen=8)

    def mark(self, now: float, total_bytes: int) -> None:
        if not self._marks or now - self._marks[-1][0] >= 0.5:
            self._marks.append((now, total_bytes))

    def bitrate(self, now: float, total_bytes: int) -> float:
        """Bits per second since a recent mark (0 until there is one); also marks now."""
        marks = self._marks
        start = next(((t, b) for t, b in marks if 0.5 < now - t <= 3.0), marks[0] if marks else None)
        self.mark(now, total_bytes)
        if start is None or now <= start[0]:
            return 0.0
        return (total_bytes - start[1]) * 8 / (now - start[0])
