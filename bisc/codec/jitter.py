"""Audio jitter buffer: the pure-Python reference.

Sans-IO: packets and the current time go in, one playout decision per 20 ms
output-device callback comes out. Playout is paced by the caller (the device),
never by a timer.

- Packets are stored by sequence number (u32, wrapping), at most
  `max_packets` of them; the oldest is dropped when a new one would overflow.
- Duplicates and packets whose frame was already played are counted and
  dropped. A packet whose sequence or timestamp is more than `MAX_JUMP`
  seconds away from the stream is counted and dropped; `RESET_AFTER` such
  packets in a row are taken as a new stream (a reset).
- Target delay (NetEQ's idea): the relative delay of each packet (arrival
  time minus the arrival its timestamp predicts, against the fastest packet
  of the last `WINDOW` packets) goes into a forgetting histogram of 10 ms
  bins; the target is its 95th percentile, clamped to [min_delay, max_delay].
  It starts at `start_delay`, which weighs as START_WEIGHT packets: the
  forget factor grows as 1 - 1/(n + START_WEIGHT) up to FORGET (as NetEQ's
  does), so the start is forgotten after about a second of measurements
  rather than the 3.5 s a fixed factor takes.
- While LOSS_MARGIN_AT or more of the frames lately had no packet of their own
  at their turn, the target is one frame longer: a lost frame is repaired from
  the next packet (Opus FEC or a redundant copy) only if that packet is here.
- The buffer level (audio buffered from the next frame to play on, smoothed)
  is steered into [target, target + one frame] (on a clean link, with the
  target at its floor: [target - half a frame, target + half a frame], one
  frame buffered): "accelerate" drops one frame
  (the smaller of the next two) above it, "expand" conceals one frame without
  consuming any below it. A cut or an insertion in speech is heard, and
  PESQ-style listeners punish it far more than a longer pause between
  sentences, so both wait for silence (payloads under QUIET_RATIO of the mean
  size: Opus spends few bytes on it; and the frame played before it quiet too,
  so a cut never takes the tail of a word and a lone quiet frame, the gap
  between two words, is left alone), where they may act on every pop. In speech
  they act, at most once per ADJUST_INTERVAL pops, only when the level is
  FORCE_FRAMES off target, or after PATIENCE chances (about 3 s) without
  silence, or, once PATIENCE frames went by without a quiet one (music, a
  steady tone: no pause is coming), after SETTLE chances (0.5 s) out of band.
- Missing frames are decoded from the next packet's in-band FEC when it is
  buffered ("fec"), concealed otherwise ("plc"); a buffer run dry expands.
  Frames that a later packet carries as redundancy go in with `recover`.

Every formula here is repeated, in the same order and with C doubles, by
bisc/_native/_jitter.pyx; the equivalence tests compare every decision and
every statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FRAME = "frame"
FEC = "fec"
PLC = "plc"
ACCELERATE = "accelerate"
EXPAND = "expand"
EMPTY = "empty"

BIN = 0.01  # histogram bin width, seconds
FORGET = 0.983  # histogram forget factor per packet
QUANTILE = 0.95
WINDOW = 100  # packets over which the fastest one is the reference (2 s)
LEVEL_KEEP = 0.875  # buffer-level smoothing: level = keep*level + (1-keep)*now
ADJUST_INTERVAL = 4  # pops between two accelerates/expands in speech (in silence: every pop)
MAX_JUMP = 10.0  # seconds; further away is a jump, not the same stream
RESET_AFTER = 3  # consecutive jumps that make a new stream
SKIP_MIN = 3  # a hole of this many frames may be skipped instead of concealed
SIZE_KEEP = 0.98  # smoothing of the mean payload size
QUIET_RATIO = 0.4  # a payload under this fraction of the mean size is (near) silence
FORCE_FRAMES = 4.0  # this far (in frames) off target, adjust even in speech
PATIENCE = 150  # adjustment opportunities (about 3 s) to wait for a quiet frame
SETTLE = 25  # no pauses (a tone, music): chances (0.5 s) out of the band before each forced step
FORGET_RAMP = 64  # packets over which the forget factor grows to FORGET (1 - 1/(64 + 3) > FORGET)
START_WEIGHT = 3.0  # start_delay weighs as this many packets: gone (under 5%) after about a second
LOSS_KEEP = 0.99  # smoothing of the share of frames whose own packet was missing at their turn
LOSS_MARGIN_AT = 0.01  # from this share on, hold one more frame so the next packet can repair a loss

STAT_NAMES = (
    "received",
    "late",
    "duplicates",
    "dropped_overflow",
    "jumps",
    "resets",
    "frames",
    "fec",
    "plc",
    "accelerated",
    "expanded",
    "skipped",
    "empty",
    "recovered",
)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to play for one 20 ms output period.

    kind: "frame" (decode payload), "fec" (frame `sequence` is missing: decode
    it from payload, the next packet, with FEC), "plc" (missing: conceal),
    "accelerate" (play payload; a frame was dropped to cut delay), "expand"
    (conceal one frame without consuming any, to build delay), "empty" (no
    stream playing). sequence is the frame played or concealed, -1 if none.
    """

    kind: str
    payload: bytes
    sequence: int


_EMPTY = Decision(EMPTY, b"", -1)


def _diff(a: int, b: int) -> int:
    """a - b as a signed 32-bit sequence/timestamp difference."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


class JitterBuffer:
    """Reorders, times and conceals one audio stream."""

    def __init__(
        self,
        *,
        frame_samples: int = 960,
        sample_rate: int = 48000,
        min_delay: float = 0.02,
        start_delay: float = 0.08,
        max_delay: float = 1.0,
        max_packets: int = 64,
    ) -> None:
        if not 1 <= frame_samples <= 1 << 20 or not 1 <= sample_rate <= 1 << 24 or max_packets < 2:
            raise ValueError(
                "frame_samples (1..2**20) and sample_rate (1..2**24) must be positive, max_packets at least 2"
            )
        if not 0.0 < min_delay <= start_delay <= max_delay <= 3600.0:
            raise ValueError("need 0 < min_delay <= start_delay <= max_delay <= 3600")
        self.frame_samples = int(frame_samples)
        self.sample_rate = int(sample_rate)
        self.min_delay = float(min_delay)
        self.start_delay = float(start_delay)
        self.max_delay = float(max_delay)
        self.max_packets = int(max_packets)
        self._rate = float(self.sample_rate)
        self._fd = float(self.frame_samples) / self._rate  # frame duration, s
        self._max_jump_frames = int(MAX_JUMP * self._rate / float(self.frame_samples))
        self._max_jump_samples = int(MAX_JUMP * self._rate)
        self._expand_limit = int(self.max_delay / self._fd) + 1
        nbins = int(self.max_delay / BIN + 0.5) + 1
        self._hist = [0.0] * nbins
        start_bin = int(self.start_delay / BIN + 0.5) - 1
        self._hist[max(0, min(nbins - 1, start_bin))] = 1.0
        self._target = self.start_delay
        self._loss_avg = 0.0  # smoothed share of frames missing at their turn
        self._measured = 0  # packets fed to the histogram, up to the one whose forget factor is FORGET
        self._window = [0.0] * WINDOW
        self._stats = dict.fromkeys(STAT_NAMES, 0)
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._store: dict[int, bytes] = {}
        self._recovered: set[int] = set()  # stored frames that came as redundancy, not in their own packet
        self._started = False  # a packet of this stream was accepted
        self._playing = False  # past the prefetch
        self._played = False  # a frame of this stream was played (no rewinding)
        self._next = 0  # sequence of the next frame to play
        self._newest = 0  # newest sequence stored
        self._last_seq = 0  # last accepted packet
        self._last_ts = 0
        self._ext_ts = 0  # its timestamp, unwrapped
        self._count = 0  # relative-delay samples in the window
        self._pos = 0
        self._jumps = 0  # consecutive jumps
        self._level = 0.0
        self._avg_size = -1.0  # mean payload size; negative until the first packet
        self._waiting = 0  # adjustment chances passed up waiting for a quiet frame
        self._prev_quiet = False  # the frame played last was quiet
        self._since_quiet = 0  # frames since the last quiet one, up to PATIENCE
        self._since_adjust = 0
        self._underruns = 0

    # -- introspection ----------------------------------------------------------

    @property
    def buffered_packets(self) -> int:
        return len(self._store)

    @property
    def target_delay(self) -> float:
        """What the level is steered to: the histogram's target, plus a frame on a lossy link."""
        return self._target + self._fd if self._loss_avg >= LOSS_MARGIN_AT else self._target

    def stats(self) -> dict[str, int | float]:
        out: dict[str, int | float] = dict(self._stats)
        out["target_delay_ms"] = self.target_delay * 1000.0
        out["buffer_delay_ms"] = self._level * 1000.0
        return out

    # -- input ------------------------------------------------------------------

    def push(self, sequence: int, timestamp: int, payload: bytes, arrival: float) -> None:
        """Add one received packet."""
        if not 0 <= sequence <= 0xFFFFFFFF or not 0 <= timestamp <= 0xFFFFFFFF:
            raise ValueError("sequence and timestamp must be u32")
        if not isinstance(payload, bytes):
            raise TypeError("payload must be bytes")
        arrival = float(arrival)
        if not math.isfinite(arrival):
            raise ValueError("arrival must be finite")
        stats = self._stats
        stats["received"] += 1
        if self._started:
            offset = _diff(sequence, self._next)
            expected = (self._last_ts + _diff(sequence, self._last_seq) * self.frame_samples) & 0xFFFFFFFF
            tdiff = _diff(timestamp, expected)
            limit = self._max_jump_frames
            if (
                offset > limit
                or offset < -limit
                or tdiff > self._max_jump_samples
                or tdiff < -self._max_jump_samples
            ):
                self._jumps += 1
                if self._jumps < RESET_AFTER:
                    stats["jumps"] += 1
                    return
                stats["resets"] += 1
                self._reset_stream()
                self._start(sequence, timestamp)
                offset = 0
            else:
                self._jumps = 0
                if sequence in self._store:
                    if sequence not in self._recovered:
                        stats["duplicates"] += 1
                        return
                    # Its own packet, after a copy: measured like any other (its lateness is jitter).
                    self._recovered.discard(sequence)
                self._ext_ts += _diff(timestamp, self._last_ts)
                self._last_seq = sequence
                self._last_ts = timestamp
        else:
            self._start(sequence, timestamp)
            offset = 0
        self._measure(arrival)
        if offset < 0:
            if self._played or self._playing:
                stats["late"] += 1
                return
            self._next = sequence  # reordered before the first frame played
        store = self._store
        store[sequence] = payload
        size = float(len(payload))
        self._avg_size = (
            size if self._avg_size < 0.0 else SIZE_KEEP * self._avg_size + (1.0 - SIZE_KEEP) * size
        )
        if len(store) == 1 or _diff(sequence, self._newest) > 0:
            self._newest = sequence
        if len(store) > self.max_packets:
            self._drop_oldest()

    def recover(self, sequence: int, payload: bytes) -> None:
        """Add a frame that arrived as redundancy in a later packet (audio RED): stored if its turn
        has not come and it is not already here; not measured (its arrival says nothing of the
        link's jitter) and not counted as received."""
        if not 0 <= sequence <= 0xFFFFFFFF:
            raise ValueError("sequence must be u32")
        if not isinstance(payload, bytes):
            raise TypeError("payload must be bytes")
        if not self._started or not payload:
            return
        offset = _diff(sequence, self._next)
        if offset < 0 or offset > self._max_jump_frames or sequence in self._store:
            return
        store = self._store
        store[sequence] = payload
        self._recovered.add(sequence)
        self._stats["recovered"] += 1
        if _diff(sequence, self._newest) > 0:
            self._newest = sequence
        if len(store) > self.max_packets:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        oldest = self._oldest()
        del self._store[oldest]
        self._recovered.discard(oldest)
        self._stats["dropped_overflow"] += 1

    def _start(self, sequence: int, timestamp: int) -> None:
        self._started = True
        self._jumps = 0
        self._next = sequence
        self._newest = sequence
        self._last_seq = sequence
        self._last_ts = timestamp
        self._ext_ts = timestamp

    def _oldest(self) -> int:
        """The stored sequence earliest relative to the next frame to play."""
        nxt = self._next
        best = 0
        best_off = 0
        first = True
        for seq in self._store:
            off = _diff(seq, nxt)
            if first or off < best_off:
                best = seq
                best_off = off
                first = False
        return best

    def _measure(self, arrival: float) -> None:
        """Feed the relative delay of the packet just accepted to the histogram."""
        x = arrival - float(self._ext_ts) / self._rate
        window = self._window
        window[self._pos] = x
        self._pos = (self._pos + 1) % WINDOW
        if self._count < WINDOW:
            self._count += 1
        fastest = x
        for i in range(self._count):
            v = window[i]
            if v < fastest:
                fastest = v
        rel = x - fastest
        hist = self._hist
        nbins = len(hist)
        q = rel / BIN
        index = nbins - 1 if q >= float(nbins) else int(q)
        forget = FORGET
        if self._measured < FORGET_RAMP:
            self._measured += 1
            forget = 1.0 - 1.0 / (float(self._measured) + START_WEIGHT)
            if forget > FORGET:
                forget = FORGET
        for i in range(nbins):
            hist[i] *= forget
        hist[index] += 1.0 - forget
        acc = 0.0
        i = 0
        while i < nbins - 1:
            acc += hist[i]
            if acc >= QUANTILE:
                break
            i += 1
        target = float(i + 1) * BIN
        if target < self.min_delay:
            target = self.min_delay
        elif target > self.max_delay:
            target = self.max_delay
        self._target = target

    # -- output -----------------------------------------------------------------

    def pop(self, now: float) -> Decision:
        """What to play for the next 20 ms (call once per device period)."""
        store = self._store
        stats = self._stats
        fd = self._fd
        if not self._playing:
            if not store:
                stats["empty"] += 1
                return _EMPTY
            oldest = self._oldest()
            span = _diff(self._newest, oldest) + 1
            if float(span) * fd < self._target:
                stats["empty"] += 1
                return _EMPTY
            self._playing = True
            self._next = oldest
            self._level = float(span) * fd
            self._since_adjust = 0
            self._underruns = 0
        nxt = self._next
        buffered = _diff(self._newest, nxt) + 1 if store else 0
        if buffered < 0:
            buffered = 0
        self._level = LEVEL_KEEP * self._level + (1.0 - LEVEL_KEEP) * (float(buffered) * fd)
        self._since_adjust += 1
        target = self._target
        if buffered == 0:
            self._underruns += 1
            if self._underruns > self._expand_limit:  # the stream stopped: prefetch again
                self._playing = False
                self._level = 0.0
                stats["empty"] += 1
                return _EMPTY
            self._since_adjust = 0
            stats["expanded"] += 1
            return Decision(EXPAND, b"", nxt)
        self._underruns = 0
        payload = store.pop(nxt, None)
        missed = payload is None or nxt in self._recovered
        self._recovered.discard(nxt)
        self._loss_avg = LOSS_KEEP * self._loss_avg + ((1.0 - LOSS_KEEP) if missed else 0.0)
        if self._loss_avg >= LOSS_MARGIN_AT:
            target += fd
        if payload is None:
            after = (nxt + 1) & 0xFFFFFFFF
            following = store.get(after)
            if following is not None:
                self._next = after
                stats["fec"] += 1
                return Decision(FEC, following, nxt)
            oldest = self._oldest()
            hole = _diff(oldest, nxt)
            if hole >= SKIP_MIN and float(buffered - hole) * fd >= target:
                stats["skipped"] += hole
                self._level -= float(hole) * fd
                nxt = oldest
                payload = store.pop(nxt)
                self._recovered.discard(nxt)
            else:
                self._next = after
                stats["plc"] += 1
                return Decision(PLC, b"", nxt)
        self._played = True
        after = (nxt + 1) & 0xFFFFFFFF
        quiet = QUIET_RATIO * self._avg_size
        is_quiet = float(len(payload)) <= quiet
        if is_quiet:
            self._since_quiet = 0
        elif self._since_quiet < PATIENCE:
            self._since_quiet += 1
        if is_quiet or self._since_adjust >= ADJUST_INTERVAL:
            # No pause for PATIENCE frames (music, a tone: none will come), or waited that long.
            waited = self._waiting
            urgent = waited >= PATIENCE or (self._since_quiet >= PATIENCE and waited >= SETTLE)
            # The band: [target, target + a frame]; on a clean link (target at the floor, nothing
            # missed) centred on it instead: one frame buffered is enough there.
            clean = target <= self.min_delay
            if self._level > target + (0.5 * fd if clean else fd):
                following = store.get(after)
                if following is not None:
                    if (
                        (is_quiet and self._prev_quiet and float(len(following)) <= quiet)
                        or self._level > target + FORCE_FRAMES * fd
                        or urgent
                    ):
                        del store[after]
                        self._recovered.discard(after)
                        self._next = (nxt + 2) & 0xFFFFFFFF
                        self._level -= fd
                        self._since_adjust = 0
                        self._waiting = 0
                        stats["accelerated"] += 1
                        self._prev_quiet = is_quiet
                        if len(following) < len(payload):  # drop the likelier silence
                            return Decision(ACCELERATE, payload, nxt)
                        return Decision(ACCELERATE, following, after)
                    self._waiting += 1
            elif self._level < (target - 0.5 * fd if clean else target):
                if (is_quiet and self._prev_quiet) or self._level < target - FORCE_FRAMES * fd or urgent:
                    store[nxt] = payload  # not consumed (nor missed again)
                    self._level += fd
                    self._since_adjust = 0
                    self._waiting = 0
                    stats["expanded"] += 1
                    return Decision(EXPAND, b"", nxt)
                self._waiting += 1
            else:
                self._waiting = 0
        self._next = after
        stats["frames"] += 1
        self._prev_quiet = is_quiet
        return Decision(FRAME, payload, nxt)
