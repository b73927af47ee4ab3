"""Compiled audio jitter buffer (bisc/_native/_jitter.pyx); same API and
behaviour as bisc.codec.jitter."""

from typing import Final

from typing_extensions import disjoint_base

FRAME: Final = "frame"
FEC: Final = "fec"
PLC: Final = "plc"
ACCELERATE: Final = "accelerate"
EXPAND: Final = "expand"
EMPTY: Final = "empty"
BIN: Final = 0.01
FORGET: Final = 0.983
QUANTILE: Final = 0.95
WINDOW: Final = 100
LEVEL_KEEP: Final = 0.875
ADJUST_INTERVAL: Final = 4
MAX_JUMP: Final = 10.0
RESET_AFTER: Final = 3
SKIP_MIN: Final = 3
SIZE_KEEP: Final = 0.98
QUIET_RATIO: Final = 0.4
FORCE_FRAMES: Final = 4.0
PATIENCE: Final = 150
SETTLE: Final = 25
FORGET_RAMP: Final = 64
START_WEIGHT: Final = 3.0
LOSS_KEEP: Final = 0.99
LOSS_MARGIN_AT: Final = 0.01
STAT_NAMES: Final[tuple[str, ...]]

@disjoint_base
class Decision:
    """What to play for one 20 ms output period (see bisc.codec.jitter.Decision)."""

    @property
    def kind(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def sequence(self) -> int: ...
    def __init__(self, kind: str, payload: bytes, sequence: int) -> None: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@disjoint_base
class JitterBuffer:
    """Reorders, times and conceals one audio stream."""

    @property
    def frame_samples(self) -> int: ...
    @property
    def sample_rate(self) -> int: ...
    @property
    def min_delay(self) -> float: ...
    @property
    def start_delay(self) -> float: ...
    @property
    def max_delay(self) -> float: ...
    @property
    def max_packets(self) -> int: ...
    def __init__(
        self,
        *,
        frame_samples: int = 960,
        sample_rate: int = 48000,
        min_delay: float = 0.02,
        start_delay: float = 0.08,
        max_delay: float = 1.0,
        max_packets: int = 64,
    ) -> None: ...
    @property
    def buffered_packets(self) -> int: ...
    @property
    def target_delay(self) -> float: ...
    def stats(self) -> dict[str, int | float]: ...
    def push(self, sequence: int, timestamp: int, payload: bytes, arrival: float) -> None: ...
    def recover(self, sequence: int, payload: bytes) -> None: ...
    def pop(self, now: float) -> Decision: ...
