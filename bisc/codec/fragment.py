"""Fragmenter and reassembler: the pure-Python reference.

A frame (one encoded video picture, say) is split into MediaPackets that fit
the connection's maximum datagram size. Fragments of one frame carry
consecutive sequence numbers, so `sequence - fragment_index` names the frame.

The reassembler is sans-IO: datagrams and the current time go in, complete
frames come out. Its memory is bounded by `max_frames_in_flight` frames of at
most `max_frame_size` bytes each and `max_fragments` fragments, so a flood of tiny fragments is bounded too).
"""

from __future__ import annotations

from bisc.codec.packet import FLAG_KEYFRAME, HEADER_SIZE, decode_packet, encode_packet
from bisc.errors import FrameTooLargeError, PacketError

MAX_FRAGMENTS = 0xFFFF
DEFAULT_MAX_FRAME_SIZE = 2 * 1024 * 1024
DEFAULT_MAX_FRAMES_IN_FLIGHT = 16
DEFAULT_TIMEOUT = 1.0
DEFAULT_HISTORY = 256
# Bounds the per-fragment bookkeeping of one frame: a hostile peer sending
# 65535 one-byte fragments per frame must not cost megabytes of dict slots.
# 4096 fragments of a 1200-byte datagram carry about 4.8 MB.
DEFAULT_MAX_FRAGMENTS = 4096

STAT_NAMES = ("completed", "duplicates", "late", "inconsistent", "oversize", "evicted", "expired")


def fragment_frame(
    payload: bytes,
    *,
    stream_id: int,
    first_sequence: int,
    timestamp: int,
    flags: int,
    max_datagram_size: int,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> list[bytes]:
    """Split one frame into datagrams of at most `max_datagram_size` bytes.

    Fragments are sized evenly (they differ by at most one byte), so the last
    one is never a runt. Raises FrameTooLargeError instead of truncating.
    """
    room = max_datagram_size - HEADER_SIZE
    if room < 1:
        raise PacketError(
            f"max_datagram_size {max_datagram_size} leaves no room for payload "
            f"(the header is {HEADER_SIZE} bytes)"
        )
    size = len(payload)
    if size > max_frame_size:
        raise FrameTooLargeError(f"frame of {size} bytes exceeds max_frame_size {max_frame_size}")
    count = max(1, -(-size // room))
    if count > MAX_FRAGMENTS:
        raise FrameTooLargeError(
            f"frame of {size} bytes needs {count} fragments at max_datagram_size "
            f"{max_datagram_size}; the limit is {MAX_FRAGMENTS}"
        )
    base, extra = divmod(size, count)
    datagrams = []
    start = 0
    for index in range(count):
        end = start + base + (1 if index < extra else 0)
        datagrams.append(
            encode_packet(
                stream_id,
                (first_sequence + index) & 0xFFFFFFFF,
                timestamp,
                index,
                count,
                flags,
                payload[start:end],
            )
        )
        start = end
    return datagrams


class Frame:
    """A reassembled frame."""

    __slots__ = ("flags", "fragment_count", "payload", "sequence", "stream_id", "timestamp")

    def __init__(
        self,
        stream_id: int,
        sequence: int,
        timestamp: int,
        flags: int,
        fragment_count: int,
        payload: bytes,
    ) -> None:
        self.stream_id = stream_id
        self.sequence = sequence  # sequence number of fragment 0
        self.timestamp = timestamp
        self.flags = flags
        self.fragment_count = fragment_count
        self.payload = payload

    @property
    def is_keyframe(self) -> bool:
        return bool(self.flags & FLAG_KEYFRAME)

    def __repr__(self) -> str:
        return (
            f"Frame(stream_id={self.stream_id}, sequence={self.sequence}, "
            f"timestamp={self.timestamp}, flags={self.flags}, "
            f"fragment_count={self.fragment_count}, payload=<{len(self.payload)} bytes>)"
        )


class _Partial:
    __slots__ = ("arrival", "count", "flags", "fragments", "size", "timestamp")

    def __init__(self, arrival: float, timestamp: int, flags: int, count: int) -> None:
        self.arrival = arrival
        self.timestamp = timestamp
        self.flags = flags
        self.count = count
        self.fragments: dict[int, bytes] = {}
        self.size = 0


class Reassembler:
    """Turns fragment datagrams back into frames, with bounded memory.

    Malformed datagrams raise PacketError; well-formed but unusable ones
    (duplicates, fragments of a frame already finished or dropped, fields
    that contradict earlier fragments of the same frame) only bump counters.
    """

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_frames_in_flight: int = DEFAULT_MAX_FRAMES_IN_FLIGHT,
        timeout: float = DEFAULT_TIMEOUT,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        if min(max_frame_size, max_frames_in_flight, max_fragments, history) < 1 or timeout <= 0:
            raise ValueError("reassembler limits must be positive")
        self.max_frame_size = max_frame_size
        self.max_fragments = max_fragments
        self.max_frames_in_flight = max_frames_in_flight
        self.timeout = timeout
        self.history = history
        # Insertion order is first-arrival order, so the oldest frame is first.
        self._partial: dict[tuple[int, int], _Partial] = {}
        # Recently finished (completed or dropped) frames, oldest first.
        self._finished: dict[tuple[int, int], None] = {}
        self._stats = dict.fromkeys(STAT_NAMES, 0)

    @property
    def in_flight(self) -> int:
        return len(self._partial)

    @property
    def buffered_bytes(self) -> int:
        return sum(p.size for p in self._partial.values())

    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    def _finish(self, key: tuple[int, int]) -> None:
        finished = self._finished
        finished[key] = None
        if len(finished) > self.history:
            del finished[next(iter(finished))]

    def _drop(self, key: tuple[int, int], reason: str) -> None:
        del self._partial[key]
        self._finish(key)
        self._stats[reason] += 1

    def expire(self, now: float) -> int:
        """Drop frames whose first fragment arrived `timeout` or more ago."""
        dropped = 0
        partial = self._partial
        deadline = now - self.timeout
        while partial:
            key = next(iter(partial))
            if partial[key].arrival > deadline:
                break
            self._drop(key, "expired")
            dropped += 1
        return dropped

    def push(self, datagram: bytes, now: float) -> Frame | None:
        """Add one datagram; return the frame it completes, if any."""
        packet = decode_packet(datagram)
        if self._partial:
            self.expire(now)
        index = packet.fragment_index
        count = packet.fragment_count
        key = (packet.stream_id, (packet.sequence - index) & 0xFFFFFFFF)
        if key in self._finished:
            self._stats["late"] += 1
            return None
        payload = packet.payload
        part = self._partial.get(key)
        if part is None:
            if count == 1:
                return self._complete(key, packet.timestamp, packet.flags, 1, payload)
            if count > self.max_fragments:
                self._finish(key)
                self._stats["oversize"] += 1
                return None
            if len(self._partial) >= self.max_frames_in_flight:
                self._drop(next(iter(self._partial)), "evicted")
            part = _Partial(now, packet.timestamp, packet.flags, count)
            self._partial[key] = part
        elif count != part.count or packet.timestamp != part.timestamp or packet.flags != part.flags:
            self._stats["inconsistent"] += 1
            return None
        elif index in part.fragments:
            self._stats["duplicates"] += 1
            return None
        part.size += len(payload)
        if part.size > self.max_frame_size:
            self._drop(key, "oversize")
            return None
        part.fragments[index] = payload
        if len(part.fragments) < count:
            return None
        del self._partial[key]
        fragments = part.fragments
        joined = b"".join([fragments[i] for i in range(count)])
        return self._complete(key, part.timestamp, part.flags, count, joined)

    def _complete(
        self, key: tuple[int, int], timestamp: int, flags: int, count: int, payload: bytes
    ) -> Frame | None:
        self._finish(key)
        if len(payload) > self.max_frame_size:
            self._stats["oversize"] += 1
            return None
        self._stats["completed"] += 1
        return Frame(key[0], key[1], timestamp, flags, count, payload)
