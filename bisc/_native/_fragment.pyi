"""Compiled fragmenter and reassembler (bisc/_native/_fragment.pyx); same API
and behaviour as bisc.codec.fragment."""

from typing import Final

from typing_extensions import disjoint_base

MAX_FRAGMENTS: Final = 0xFFFF
DEFAULT_MAX_FRAME_SIZE: Final[int]
DEFAULT_MAX_FRAMES_IN_FLIGHT: Final = 16
DEFAULT_TIMEOUT: Final = 1.0
DEFAULT_HISTORY: Final = 256
DEFAULT_MAX_FRAGMENTS: Final = 4096
STAT_NAMES: Final[tuple[str, ...]]

def fragment_frame(
    payload: bytes,
    *,
    stream_id: int,
    first_sequence: int,
    timestamp: int,
    flags: int,
    max_datagram_size: int,
    max_frame_size: int = ...,
) -> list[bytes]: ...

@disjoint_base
class Frame:
    """A reassembled frame."""

    stream_id: int
    sequence: int
    timestamp: int
    flags: int
    fragment_count: int
    payload: bytes
    def __init__(
        self,
        stream_id: int,
        sequence: int,
        timestamp: int,
        flags: int,
        fragment_count: int,
        payload: bytes,
    ) -> None: ...
    @property
    def is_keyframe(self) -> bool: ...

@disjoint_base
class Reassembler:
    """Turns fragment datagrams back into frames, with bounded memory."""

    max_frame_size: int
    max_fragments: int
    max_frames_in_flight: int
    timeout: float
    history: int
    def __init__(
        self,
        *,
        max_frame_size: int = ...,
        max_frames_in_flight: int = ...,
        timeout: float = ...,
        max_fragments: int = ...,
        history: int = ...,
    ) -> None: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def buffered_bytes(self) -> int: ...
    def stats(self) -> dict[str, int]: ...
    def expire(self, now: float) -> int: ...
    def push(self, datagram: bytes, now: float) -> Frame | None: ...
