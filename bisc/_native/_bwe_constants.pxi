# Included by _bwe.pyx (same module): the estimator's constants, the same as
# bisc.codec.bwe_constants (state names, tuning constants, counter names), then
# the C constants the code reads: copies of the tuning constants, the incoming-rate
# window and the empty-bucket mark.

NORMAL = "normal"
OVERUSE = "overuse"
UNDERUSE = "underuse"
HOLD = "hold"
INCREASE = "increase"
DECREASE = "decrease"

BURST_TIME_MS = 5.0
BURST_SPAN_MS = 100.0
WINDOW = 20
SMOOTHING = 0.9
GAIN = 4.0
MIN_DELTAS = 60
MAX_DELTAS = 1000
MAX_JUMP = 10.0
RESET_AFTER = 3
STREAM_TIMEOUT = 3.0
OVERUSE_TIME_MS = 10.0
THRESHOLD_START = 12.5
THRESHOLD_MIN = 6.0
THRESHOLD_MAX = 600.0
K_UP = 0.0087
K_DOWN = 0.039
MAX_ADAPT_OFFSET = 15.0
MAX_ADAPT_DT_MS = 100.0
BETA = 0.85
ETA = 1.08
MIN_INCREASE = 1000.0
RESPONSE_EXTRA = 0.1
FRAME_RATE = 30.0
PACKET_BITS = 9600.0
MIN_ADDITIVE = 4000.0
LIMIT_GAIN = 1.5
LIMIT_EXTRA = 10000.0
REDUCE_MIN = 0.01
REDUCE_MAX = 0.2
LINK_ALPHA = 0.05
LINK_DEV_START = 0.4
LINK_DEV_MIN = 0.4
LINK_DEV_MAX = 2.5
RATE_BUCKET = 0.01
RATE_BUCKETS = 50
LOSS_LOW = 0.02
LOSS_HIGH = 0.1
LOSS_GROW = 1.05
LOSS_INTERVAL = 0.3
LOSS_RELEASE = 2.0
MAX_TIME = 1e9

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

cdef enum:
    C_WINDOW = 20
    C_MIN_DELTAS = 60
    C_MAX_DELTAS = 1000
    C_RESET_AFTER = 3
    C_RATE_BUCKETS = 50

cdef double C_BURST_TIME_MS = 5.0
cdef double C_BURST_SPAN_MS = 100.0
cdef double C_SMOOTHING = 0.9
cdef double C_GAIN = 4.0
cdef double C_MAX_JUMP = 10.0
cdef double C_STREAM_TIMEOUT = 3.0
cdef double C_OVERUSE_TIME_MS = 10.0
cdef double C_THRESHOLD_START = 12.5
cdef double C_THRESHOLD_MIN = 6.0
cdef double C_THRESHOLD_MAX = 600.0
cdef double C_K_UP = 0.0087
cdef double C_K_DOWN = 0.039
cdef double C_MAX_ADAPT_OFFSET = 15.0
cdef double C_MAX_ADAPT_DT_MS = 100.0
cdef double C_BETA = 0.85
cdef double C_ETA = 1.08
cdef double C_MIN_INCREASE = 1000.0
cdef double C_RESPONSE_EXTRA = 0.1
cdef double C_FRAME_RATE = 30.0
cdef double C_PACKET_BITS = 9600.0
cdef double C_MIN_ADDITIVE = 4000.0
cdef double C_LIMIT_GAIN = 1.5
cdef double C_LIMIT_EXTRA = 10000.0
cdef double C_REDUCE_MIN = 0.01
cdef double C_REDUCE_MAX = 0.2
cdef double C_LINK_ALPHA = 0.05
cdef double C_LINK_DEV_START = 0.4
cdef double C_LINK_DEV_MIN = 0.4
cdef double C_LINK_DEV_MAX = 2.5
cdef double C_RATE_BUCKET = 0.01
cdef double C_LOSS_LOW = 0.02
cdef double C_LOSS_HIGH = 0.1
cdef double C_LOSS_GROW = 1.05
cdef double C_LOSS_INTERVAL = 0.3
cdef double C_LOSS_RELEASE = 2.0
cdef double C_MAX_TIME = 1e9
cdef double C_RATE_WINDOW = C_RATE_BUCKET * C_RATE_BUCKETS
cdef int64_t C_NO_BUCKET = -(<int64_t>1 << 62)
