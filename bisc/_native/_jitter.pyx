# cython: language_level=3, autotestdict=False, embedsignature=False
# distutils: extra_compile_args = -ffp-contract=off
"""Audio jitter buffer, compiled: same behaviour as bisc.codec.jitter.

Every decision, counter and floating-point result equals the reference's:
the same formulas in the same order with C doubles (and no fused
multiply-adds). The histogram, the relative-delay window and the counters are
C arrays and integers; the packets stay in a dict keyed by sequence number.
"""

cimport cython
from libc.math cimport isfinite
from libc.stdint cimport int32_t, int64_t, uint32_t
from libc.stdlib cimport calloc, free

FRAME = "frame"
FEC = "fec"
PLC = "plc"
ACCELERATE = "accelerate"
EXPAND = "expand"
EMPTY = "empty"

BIN = 0.01
FORGET = 0.983
QUANTILE = 0.95
WINDOW = 100
LEVEL_KEEP = 0.875
ADJUST_INTERVAL = 4
MAX_JUMP = 10.0
RESET_AFTER = 3
SKIP_MIN = 3
SIZE_KEEP = 0.98
QUIET_RATIO = 0.4
FORCE_FRAMES = 4.0
PATIENCE = 150
SETTLE = 25
FORGET_RAMP = 64
START_WEIGHT = 3.0
LOSS_KEEP = 0.99
LOSS_MARGIN_AT = 0.01

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

cdef enum:
    C_WINDOW = 100
    C_ADJUST_INTERVAL = 4
    C_RESET_AFTER = 3
    C_SKIP_MIN = 3
    C_PATIENCE = 150
    C_SETTLE = 25
    C_FORGET_RAMP = 64

cdef double C_BIN = 0.01
cdef double C_FORGET = 0.983
cdef double C_START_WEIGHT = 3.0
cdef double C_QUANTILE = 0.95
cdef double C_LEVEL_KEEP = 0.875
cdef double C_MAX_JUMP = 10.0
cdef double C_SIZE_KEEP = 0.98
cdef double C_QUIET_RATIO = 0.4
cdef double C_FORCE_FRAMES = 4.0
cdef double C_LOSS_KEEP = 0.99
cdef double C_LOSS_MARGIN_AT = 0.01


cdef inline int64_t _diff(uint32_t a, uint32_t b) noexcept:
    return <int32_t>(<uint32_t>(a - b))


@cython.freelist(8)
@cython.auto_pickle(False)
cdef class Decision:
    """Decision(kind, payload, sequence)
--

What to play for one 20 ms output period (see bisc.codec.jitter.Decision)."""

    cdef readonly str kind
    cdef readonly bytes payload
    cdef readonly object sequence

    def __init__(self, str kind, bytes payload, object sequence):
        self.kind = kind
        self.payload = payload
        self.sequence = sequence

    def __eq__(self, other):
        if type(other) is not Decision:
            return NotImplemented
        cdef Decision o = <Decision>other
        return self.kind == o.kind and self.payload == o.payload and self.sequence == o.sequence

    def __ne__(self, other):
        if type(other) is not Decision:
            return NotImplemented
        return not self == other

    def __hash__(self):
        return hash((self.kind, self.payload, self.sequence))

    def __repr__(self):
        return f"Decision(kind={self.kind!r}, payload={self.payload!r}, sequence={self.sequence!r})"


cdef inline Decision _decision(str kind, bytes payload, object sequence):
    cdef Decision d = Decision.__new__(Decision)
    d.kind = kind
    d.payload = payload
    d.sequence = sequence
    return d


cdef Decision _EMPTY = _decision(EMPTY, b"", -1)
cdef str _S_FRAME = FRAME
cdef str _S_FEC = FEC
cdef str _S_PLC = PLC
cdef str _S_ACCELERATE = ACCELERATE
cdef str _S_EXPAND = EXPAND


@cython.auto_pickle(False)
cdef class JitterBuffer:
    """JitterBuffer(*, frame_samples=960, sample_rate=48000, min_delay=0.02, start_delay=0.08, max_delay=1.0, max_packets=64)
--

Reorders, times and conceals one audio stream."""

    cdef readonly int frame_samples
    cdef readonly int sample_rate
    cdef readonly double min_delay
    cdef readonly double start_delay
    cdef readonly double max_delay
    cdef readonly Py_ssize_t max_packets

    cdef double _rate, _fd, _target, _level, _loss_avg
    cdef int64_t _max_jump_frames, _max_jump_samples, _expand_limit
    cdef double* _hist
    cdef Py_ssize_t _nbins
    cdef double _window[C_WINDOW]
    cdef int _count, _pos, _measured

    cdef dict _store
    cdef set _recovered
    cdef bint _started, _playing, _played, _prev_quiet
    cdef uint32_t _next, _newest, _last_seq, _last_ts
    cdef int64_t _ext_ts
    cdef int _jumps
    cdef int64_t _since_adjust, _underruns, _waiting, _since_quiet
    cdef double _avg_size

    cdef unsigned long long _received, _late, _duplicates, _dropped_overflow, _s_jumps
    cdef unsigned long long _resets, _frames, _fec, _plc, _accelerated, _expanded
    cdef unsigned long long _skipped, _empty, _recovered_count

    def __cinit__(self):
        self._hist = NULL
        self._store = {}
        self._recovered = set()

    def __dealloc__(self):
        free(self._hist)

    def __init__(
        self,
        *,
        frame_samples=960,
        sample_rate=48000,
        min_delay=0.02,
        start_delay=0.08,
        max_delay=1.0,
        max_packets=64,
    ):
        if not 1 <= frame_samples <= 1 << 20 or not 1 <= sample_rate <= 1 << 24 or max_packets < 2:
            raise ValueError(
                "frame_samples (1..2**20) and sample_rate (1..2**24) must be positive, "
                "max_packets at least 2"
            )
        if not 0.0 < min_delay <= start_delay <= max_delay <= 3600.0:
            raise ValueError("need 0 < min_delay <= start_delay <= max_delay <= 3600")
        if self._hist != NULL:
            raise RuntimeError("JitterBuffer is already initialised")
        self.frame_samples = int(frame_samples)
        self.sample_rate = int(sample_rate)
        self.min_delay = float(min_delay)
        self.start_delay = float(start_delay)
        self.max_delay = float(max_delay)
        self.max_packets = int(max_packets)
        self._rate = <double>self.sample_rate
        self._fd = <double>self.frame_samples / self._rate
        self._max_jump_frames = <int64_t>(C_MAX_JUMP * self._rate / <double>self.frame_samples)
        self._max_jump_samples = <int64_t>(C_MAX_JUMP * self._rate)
        self._expand_limit = <int64_t>(self.max_delay / self._fd) + 1
        self._nbins = <Py_ssize_t>(self.max_delay / C_BIN + 0.5) + 1
        self._hist = <double*>calloc(self._nbins, sizeof(double))
        if self._hist == NULL:
            raise MemoryError()
        cdef Py_ssize_t start_bin = <Py_ssize_t>(self.start_delay / C_BIN + 0.5) - 1
        if start_bin > self._nbins - 1:
            start_bin = self._nbins - 1
        if start_bin < 0:
            start_bin = 0
        self._hist[start_bin] = 1.0
        self._target = self.start_delay
        self._loss_avg = 0.0
        self._measured = 0
        cdef int i
        for i in range(C_WINDOW):
            self._window[i] = 0.0
        self._reset_stream()

    cdef void _reset_stream(self):
        self._store = {}
        self._recovered = set()
        self._started = False
        self._playing = False
        self._played = False
        self._next = 0
        self._newest = 0
        self._last_seq = 0
        self._last_ts = 0
        self._ext_ts = 0
        self._count = 0
        self._pos = 0
        self._jumps = 0
        self._level = 0.0
        self._avg_size = -1.0
        self._waiting = 0
        self._prev_quiet = False
        self._since_quiet = 0
        self._since_adjust = 0
        self._underruns = 0

    # -- introspection ----------------------------------------------------------

    @property
    def buffered_packets(self):
        return len(self._store)

    @property
    def target_delay(self):
        return self._steer_target()

    cdef inline double _steer_target(self):
        if self._loss_avg >= C_LOSS_MARGIN_AT:
            return self._target + self._fd
        return self._target

    def stats(self):
        return {
            "received": self._received,
            "late": self._late,
            "duplicates": self._duplicates,
            "dropped_overflow": self._dropped_overflow,
            "jumps": self._s_jumps,
            "resets": self._resets,
            "frames": self._frames,
            "fec": self._fec,
            "plc": self._plc,
            "accelerated": self._accelerated,
            "expanded": self._expanded,
            "skipped": self._skipped,
            "empty": self._empty,
            "recovered": self._recovered_count,
            "target_delay_ms": self._steer_target() * 1000.0,
            "buffer_delay_ms": self._level * 1000.0,
        }

    # -- input ------------------------------------------------------------------

    def push(self, sequence, timestamp, bytes payload not None, arrival):
        """Add one received packet."""
        if not 0 <= sequence <= 0xFFFFFFFF or not 0 <= timestamp <= 0xFFFFFFFF:
            raise ValueError("sequence and timestamp must be u32")
        cdef double c_arrival = float(arrival)
        if not isfinite(c_arrival):
            raise ValueError("arrival must be finite")
        cdef uint32_t seq = <uint32_t>(<unsigned long long>sequence)
        cdef uint32_t ts = <uint32_t>(<unsigned long long>timestamp)
        cdef int64_t offset, tdiff, limit
        cdef uint32_t expected
        self._received += 1
        if self._started:
            offset = _diff(seq, self._next)
            expected = <uint32_t>(<int64_t>self._last_ts + _diff(seq, self._last_seq) * self.frame_samples)
            tdiff = _diff(ts, expected)
            limit = self._max_jump_frames
            if (
                offset > limit
                or offset < -limit
                or tdiff > self._max_jump_samples
                or tdiff < -self._max_jump_samples
            ):
                self._jumps += 1
                if self._jumps < C_RESET_AFTER:
                    self._s_jumps += 1
                    return
                self._resets += 1
                self._reset_stream()
                self._start(seq, ts)
                offset = 0
            else:
                self._jumps = 0
                if seq in self._store:
                    if seq not in self._recovered:
                        self._duplicates += 1
                        return
                    self._recovered.discard(seq)
                self._ext_ts += _diff(ts, self._last_ts)
                self._last_seq = seq
                self._last_ts = ts
        else:
            self._start(seq, ts)
            offset = 0
        self._measure(c_arrival)
        if offset < 0:
            if self._played or self._playing:
                self._late += 1
                return
            self._next = seq
        cdef dict store = self._store
        store[seq] = payload
        cdef double size = <double>len(payload)
        if self._avg_size < 0.0:
            self._avg_size = size
        else:
            self._avg_size = C_SIZE_KEEP * self._avg_size + (1.0 - C_SIZE_KEEP) * size
        if len(store) == 1 or _diff(seq, self._newest) > 0:
            self._newest = seq
        if len(store) > self.max_packets:
            self._drop_oldest()

    def recover(self, sequence, bytes payload not None):
        """Add a frame that arrived as redundancy in a later packet (see the reference)."""
        if not 0 <= sequence <= 0xFFFFFFFF:
            raise ValueError("sequence must be u32")
        if not self._started or not payload:
            return
        cdef uint32_t seq = <uint32_t>(<unsigned long long>sequence)
        cdef int64_t offset = _diff(seq, self._next)
        if offset < 0 or offset > self._max_jump_frames or seq in self._store:
            return
        cdef dict store = self._store
        store[seq] = payload
        self._recovered.add(seq)
        self._recovered_count += 1
        if _diff(seq, self._newest) > 0:
            self._newest = seq
        if len(store) > self.max_packets:
            self._drop_oldest()

    cdef void _drop_oldest(self):
        cdef uint32_t oldest = self._oldest()
        del self._store[oldest]
        self._recovered.discard(oldest)
        self._dropped_overflow += 1

    cdef void _start(self, uint32_t seq, uint32_t ts):
        self._started = True
        self._jumps = 0
        self._next = seq
        self._newest = seq
        self._last_seq = seq
        self._last_ts = ts
        self._ext_ts = ts

    cdef uint32_t _oldest(self):
        cdef uint32_t nxt = self._next
        cdef uint32_t best = 0, s
        cdef int64_t best_off = 0, off
        cdef bint first = True
        for key in self._store:
            s = <uint32_t>(<unsigned long long>key)
            off = _diff(s, nxt)
            if first or off < best_off:
                best = s
                best_off = off
                first = False
        return best

    cdef void _measure(self, double arrival):
        cdef double x = arrival - <double>self._ext_ts / self._rate
        cdef double fastest, v, rel, q, acc, target, forget
        cdef Py_ssize_t i, index, nbins = self._nbins
        cdef double* hist = self._hist
        self._window[self._pos] = x
        self._pos = (self._pos + 1) % C_WINDOW
        if self._count < C_WINDOW:
            self._count += 1
        fastest = x
        for i in range(self._count):
            v = self._window[i]
            if v < fastest:
                fastest = v
        rel = x - fastest
        q = rel / C_BIN
        if q >= <double>nbins:
            index = nbins - 1
        else:
            index = <Py_ssize_t>q
        forget = C_FORGET
        if self._measured < C_FORGET_RAMP:
            self._measured += 1
            forget = 1.0 - 1.0 / (<double>self._measured + C_START_WEIGHT)
            if forget > C_FORGET:
                forget = C_FORGET
        for i in range(nbins):
            hist[i] *= forget
        hist[index] += 1.0 - forget
        acc = 0.0
        i = 0
        while i < nbins - 1:
            acc += hist[i]
            if acc >= C_QUANTILE:
                break
            i += 1
        target = <double>(i + 1) * C_BIN
        if target < self.min_delay:
            target = self.min_delay
        elif target > self.max_delay:
            target = self.max_delay
        self._target = target

    # -- output -----------------------------------------------------------------

    def pop(self, now):
        """What to play for the next 20 ms (call once per device period)."""
        cdef dict store = self._store
        cdef double fd = self._fd
        cdef double target
        cdef uint32_t oldest, nxt, after
        cdef int64_t span, buffered, hole
        cdef object payload, following
        if not self._playing:
            if not store:
                self._empty += 1
                return _EMPTY
            oldest = self._oldest()
            span = _diff(self._newest, oldest) + 1
            if <double>span * fd < self._target:
                self._empty += 1
                return _EMPTY
            self._playing = True
            self._next = oldest
            self._level = <double>span * fd
            self._since_adjust = 0
            self._underruns = 0
        nxt = self._next
        if store:
            buffered = _diff(self._newest, nxt) + 1
        else:
            buffered = 0
        if buffered < 0:
            buffered = 0
        self._level = C_LEVEL_KEEP * self._level + (1.0 - C_LEVEL_KEEP) * (<double>buffered * fd)
        self._since_adjust += 1
        target = self._target
        if buffered == 0:
            self._underruns += 1
            if self._underruns > self._expand_limit:
                self._playing = False
                self._level = 0.0
                self._empty += 1
                return _EMPTY
            self._since_adjust = 0
            self._expanded += 1
            return _decision(_S_EXPAND, b"", nxt)
        self._underruns = 0
        payload = store.pop(nxt, None)
        cdef bint missed = payload is None or nxt in self._recovered
        self._recovered.discard(nxt)
        if missed:
            self._loss_avg = C_LOSS_KEEP * self._loss_avg + (1.0 - C_LOSS_KEEP)
        else:
            self._loss_avg = C_LOSS_KEEP * self._loss_avg + 0.0
        if self._loss_avg >= C_LOSS_MARGIN_AT:
            target += fd
        if payload is None:
            after = nxt + 1
            following = store.get(after)
            if following is not None:
                self._next = after
                self._fec += 1
                return _decision(_S_FEC, following, nxt)
            oldest = self._oldest()
            hole = _diff(oldest, nxt)
            if hole >= C_SKIP_MIN and <double>(buffered - hole) * fd >= target:
                self._skipped += hole
                self._level -= <double>hole * fd
                nxt = oldest
                payload = store.pop(nxt)
                self._recovered.discard(nxt)
            else:
                self._next = after
                self._plc += 1
                return _decision(_S_PLC, b"", nxt)
        self._played = True
        after = nxt + 1
        cdef double quiet = C_QUIET_RATIO * self._avg_size
        cdef bint is_quiet = <double>len(<bytes>payload) <= quiet
        cdef bint urgent, clean
        if is_quiet:
            self._since_quiet = 0
        elif self._since_quiet < C_PATIENCE:
            self._since_quiet += 1
        if is_quiet or self._since_adjust >= C_ADJUST_INTERVAL:
            urgent = self._waiting >= C_PATIENCE or (
                self._since_quiet >= C_PATIENCE and self._waiting >= C_SETTLE
            )
            clean = target <= self.min_delay
            if self._level > target + (0.5 * fd if clean else fd):
                following = store.get(after)
                if following is not None:
                    if (
                        (is_quiet and self._prev_quiet and <double>len(<bytes>following) <= quiet)
                        or self._level > target + C_FORCE_FRAMES * fd
                        or urgent
                    ):
                        del store[after]
                        self._recovered.discard(after)
                        self._next = nxt + 2
                        self._level -= fd
                        self._since_adjust = 0
                        self._waiting = 0
                        self._accelerated += 1
                        self._prev_quiet = is_quiet
                        if len(<bytes>following) < len(<bytes>payload):
                            return _decision(_S_ACCELERATE, payload, nxt)
                        return _decision(_S_ACCELERATE, following, after)
                    self._waiting += 1
            elif self._level < (target - 0.5 * fd if clean else target):
                if (
                    (is_quiet and self._prev_quiet)
                    or self._level < target - C_FORCE_FRAMES * fd
                    or urgent
                ):
                    store[nxt] = payload
                    self._level += fd
                    self._since_adjust = 0
                    self._waiting = 0
                    self._expanded += 1
                    return _decision(_S_EXPAND, b"", nxt)
                self._waiting += 1
            else:
                self._waiting = 0
        self._next = after
        self._frames += 1
        self._prev_quiet = is_quiet
        return _decision(_S_FRAME, payload, nxt)
