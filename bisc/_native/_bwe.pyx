# cython: language_level=3, autotestdict=False, embedsignature=False
# distutils: extra_compile_args = -ffp-contract=off
"""Delay- and loss-based bandwidth estimator, compiled: same behaviour as bisc.codec.bwe.

Every estimate, state, counter and floating-point result equals the
reference's: the same formulas in the same order with C doubles (and no fused
multiply-adds). The trendline window and the incoming-rate buckets are fixed
C arrays. The constants, and the C copies the code reads, are in
_bwe_constants.pxi.
"""

cimport cython
from libc.math cimport INFINITY, ceil, floor, isfinite, pow, sqrt
from libc.stdint cimport int32_t, int64_t, uint32_t

include "_bwe_constants.pxi"

cdef tuple _STATES = (NORMAL, OVERUSE, UNDERUSE)
cdef tuple _RC_STATES = (HOLD, INCREASE, DECREASE)


cdef inline int64_t _diff(uint32_t a, uint32_t b) noexcept:
    return <int32_t>(<uint32_t>(a - b))


cdef double _time(object value, str name) except? -1.0:
    cdef double t = float(value)
    if not isfinite(t) or not -C_MAX_TIME <= t <= C_MAX_TIME:
        raise ValueError(f"{name} must be finite, within ±{MAX_TIME:g} s")
    return t


@cython.auto_pickle(False)
cdef class BandwidthEstimator:
    """BandwidthEstimator(*, min_bitrate=30000, start_bitrate=600000, max_bitrate=4000000, clock_rate=90000, rtt=0.1)
--

Estimates the bitrate a video stream can use, from packet arrivals and loss."""

    cdef readonly int64_t min_bitrate
    cdef readonly int64_t start_bitrate
    cdef readonly int64_t max_bitrate
    cdef readonly int64_t clock_rate

    cdef double _rtt, _rate, _min, _max
    cdef int64_t _max_jump
    cdef unsigned long long _packets, _groups, _reordered, _backwards, _jumps, _resets
    cdef unsigned long long _overuse, _underuse, _decreases, _loss_reports, _loss_decreases
    cdef double _last_arrival
    cdef int64_t _bucket_ids[C_RATE_BUCKETS]
    cdef int64_t _bucket_bytes[C_RATE_BUCKETS]
    cdef int64_t _rate_first
    cdef bint _rate_started
    cdef double _threshold, _threshold_last
    cdef bint _threshold_started
    cdef double _current
    cdef int _rc_state
    cdef double _rc_last, _last_decrease, _link, _link_dev
    cdef double _loss_rate, _last_report, _last_loss_cut, _loss_free_since
    cdef double _xs[C_WINDOW]
    cdef double _ys[C_WINDOW]
    # delay filter
    cdef bint _started, _have_prev
    cdef int64_t _ext_ts, _g_first_ts, _g_ts, _p_ts
    cdef uint32_t _last_ts
    cdef int _jump_run
    cdef double _g_first_arrival, _g_complete, _p_complete
    cdef int64_t _deltas
    cdef double _first_arrival, _accumulated, _smoothed
    cdef int _count, _pos
    cdef double _trend, _prev_trend, _modified, _over_time
    cdef int64_t _over_count
    cdef int _state

    def __init__(
        self,
        *,
        min_bitrate=30_000,
        start_bitrate=600_000,
        max_bitrate=4_000_000,
        clock_rate=90_000,
        rtt=0.1,
    ):
        if not 1000 <= min_bitrate <= start_bitrate <= max_bitrate <= 10**10:
            raise ValueError("need 1000 <= min_bitrate <= start_bitrate <= max_bitrate <= 10**10")
        if not 1 <= clock_rate <= 1 << 24:
            raise ValueError("clock_rate must be 1..2**24")
        self.min_bitrate = int(min_bitrate)
        self.start_bitrate = int(start_bitrate)
        self.max_bitrate = int(max_bitrate)
        self.clock_rate = int(clock_rate)
        self._rtt = 0.0
        self.on_rtt(rtt)
        self._rate = <double>self.clock_rate
        self._min = <double>self.min_bitrate
        self._max = <double>self.max_bitrate
        self._max_jump = <int64_t>(C_MAX_JUMP * self._rate)
        self._packets = self._groups = self._reordered = self._backwards = self._jumps = 0
        self._resets = self._overuse = self._underuse = self._decreases = 0
        self._loss_reports = self._loss_decreases = 0
        self._last_arrival = -INFINITY
        cdef int i
        for i in range(C_RATE_BUCKETS):
            self._bucket_ids[i] = C_NO_BUCKET
            self._bucket_bytes[i] = 0
        self._rate_first = 0
        self._rate_started = False
        self._threshold = C_THRESHOLD_START
        self._threshold_last = 0.0
        self._threshold_started = False
        self._current = <double>self.start_bitrate
        self._rc_state = 0
        self._rc_last = -INFINITY
        self._last_decrease = -INFINITY
        self._link = -1.0
        self._link_dev = C_LINK_DEV_START
        self._loss_rate = <double>self.max_bitrate
        self._last_report = -INFINITY
        self._last_loss_cut = -INFINITY
        self._loss_free_since = -INFINITY
        for i in range(C_WINDOW):
            self._xs[i] = 0.0
            self._ys[i] = 0.0
        self._reset_filter()

    cdef void _reset_filter(self) noexcept:
        self._started = False
        self._ext_ts = 0
        self._last_ts = 0
        self._jump_run = 0
        self._g_first_ts = 0
        self._g_ts = 0
        self._g_first_arrival = 0.0
        self._g_complete = 0.0
        self._have_prev = False
        self._p_ts = 0
        self._p_complete = 0.0
        self._deltas = 0
        self._first_arrival = 0.0
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._count = 0
        self._pos = 0
        self._trend = 0.0
        self._prev_trend = 0.0
        self._modified = 0.0
        self._over_time = -1.0
        self._over_count = 0
        self._state = 0

    # -- introspection ----------------------------------------------------------

    @property
    def state(self):
        """The over-use detector's hypothesis: normal, overuse or underuse."""
        return _STATES[self._state]

    @property
    def rate_control_state(self):
        return _RC_STATES[self._rc_state]

    @property
    def delay_based(self):
        return <int64_t>self._current

    @property
    def loss_based(self):
        return <int64_t>self._loss_rate

    @property
    def rtt(self):
        return self._rtt

    def incoming_rate(self, now):
        """Received bitrate over the last RATE_BUCKETS buckets; None until a window has passed."""
        cdef double rate = self._incoming(_time(now, "now"))
        if rate < 0.0:
            return None
        return <int64_t>rate

    def stats(self):
        return {
            "packets": self._packets,
            "groups": self._groups,
            "reordered": self._reordered,
            "backwards": self._backwards,
            "jumps": self._jumps,
            "resets": self._resets,
            "overuse": self._overuse,
            "underuse": self._underuse,
            "decreases": self._decreases,
            "loss_reports": self._loss_reports,
            "loss_decreases": self._loss_decreases,
            "delay_based_bps": self._current,
            "loss_based_bps": self._loss_rate,
            "incoming_bps": self._incoming(self._last_arrival) if self._rate_started else -1.0,
            "trend": self._modified,
            "threshold": self._threshold,
            "link_kbps": self._link,
            "rtt_ms": self._rtt * 1000.0,
        }

    # -- input ------------------------------------------------------------------

    def on_rtt(self, rtt):
        """A round-trip time sample (seconds); sets the response time of the rate control."""
        cdef double value = float(rtt)
        if not isfinite(value) or not 0.0 <= value <= 60.0:
            raise ValueError("rtt must be 0..60 s")
        self._rtt = value

    def on_packet(self, timestamp, arrival, size):
        """One received video packet: its media timestamp (u32), arrival time (s) and size (bytes)."""
        if not 0 <= timestamp <= 0xFFFFFFFF:
            raise ValueError("timestamp must be u32")
        if not 0 <= size <= 1 << 20:
            raise ValueError("size must be 0..2**20 bytes")
        cdef double c_arrival = _time(arrival, "arrival")
        cdef uint32_t ts = <uint32_t>(<unsigned long long>timestamp)
        cdef int64_t c_size = <int64_t>size
        cdef double arrival_ms, arrival_delta, send_delta
        cdef int64_t diff, ext
        if c_arrival < self._last_arrival:
            self._backwards += 1
            return
        self._packets += 1
        self._last_arrival = c_arrival
        self._add_bytes(c_arrival, c_size)
        arrival_ms = c_arrival * 1000.0
        if self._started and arrival_ms - self._g_complete > C_STREAM_TIMEOUT * 1000.0:
            self._resets += 1
            self._reset_filter()
        if not self._started:
            self._start(ts, arrival_ms)
            return
        diff = _diff(ts, self._last_ts)
        if diff > self._max_jump or diff < -self._max_jump:
            self._jump_run += 1
            if self._jump_run < C_RESET_AFTER:
                self._jumps += 1
                return
            self._resets += 1
            self._reset_filter()
            self._start(ts, arrival_ms)
            return
        self._jump_run = 0
        ext = self._ext_ts + diff
        if diff > 0:
            self._ext_ts = ext
            self._last_ts = ts
        if ext < self._g_first_ts:
            self._reordered += 1
            return
        if ext <= self._g_ts:
            self._g_complete = arrival_ms
            return
        arrival_delta = arrival_ms - self._g_complete
        send_delta = <double>(ext - self._g_ts) * 1000.0 / self._rate
        if (
            arrival_delta - send_delta < 0.0
            and arrival_delta <= C_BURST_TIME_MS
            and arrival_ms - self._g_first_arrival < C_BURST_SPAN_MS
        ):
            self._g_ts = ext
            self._g_complete = arrival_ms
            return
        if self._have_prev:
            send_delta = <double>(self._g_ts - self._p_ts) * 1000.0 / self._rate
            self._update_trend(self._g_complete - self._p_complete, send_delta, self._g_complete)
            self._groups += 1
            self._update_rate(c_arrival, True)
        self._have_prev = True
        self._p_ts = self._g_ts
        self._p_complete = self._g_complete
        self._g_first_ts = ext
        self._g_ts = ext
        self._g_first_arrival = arrival_ms
        self._g_complete = arrival_ms

    cdef void _start(self, uint32_t ts, double arrival_ms) noexcept:
        self._started = True
        self._ext_ts = 0
        self._last_ts = ts
        self._g_first_ts = 0
        self._g_ts = 0
        self._g_first_arrival = arrival_ms
        self._g_complete = arrival_ms
        self._have_prev = False

    def on_loss_report(self, fraction_lost, now):
        """The fraction of packets lost over one reporting interval (0..1), reported at `now` (s)."""
        cdef double loss = float(fraction_lost)
        if not 0.0 <= loss <= 1.0:
            raise ValueError("fraction_lost must be 0..1")
        cdef double c_now = _time(now, "now")
        cdef double rate, base
        if c_now < self._last_report:
            self._backwards += 1
            return
        self._last_report = c_now
        self._loss_reports += 1
        rate = self._loss_rate
        if loss > C_LOSS_HIGH:
            if c_now - self._last_loss_cut >= C_LOSS_INTERVAL + self._rtt:
                base = rate if rate < self._current else self._current
                rate = base * (1.0 - 0.5 * loss)
                self._last_loss_cut = c_now
                self._loss_decreases += 1
        if loss < C_LOSS_LOW:
            if self._loss_free_since == INFINITY:
                self._loss_free_since = c_now
            rate = rate * C_LOSS_GROW
            if c_now - self._loss_free_since >= C_LOSS_RELEASE and rate < self._current:
                rate = self._current
        else:
            self._loss_free_since = INFINITY
        if rate > self._max:
            rate = self._max
        if rate < self._min:
            rate = self._min
        self._loss_rate = rate

    def estimate(self, now):
        """The bitrate to send at (bps): the lower of the delay- and loss-based estimates."""
        cdef double c_now = _time(now, "now")
        if c_now >= self._rc_last:
            self._update_rate(c_now, False)
        cdef double rate = self._loss_rate if self._loss_rate < self._current else self._current
        return <int64_t>rate

    # -- arrival-time filter and over-use detector -----------------------------

    cdef void _update_trend(self, double recv_delta, double send_delta, double arrival_ms) noexcept:
        cdef double delta = recv_delta - send_delta
        cdef double trend
        self._deltas += 1
        if self._deltas > C_MAX_DELTAS:
            self._deltas = C_MAX_DELTAS
        if self._count == 0:
            self._first_arrival = arrival_ms
        self._accumulated += delta
        self._smoothed = C_SMOOTHING * self._smoothed + (1.0 - C_SMOOTHING) * self._accumulated
        self._xs[self._pos] = arrival_ms - self._first_arrival
        self._ys[self._pos] = self._smoothed
        self._pos = (self._pos + 1) % C_WINDOW
        if self._count < C_WINDOW:
            self._count += 1
        trend = self._prev_trend
        if self._count == C_WINDOW:
            trend = self._fit(trend)
        self._trend = trend
        self._detect(trend, send_delta, arrival_ms)

    cdef double _fit(self, double fallback) noexcept:
        cdef int start = self._pos
        cdef int i, j
        cdef double sum_x = 0.0, sum_y = 0.0, x_avg, y_avg, num = 0.0, den = 0.0, dx
        for i in range(C_WINDOW):
            j = (start + i) % C_WINDOW
            sum_x += self._xs[j]
            sum_y += self._ys[j]
        x_avg = sum_x / <double>C_WINDOW
        y_avg = sum_y / <double>C_WINDOW
        for i in range(C_WINDOW):
            j = (start + i) % C_WINDOW
            dx = self._xs[j] - x_avg
            num += dx * (self._ys[j] - y_avg)
            den += dx * dx
        if den == 0.0:
            return fallback
        return num / den

    cdef void _detect(self, double trend, double send_delta, double now_ms) noexcept:
        if self._deltas < 2:
            self._state = 0
            return
        cdef int64_t n = self._deltas if self._deltas < C_MIN_DELTAS else C_MIN_DELTAS
        cdef double modified = <double>n * trend * C_GAIN
        self._modified = modified
        cdef int old = self._state
        if modified > self._threshold:
            if self._over_time < 0.0:
                self._over_time = send_delta / 2.0
            else:
                self._over_time += send_delta
            self._over_count += 1
            if self._over_time > C_OVERUSE_TIME_MS and self._over_count > 1 and trend >= self._prev_trend:
                self._over_time = 0.0
                self._over_count = 0
                self._state = 1
        elif modified < -self._threshold:
            self._over_time = -1.0
            self._over_count = 0
            self._state = 2
        else:
            self._over_time = -1.0
            self._over_count = 0
            self._state = 0
        if self._state != old:
            if self._state == 1:
                self._overuse += 1
            elif self._state == 2:
                self._underuse += 1
        self._prev_trend = trend
        self._adapt_threshold(modified, now_ms)

    cdef void _adapt_threshold(self, double modified, double now_ms) noexcept:
        if not self._threshold_started:
            self._threshold_started = True
            self._threshold_last = now_ms
        cdef double magnitude = -modified if modified < 0.0 else modified
        if magnitude > self._threshold + C_MAX_ADAPT_OFFSET:
            self._threshold_last = now_ms
            return
        cdef double k = C_K_DOWN if magnitude < self._threshold else C_K_UP
        cdef double dt = now_ms - self._threshold_last
        if dt > C_MAX_ADAPT_DT_MS:
            dt = C_MAX_ADAPT_DT_MS
        cdef double threshold = self._threshold + k * (magnitude - self._threshold) * dt
        if threshold < C_THRESHOLD_MIN:
            threshold = C_THRESHOLD_MIN
        elif threshold > C_THRESHOLD_MAX:
            threshold = C_THRESHOLD_MAX
        self._threshold = threshold
        self._threshold_last = now_ms

    # -- incoming rate ----------------------------------------------------------

    cdef void _add_bytes(self, double arrival, int64_t size) noexcept:
        cdef int64_t bucket = <int64_t>floor(arrival / C_RATE_BUCKET)
        if not self._rate_started:
            self._rate_started = True
            self._rate_first = bucket
        cdef int64_t slot = ((bucket % C_RATE_BUCKETS) + C_RATE_BUCKETS) % C_RATE_BUCKETS
        if self._bucket_ids[slot] != bucket:
            self._bucket_ids[slot] = bucket
            self._bucket_bytes[slot] = 0
        self._bucket_bytes[slot] += size

    cdef double _incoming(self, double now) noexcept:
        if not self._rate_started:
            return -1.0
        cdef int64_t bucket = <int64_t>floor(now / C_RATE_BUCKET)
        if bucket - self._rate_first + 1 < C_RATE_BUCKETS:
            return -1.0
        cdef int64_t oldest = bucket - C_RATE_BUCKETS
        cdef int64_t total = 0, b
        cdef int i
        for i in range(C_RATE_BUCKETS):
            b = self._bucket_ids[i]
            if oldest < b <= bucket:
                total += self._bucket_bytes[i]
        if total == 0:
            return -1.0
        return <double>total * 8.0 / C_RATE_WINDOW

    # -- AIMD rate control ------------------------------------------------------

    cdef void _update_rate(self, double now, bint fresh) noexcept:
        cdef double incoming = self._incoming(now)
        cdef int state = self._state
        cdef double current = self._current
        cdef double dt, limit, increase, span, throughput, decreased
        if state == 1:
            if not fresh:
                return
            if not (
                now - self._last_decrease >= self._reduce_interval()
                or (incoming >= 0.0 and incoming < 0.5 * current)
            ):
                return
            self._rc_state = 2
        elif state == 0:
            if self._rc_state == 0:
                self._rc_state = 1
                self._rc_last = now
        else:
            self._rc_state = 0
        dt = now - self._rc_last
        if self._rc_state == 1:
            if incoming >= 0.0 and self._link >= 0.0 and incoming / 1000.0 > self._link_upper():
                self._link = -1.0
            limit = C_LIMIT_GAIN * incoming + C_LIMIT_EXTRA
            if incoming < 0.0 or current < limit:
                if self._link >= 0.0:
                    increase = self._additive_rate(current) * dt
                else:
                    span = dt if dt < 1.0 else 1.0
                    increase = current * (pow(C_ETA, span) - 1.0)
                    if increase < C_MIN_INCREASE * dt:
                        increase = C_MIN_INCREASE * dt
                current = current + increase
                if incoming >= 0.0 and current > limit:
                    current = limit
        elif self._rc_state == 2:
            throughput = incoming if incoming >= 0.0 else current
            decreased = C_BETA * throughput
            if decreased > current and self._link >= 0.0:
                decreased = C_BETA * self._link * 1000.0
            if decreased < current:
                current = decreased
            if self._link >= 0.0 and throughput / 1000.0 < self._link_lower():
                self._link = -1.0
            self._link_update(throughput / 1000.0)
            self._rc_state = 0
            self._last_decrease = now
            self._decreases += 1
        if current > self._max:
            current = self._max
        if current < self._min:
            current = self._min
        self._current = current
        self._rc_last = now

    cdef double _reduce_interval(self) noexcept:
        cdef double rtt = self._rtt
        if rtt < C_REDUCE_MIN:
            return C_REDUCE_MIN
        if rtt > C_REDUCE_MAX:
            return C_REDUCE_MAX
        return rtt

    cdef double _additive_rate(self, double current) noexcept:
        cdef double frame_bits = current / C_FRAME_RATE
        cdef double packets = ceil(frame_bits / C_PACKET_BITS)
        if packets < 1.0:
            packets = 1.0
        cdef double avg_packet = frame_bits / packets
        cdef double rate = avg_packet / (self._rtt + C_RESPONSE_EXTRA)
        return rate if rate > C_MIN_ADDITIVE else C_MIN_ADDITIVE

    cdef void _link_update(self, double sample) noexcept:
        if self._link < 0.0:
            self._link = sample
        else:
            self._link = (1.0 - C_LINK_ALPHA) * self._link + C_LINK_ALPHA * sample
        cdef double norm = self._link if self._link > 1.0 else 1.0
        cdef double error = self._link - sample
        cdef double dev = (1.0 - C_LINK_ALPHA) * self._link_dev + C_LINK_ALPHA * error * error / norm
        if dev < C_LINK_DEV_MIN:
            dev = C_LINK_DEV_MIN
        elif dev > C_LINK_DEV_MAX:
            dev = C_LINK_DEV_MAX
        self._link_dev = dev

    cdef double _link_upper(self) noexcept:
        return self._link + 3.0 * sqrt(self._link * self._link_dev)

    cdef double _link_lower(self) noexcept:
        return self._link - 3.0 * sqrt(self._link * self._link_dev)
