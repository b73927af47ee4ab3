"""Constants of the bandwidth estimator, bisc.codec.bwe (which imports them all): the names of
its states, its tuning constants and the names of its counters. The compiled estimator,
bisc/_native/_bwe.pyx, has the same values in bisc/_native/_bwe_constants.pxi.
"""

from __future__ import annotations

NORMAL = "normal"
OVERUSE = "overuse"
UNDERUSE = "underuse"
HOLD = "hold"
INCREASE = "increase"
DECREASE = "decrease"

# Arrival-time filter (ms unless named otherwise).
BURST_TIME_MS = 5.0  # a frame arriving this close after the previous group, early, joins it
BURST_SPAN_MS = 100.0  # a burst group spans at most this much arrival time
WINDOW = 20  # groups in the least-squares fit
SMOOTHING = 0.9  # accumulated-delay smoothing
GAIN = 4.0  # slope -> modified trend
MIN_DELTAS = 60  # the modified trend scales with the deltas seen, up to this many
MAX_DELTAS = 1000  # delta counter cap
MAX_JUMP = 10.0  # seconds of media clock; a further timestamp is a jump
RESET_AFTER = 3  # consecutive jumps that make a new stream
STREAM_TIMEOUT = 3.0  # seconds without packets that restart the delay filter
# Over-use detector.
OVERUSE_TIME_MS = 10.0
THRESHOLD_START = 12.5
THRESHOLD_MIN = 6.0
THRESHOLD_MAX = 600.0
K_UP = 0.0087
K_DOWN = 0.039
MAX_ADAPT_OFFSET = 15.0  # |m| this far above gamma is a spike: gamma does not follow
MAX_ADAPT_DT_MS = 100.0
# AIMD rate control (bps, seconds).
BETA = 0.85
ETA = 1.08  # multiplicative increase per second
MIN_INCREASE = 1000.0  # bps per second, at least
RESPONSE_EXTRA = 0.1  # response time = rtt + this
FRAME_RATE = 30.0  # for the additive step: one packet of a frame per response time
PACKET_BITS = 9600.0
MIN_ADDITIVE = 4000.0  # bps per second, at least
LIMIT_GAIN = 1.5
LIMIT_EXTRA = 10000.0
REDUCE_MIN = 0.01  # decreases at most once per rtt clamped to [REDUCE_MIN, REDUCE_MAX]
REDUCE_MAX = 0.2
LINK_ALPHA = 0.05  # link capacity estimate (kbps): smoothing and deviation bounds
LINK_DEV_START = 0.4
LINK_DEV_MIN = 0.4
LINK_DEV_MAX = 2.5
RATE_BUCKET = 0.01  # incoming rate: seconds per bucket
RATE_BUCKETS = 50  # window = RATE_BUCKET * RATE_BUCKETS = 0.5 s
# Loss-based controller.
LOSS_LOW = 0.02
LOSS_HIGH = 0.1
LOSS_GROW = 1.05
LOSS_INTERVAL = 0.3  # seconds (+ rtt) between two loss cuts
# After this long of reports all under LOSS_LOW, the loss-based estimate stops binding (it rises to the
# delay-based one, as WebRTC's LossBasedBweV2 falls back to the delay-based estimate without loss): a
# cut made by a burst of congestion loss would otherwise hold the rate down for tens of seconds at
# LOSS_GROW per report while the link is free again.
LOSS_RELEASE = 2.0
MAX_TIME = 1e9  # seconds; times are checked against this so C integers cannot overflow

STAT_NAMES = (
    "packets",
    "groups",
    "reordered",
    "backwards",
    "jumps",
    "resets",
    "overuse",
    "underuse",
    "decreases",
    "loss_reports",
    "loss_decreases",
)
