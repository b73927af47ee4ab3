"""Frame-level video jitter buffer (sans-IO).

Complete frames (from the reassembler) and the current time go in; frames to
decode, in order, come out. Video plays as soon as it can: a frame that is
next in line is released at once. A frame that arrives after a gap waits up
to `wait` seconds for the missing one (it may only be late, or reordered);
when the wait runs out the gap is a loss, and since every later frame
depends on the lost one, the buffer skips to the next keyframe (releasing it
at once if one is buffered) and asks for one: `keyframe_wanted` turns true,
and `take_keyframe_request(now)` says when to send a request, at most once
per `request_interval`.

Frames are named by their first sequence number; a frame of n fragments is
followed by the frame starting at sequence + n (u32, wrapping).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_WAIT = 0.1
MAX_WAIT = 0.5
DEFAULT_REQUEST_INTERVAL = 0.2
MAX_BUFFERED = 64  # frames held while waiting; beyond this the oldest go
MAX_JUMP = 1 << 20  # sequence numbers; further away is a new stream, not a gap

STAT_NAMES = ("released", "late", "duplicates", "gaps", "skipped", "dropped_overflow", "keyframe_requests")


def _diff(a: int, b: int) -> int:
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


@dataclass(frozen=True, slots=True)
class BufferedFrame:
    sequence: int
    fragment_count: int
    timestamp: int
    keyframe: bool
    payload: bytes
    arrival: float


class VideoFrameBuffer:
    def __init__(
        self, *, wait: float = DEFAULT_WAIT, request_interval: float = DEFAULT_REQUEST_INTERVAL
    ) -> None:
        if not 0.0 <= wait <= MAX_WAIT or request_interval <= 0.0:
            raise ValueError(f"wait must be within 0..{MAX_WAIT} s and request_interval positive")
        self.wait = wait
        self.request_interval = request_interval
        self._held: dict[int, BufferedFrame] = {}
        self._expected: int | None = None  # first sequence of the next frame to release
        self._need_keyframe = True  # nothing decodable yet: start at a keyframe
        self._gap_since: float | None = None
        self._last_request = -1e9
        self._stats = dict.fromkeys(STAT_NAMES, 0)

    @property
    def keyframe_wanted(self) -> bool:
        return self._need_keyframe

    @property
    def buffered(self) -> int:
        return len(self._held)

    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    def decode_failed(self) -> None:
        """The decoder could not use a released frame: resynchronise at a keyframe."""
        self._need_keyframe = True

    def push(self, frame: BufferedFrame) -> list[BufferedFrame]:
        """Add one complete frame; returns the frames now ready to decode, in order."""
        stats = self._stats
        expected = self._expected
        if expected is not None:
            offset = _diff(frame.sequence, expected)
            if offset < 0:
                if -offset > MAX_JUMP:
                    self._restart()
                else:
                    stats["late"] += 1
                    return []
            elif offset > MAX_JUMP:
                self._restart()
        if frame.sequence in self._held:
            stats["duplicates"] += 1
            return []
        self._held[frame.sequence] = frame
        if len(self._held) > MAX_BUFFERED:
            oldest = min(self._held, key=lambda s: _diff(s, self._expected or frame.sequence))
            del self._held[oldest]
            stats["dropped_overflow"] += 1
            self._need_keyframe = True
        return self._release(frame.arrival)

    def poll(self, now: float) -> list[BufferedFrame]:
        """Frames released because a wait ran out (call at `next_deadline()`)."""
        return self._release(now)

    def next_deadline(self) -> float | None:
        return None if self._gap_since is None else self._gap_since + self.wait

    def take_keyframe_request(self, now: float) -> bool:
        """True if a keyframe request should go out now (rate-limited)."""
        if not self._need_keyframe or now - self._last_request < self.request_interval:
            return False
        self._last_request = now
        self._stats["keyframe_requests"] += 1
        return True

    def _restart(self) -> None:
        self._held.clear()
        self._expected = None
        self._need_keyframe = True
        self._gap_since = None

    def _release(self, now: float) -> list[BufferedFrame]:
        out: list[BufferedFrame] = []
        while self._held:
            if self._need_keyframe:
                key = self._first_keyframe()
                if key is None:
                    self._gap_since = None
                    return out
                self._skip_to(key)
                self._need_keyframe = False
            assert self._expected is not None
            frame = self._held.pop(self._expected, None)
            if frame is not None:
                out.append(frame)
                self._stats["released"] += 1
                self._expected = (frame.sequence + frame.fragment_count) & 0xFFFFFFFF
                self._gap_since = None
                continue
            # A gap: wait for it, then give it up.
            if self._gap_since is None:
                self._gap_since = now
            if now - self._gap_since < self.wait:
                return out
            self._stats["gaps"] += 1
            self._gap_since = None
            self._need_keyframe = True
        return out

    def _first_keyframe(self) -> int | None:
        keys = [s for s, f in self._held.items() if f.keyframe]
        if not keys:
            return None
        ref = self._expected if self._expected is not None else keys[0]
        return min(keys, key=lambda s: _diff(s, ref))

    def _skip_to(self, sequence: int) -> None:
        ref = sequence
        for s in [s for s in self._held if _diff(s, ref) < 0]:
            del self._held[s]
            self._stats["skipped"] += 1
        self._expected = sequence
