"""Compiled bandwidth estimator (bisc/_native/_bwe.pyx); same API and
behaviour as bisc.codec.bwe."""

from typing import Final

from typing_extensions import disjoint_base

NORMAL: Final = "normal"
OVERUSE: Final = "overuse"
UNDERUSE: Final = "underuse"
HOLD: Final = "hold"
INCREASE: Final = "increase"
DECREASE: Final = "decrease"
BURST_TIME_MS: Final = 5.0
BURST_SPAN_MS: Final = 100.0
WINDOW: Final = 20
SMOOTHING: Final = 0.9
GAIN: Final = 4.0
MIN_DELTAS: Final = 60
MAX_DELTAS: Final = 1000
MAX_JUMP: Final = 10.0
RESET_AFTER: Final = 3
STREAM_TIMEOUT: Final = 3.0
OVERUSE_TIME_MS: Final = 10.0
THRESHOLD_START: Final = 12.5
THRESHOLD_MIN: Final = 6.0
THRESHOLD_MAX: Final = 600.0
K_UP: Final = 0.0087
K_DOWN: Final = 0.039
MAX_ADAPT_OFFSET: Final = 15.0
MAX_ADAPT_DT_MS: Final = 100.0
BETA: Final = 0.85
ETA: Final = 1.08
MIN_INCREASE: Final = 1000.0
RESPONSE_EXTRA: Final = 0.1
FRAME_RATE: Final = 30.0
PACKET_BITS: Final = 9600.0
MIN_ADDITIVE: Final = 4000.0
LIMIT_GAIN: Final = 1.5
LIMIT_EXTRA: Final = 10000.0
REDUCE_MIN: Final = 0.01
REDUCE_MAX: Final = 0.2
LINK_ALPHA: Final = 0.05
LINK_DEV_START: Final = 0.4
LINK_DEV_MIN: Final = 0.4
LINK_DEV_MAX: Final = 2.5
RATE_BUCKET: Final = 0.01
RATE_BUCKETS: Final = 50
LOSS_LOW: Final = 0.02
LOSS_HIGH: Final = 0.1
LOSS_GROW: Final = 1.05
LOSS_INTERVAL: Final = 0.3
LOSS_RELEASE: Final = 2.0
MAX_TIME: Final = 1e9
STAT_NAMES: Final[tuple[str, ...]]

@disjoint_base
class BandwidthEstimator:
    """Estimates the bitrate a video stream can use, from packet arrivals and loss."""

    @property
    def min_bitrate(self) -> int: ...
    @property
    def start_bitrate(self) -> int: ...
    @property
    def max_bitrate(self) -> int: ...
    @property
    def clock_rate(self) -> int: ...
    def __init__(
        self,
        *,
        min_bitrate: int = 30_000,
        start_bitrate: int = 600_000,
        max_bitrate: int = 4_000_000,
        clock_rate: int = 90_000,
        rtt: float = 0.1,
    ) -> None: ...
    @property
    def state(self) -> str: ...
    @property
    def rate_control_state(self) -> str: ...
    @property
    def delay_based(self) -> int: ...
    @property
    def loss_based(self) -> int: ...
    @property
    def rtt(self) -> float: ...
    def incoming_rate(self, now: float) -> int | None: ...
    def stats(self) -> dict[str, int | float]: ...
    def on_rtt(self, rtt: float) -> None: ...
    def on_packet(self, timestamp: int, arrival: float, size: int) -> None: ...
    def on_loss_report(self, fraction_lost: float, now: float) -> None: ...
    def estimate(self, now: float) -> int: ...
