"""Delay- and loss-based bandwidth estimator for video: the pure-Python reference.

Sans-IO, in the shape of Google Congestion Control (draft-ietf-rmcat-gcc and
the trendline variant WebRTC ships). Packets, loss reports, RTT samples and
the current time go in; a bitrate comes out. Runs on the receiver (fed from
the packets themselves) or on the sender (fed from per-packet arrival reports).

- Arrival-time filter: packets with the same media timestamp (one video frame,
  90 kHz clock) form a group; a later frame that arrives in a burst with it
  (within BURST_TIME_MS, sent later but arrived "early") joins it too. For two
  consecutive groups, d(i) = (t_i - t_{i-1}) - (T_i - T_{i-1}) (arrival minus
  send spacing of their last packets, ms) is accumulated, smoothed, and a
  least-squares slope is fitted over the last WINDOW groups.
- Over-use detector: m = min(deltas, MIN_DELTAS) * slope * GAIN against an
  adaptive threshold gamma, which follows |m| at K_UP (above) / K_DOWN
  (below) per ms, clamped to [THRESHOLD_MIN, THRESHOLD_MAX]. Over-use needs
  m > gamma for more than OVERUSE_TIME_MS and two groups, with a slope that
  is not falling; m < -gamma is under-use; otherwise normal.
- AIMD rate control: normal -> increase (multiplicative ETA per second while
  the link capacity is unknown, additive about one packet per response time
  near it), over-use -> decrease to BETA x the incoming rate (at most once per
  RTT, clamped to 10..200 ms), under-use -> hold. Increases never take the
  rate above LIMIT_GAIN x incoming + LIMIT_EXTRA. The incoming rate is a
  sliding window of RATE_BUCKETS buckets. Decreases act on packet groups only
  (fresh evidence); `estimate(now)` lets increases accrue between them.
- Loss-based controller, per loss report (one per reporting interval): loss
  under LOSS_LOW -> x LOSS_GROW, over LOSS_HIGH -> x (1 - 0.5 loss) (at most
  once per LOSS_INTERVAL + RTT, from the lower of both estimates), in
  between -> hold; after LOSS_RELEASE of reports all under LOSS_LOW it rises
  to the delay-based estimate (it no longer binds).
- estimate = min(delay-based, loss-based), within [min_bitrate, max_bitrate].

Everything is fixed-size: a ring of WINDOW points, RATE_BUCKETS buckets,
scalars. Bad values raise ValueError; time going backwards, reordered packets
and timestamp jumps are ignored and counted (RESET_AFTER jumps in a row, or
STREAM_TIMEOUT without packets, restart the delay filter).

Every formula here is repeated, in the same order and with C doubles, by
bisc/_native/_bwe.pyx; the equivalence tests compare every output.
The constants named here are in bwe_constants.
"""

from __future__ import annotations

import math

from bisc.codec.bwe_constants import (
    BETA,
    BURST_SPAN_MS,
    BURST_TIME_MS,
    DECREASE,
    ETA,
    FRAME_RATE,
    GAIN,
    HOLD,
    INCREASE,
    K_DOWN,
    K_UP,
    LIMIT_EXTRA,
    LIMIT_GAIN,
    LINK_ALPHA,
    LINK_DEV_MAX,
    LINK_DEV_MIN,
    LINK_DEV_START,
    LOSS_GROW,
    LOSS_HIGH,
    LOSS_INTERVAL,
    LOSS_LOW,
    LOSS_RELEASE,
    MAX_ADAPT_DT_MS,
    MAX_ADAPT_OFFSET,
    MAX_DELTAS,
    MAX_JUMP,
    MAX_TIME,
    MIN_ADDITIVE,
    MIN_DELTAS,
    MIN_INCREASE,
    NORMAL,
    OVERUSE,
    OVERUSE_TIME_MS,
    PACKET_BITS,
    RATE_BUCKET,
    RATE_BUCKETS,
    REDUCE_MAX,
    REDUCE_MIN,
    RESET_AFTER,
    RESPONSE_EXTRA,
    SMOOTHING,
    STAT_NAMES,
    STREAM_TIMEOUT,
    THRESHOLD_MAX,
    THRESHOLD_MIN,
    THRESHOLD_START,
    UNDERUSE,
    WINDOW,
)

_STATES = (NORMAL, OVERUSE, UNDERUSE)
_RC_STATES = (HOLD, INCREASE, DECREASE)
_NO_BUCKET = -(1 << 62)
_RATE_WINDOW = RATE_BUCKET * RATE_BUCKETS


def _diff(a: int, b: int) -> int:
    """a - b as a signed 32-bit timestamp difference."""
    d = (a - b) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


def _time(value: float, name: str) -> float:
    t = float(value)
    if not math.isfinite(t) or not -MAX_TIME <= t <= MAX_TIME:
        raise ValueError(f"{name} must be finite, within ±{MAX_TIME:g} s")
    return t


class BandwidthEstimator:
    """Estimates the bitrate a video stream can use, from packet arrivals and loss."""

    def __init__(
        self,
        *,
        min_bitrate: int = 30_000,
        start_bitrate: int = 600_000,
        max_bitrate: int = 4_000_000,
        clock_rate: int = 90_000,
        rtt: float = 0.1,
    ) -> None:
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
        self._rate = float(self.clock_rate)
        self._min = float(self.min_bitrate)
        self._max = float(self.max_bitrate)
        self._max_jump = int(MAX_JUMP * self._rate)
        self._stats = dict.fromkeys(STAT_NAMES, 0)
        self._last_arrival = -math.inf
        # Incoming rate: bytes per bucket, keyed by absolute bucket number.
        self._bucket_ids = [_NO_BUCKET] * RATE_BUCKETS
        self._bucket_bytes = [0] * RATE_BUCKETS
        self._rate_first = 0
        self._rate_started = False
        # Over-use detector threshold (kept across stream restarts).
        self._threshold = THRESHOLD_START
        self._threshold_last = 0.0
        self._threshold_started = False
        # AIMD.
        self._current = float(self.start_bitrate)
        self._rc_state = 0  # index into _RC_STATES
        self._rc_last = -math.inf
        self._last_decrease = -math.inf
        self._link = -1.0  # link capacity estimate, kbps; negative: unknown
        self._link_dev = LINK_DEV_START
        # Loss-based.
        self._loss_rate = float(self.max_bitrate)
        self._last_report = -math.inf
        self._last_loss_cut = -math.inf
        self._loss_free_since = -math.inf  # first report of the current run under LOSS_LOW; inf: none
        self._xs = [0.0] * WINDOW
        self._ys = [0.0] * WINDOW
        self._reset_filter()

    def _reset_filter(self) -> None:
        """Forget the packet groups, the trendline and the detector state."""
        self._started = False
        self._ext_ts = 0  # last timestamp seen, unwrapped, relative to the stream's first
        self._last_ts = 0
        self._jump_run = 0
        self._g_first_ts = 0
        self._g_ts = 0
        self._g_first_arrival = 0.0  # ms
        self._g_complete = 0.0  # ms
        self._have_prev = False
        self._p_ts = 0
        self._p_complete = 0.0
        self._deltas = 0
        self._first_arrival = 0.0
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._count = 0
        self._pos = 0
        self._trend = 0.0  # slope of the last fit
        self._prev_trend = 0.0
        self._modified = 0.0
        self._over_time = -1.0
        self._over_count = 0
        self._state = 0  # index into _STATES

    # -- introspection ----------------------------------------------------------

    @property
    def state(self) -> str:
        """The over-use detector's hypothesis: normal, overuse or underuse."""
        return _STATES[self._state]

    @property
    def rate_control_state(self) -> str:
        return _RC_STATES[self._rc_state]

    @property
    def delay_based(self) -> int:
        return int(self._current)

    @property
    def loss_based(self) -> int:
        return int(self._loss_rate)

    @property
    def rtt(self) -> float:
        return self._rtt

    def incoming_rate(self, now: float) -> int | None:
        """Received bitrate over the last RATE_BUCKETS buckets; None until a window has passed."""
        rate = self._incoming(_time(now, "now"))
        return None if rate < 0.0 else int(rate)

    def stats(self) -> dict[str, int | float]:
        out: dict[str, int | float] = dict(self._stats)
        out["delay_based_bps"] = self._current
        out["loss_based_bps"] = self._loss_rate
        out["incoming_bps"] = self._incoming(self._last_arrival) if self._rate_started else -1.0
        out["trend"] = self._modified
        out["threshold"] = self._threshold
        out["link_kbps"] = self._link
        out["rtt_ms"] = self._rtt * 1000.0
        return out

    # -- input ------------------------------------------------------------------

    def on_rtt(self, rtt: float) -> None:
        """A round-trip time sample (seconds); sets the response time of the rate control."""
        value = float(rtt)
        if not math.isfinite(value) or not 0.0 <= value <= 60.0:
            raise ValueError("rtt must be 0..60 s")
        self._rtt = value

    def on_packet(self, timestamp: int, arrival: float, size: int) -> None:
        """One received video packet: its media timestamp (u32), arrival time (s) and size (bytes)."""
        if not 0 <= timestamp <= 0xFFFFFFFF:
            raise ValueError("timestamp must be u32")
        if not 0 <= size <= 1 << 20:
            raise ValueError("size must be 0..2**20 bytes")
        arrival = _time(arrival, "arrival")
        stats = self._stats
        if arrival < self._last_arrival:
            stats["backwards"] += 1
            return
        stats["packets"] += 1
        self._last_arrival = arrival
        self._add_bytes(arrival, size)
        arrival_ms = arrival * 1000.0
        if self._started and arrival_ms - self._g_complete > STREAM_TIMEOUT * 1000.0:
            stats["resets"] += 1
            self._reset_filter()
        if not self._started:
            self._start(timestamp, arrival_ms)
            return
        diff = _diff(timestamp, self._last_ts)
        if diff > self._max_jump or diff < -self._max_jump:
            self._jump_run += 1
            if self._jump_run < RESET_AFTER:
                stats["jumps"] += 1
                return
            stats["resets"] += 1
            self._reset_filter()
            self._start(timestamp, arrival_ms)
            return
        self._jump_run = 0
        ext = self._ext_ts + diff
        if diff > 0:
            self._ext_ts = ext
            self._last_ts = timestamp
        if ext < self._g_first_ts:
            stats["reordered"] += 1
            return
        if ext <= self._g_ts:
            self._g_complete = arrival_ms
            return
        # A later frame: part of the current group if it arrived in a burst with it.
        arrival_delta = arrival_ms - self._g_complete
        send_delta = float(ext - self._g_ts) * 1000.0 / self._rate
        if (
            arrival_delta - send_delta < 0.0
            and arrival_delta <= BURST_TIME_MS
            and arrival_ms - self._g_first_arrival < BURST_SPAN_MS
        ):
            self._g_ts = ext
            self._g_complete = arrival_ms
            return
        if self._have_prev:
            send_delta = float(self._g_ts - self._p_ts) * 1000.0 / self._rate
            self._update_trend(self._g_complete - self._p_complete, send_delta, self._g_complete)
            stats["groups"] += 1
            self._update_rate(arrival, True)
        self._have_prev = True
        self._p_ts = self._g_ts
        self._p_complete = self._g_complete
        self._g_first_ts = ext
        self._g_ts = ext
        self._g_first_arrival = arrival_ms
        self._g_complete = arrival_ms

    def _start(self, timestamp: int, arrival_ms: float) -> None:
        self._started = True
        self._ext_ts = 0
        self._last_ts = timestamp
        self._g_first_ts = 0
        self._g_ts = 0
        self._g_first_arrival = arrival_ms
        self._g_complete = arrival_ms
        self._have_prev = False

    def on_loss_report(self, fraction_lost: float, now: float) -> None:
        """The fraction of packets lost over one reporting interval (0..1), reported at `now` (s)."""
        loss = float(fraction_lost)
        if not 0.0 <= loss <= 1.0:  # also NaN
            raise ValueError("fraction_lost must be 0..1")
        now = _time(now, "now")
        if now < self._last_report:
            self._stats["backwards"] += 1
            return
        self._last_report = now
        self._stats["loss_reports"] += 1
        rate = self._loss_rate
        if loss > LOSS_HIGH and now - self._last_loss_cut >= LOSS_INTERVAL + self._rtt:
            base = rate if rate < self._current else self._current
            rate = base * (1.0 - 0.5 * loss)
            self._last_loss_cut = now
            self._stats["loss_decreases"] += 1
        if loss < LOSS_LOW:
            if self._loss_free_since == math.inf:
                self._loss_free_since = now
            rate = rate * LOSS_GROW
            if now - self._loss_free_since >= LOSS_RELEASE and rate < self._current:
                rate = self._current
        else:
            self._loss_free_since = math.inf
        if rate > self._max:
            rate = self._max
        if rate < self._min:
            rate = self._min
        self._loss_rate = rate

    def estimate(self, now: float) -> int:
        """The bitrate to send at (bps): the lower of the delay- and loss-based estimates."""
        now = _time(now, "now")
        if now >= self._rc_last:
            self._update_rate(now, False)
        rate = self._loss_rate if self._loss_rate < self._current else self._current
        return int(rate)

    # -- arrival-time filter and over-use detector -----------------------------

    def _update_trend(self, recv_delta: float, send_delta: float, arrival_ms: float) -> None:
        delta = recv_delta - send_delta
        self._deltas += 1
        if self._deltas > MAX_DELTAS:
            self._deltas = MAX_DELTAS
        if self._count == 0:
            self._first_arrival = arrival_ms
        self._accumulated += delta
        self._smoothed = SMOOTHING * self._smoothed + (1.0 - SMOOTHING) * self._accumulated
        self._xs[self._pos] = arrival_ms - self._first_arrival
        self._ys[self._pos] = self._smoothed
        self._pos = (self._pos + 1) % WINDOW
        if self._count < WINDOW:
            self._count += 1
        trend = self._prev_trend
        if self._count == WINDOW:
            trend = self._fit(trend)
        self._trend = trend
        self._detect(trend, send_delta, arrival_ms)

    def _fit(self, fallback: float) -> float:
        """Least-squares slope of the window, oldest point first."""
        xs = self._xs
        ys = self._ys
        start = self._pos  # the window is full: the oldest point is next to overwrite
        sum_x = 0.0
        sum_y = 0.0
        for i in range(WINDOW):
            j = (start + i) % WINDOW
            sum_x += xs[j]
            sum_y += ys[j]
        x_avg = sum_x / float(WINDOW)
        y_avg = sum_y / float(WINDOW)
        num = 0.0
        den = 0.0
        for i in range(WINDOW):
            j = (start + i) % WINDOW
            dx = xs[j] - x_avg
            num += dx * (ys[j] - y_avg)
            den += dx * dx
        if den == 0.0:
            return fallback
        return num / den

    def _detect(self, trend: float, send_delta: float, now_ms: float) -> None:
        if self._deltas < 2:
            self._state = 0
            return
        n = self._deltas if self._deltas < MIN_DELTAS else MIN_DELTAS
        modified = float(n) * trend * GAIN
        self._modified = modified
        old = self._state
        if modified > self._threshold:
            if self._over_time < 0.0:
                self._over_time = send_delta / 2.0
            else:
                self._over_time += send_delta
            self._over_count += 1
            if self._over_time > OVERUSE_TIME_MS and self._over_count > 1 and trend >= self._prev_trend:
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
                self._stats["overuse"] += 1
            elif self._state == 2:
                self._stats["underuse"] += 1
        self._prev_trend = trend
        self._adapt_threshold(modified, now_ms)

    def _adapt_threshold(self, modified: float, now_ms: float) -> None:
        if not self._threshold_started:
            self._threshold_started = True
            self._threshold_last = now_ms
        magnitude = -modified if modified < 0.0 else modified
        if magnitude > self._threshold + MAX_ADAPT_OFFSET:
            self._threshold_last = now_ms
            return
        k = K_DOWN if magnitude < self._threshold else K_UP
        dt = now_ms - self._threshold_last
        if dt > MAX_ADAPT_DT_MS:
            dt = MAX_ADAPT_DT_MS
        threshold = self._threshold + k * (magnitude - self._threshold) * dt
        if threshold < THRESHOLD_MIN:
            threshold = THRESHOLD_MIN
        elif threshold > THRESHOLD_MAX:
            threshold = THRESHOLD_MAX
        self._threshold = threshold
        self._threshold_last = now_ms

    # -- incoming rate ----------------------------------------------------------

    def _add_bytes(self, arrival: float, size: int) -> None:
        bucket = math.floor(arrival / RATE_BUCKET)
        if not self._rate_started:
            self._rate_started = True
            self._rate_first = bucket
        slot = bucket % RATE_BUCKETS
        if self._bucket_ids[slot] != bucket:
            self._bucket_ids[slot] = bucket
            self._bucket_bytes[slot] = 0
        self._bucket_bytes[slot] += size

    def _incoming(self, now: float) -> float:
        """bps over the window ending at now; -1 while unknown (no full window yet, or nothing in it)."""
        if not self._rate_started:
            return -1.0
        bucket = math.floor(now / RATE_BUCKET)
        if bucket - self._rate_first + 1 < RATE_BUCKETS:
            return -1.0
        oldest = bucket - RATE_BUCKETS
        total = 0
        for i in range(RATE_BUCKETS):
            b = self._bucket_ids[i]
            if oldest < b <= bucket:
                total += self._bucket_bytes[i]
        if total == 0:
            return -1.0
        return float(total) * 8.0 / _RATE_WINDOW

    # -- AIMD rate control ------------------------------------------------------

    def _update_rate(self, now: float, fresh: bool) -> None:
        """One AIMD step at `now` from the detector's state; decreases only on fresh evidence."""
        incoming = self._incoming(now)
        state = self._state
        current = self._current
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
                self._link = -1.0  # the link got faster: search again
            limit = LIMIT_GAIN * incoming + LIMIT_EXTRA
            if incoming < 0.0 or current < limit:
                if self._link >= 0.0:
                    increase = self._additive_rate(current) * dt
                else:
                    span = dt if dt < 1.0 else 1.0
                    increase = current * (ETA**span - 1.0)
                    if increase < MIN_INCREASE * dt:
                        increase = MIN_INCREASE * dt
                current = current + increase
                if incoming >= 0.0 and current > limit:
                    current = limit
        elif self._rc_state == 2:
            throughput = incoming if incoming >= 0.0 else current
            decreased = BETA * throughput
            if decreased > current and self._link >= 0.0:
                decreased = BETA * self._link * 1000.0
            if decreased < current:
                current = decreased
            if self._link >= 0.0 and throughput / 1000.0 < self._link_lower():
                self._link = -1.0
            self._link_update(throughput / 1000.0)
            self._rc_state = 0
            self._last_decrease = now
            self._stats["decreases"] += 1
        if current > self._max:
            current = self._max
        if current < self._min:
            current = self._min
        self._current = current
        self._rc_last = now

    def _reduce_interval(self) -> float:
        rtt = self._rtt
        if rtt < REDUCE_MIN:
            return REDUCE_MIN
        if rtt > REDUCE_MAX:
            return REDUCE_MAX
        return rtt

    def _additive_rate(self, current: float) -> float:
        """Near the link capacity: about one packet per response time (bps per second)."""
        frame_bits = current / FRAME_RATE
        packets = math.ceil(frame_bits / PACKET_BITS)
        if packets < 1:
            packets = 1
        avg_packet = frame_bits / float(packets)
        rate = avg_packet / (self._rtt + RESPONSE_EXTRA)
        return rate if rate > MIN_ADDITIVE else MIN_ADDITIVE

    def _link_update(self, sample: float) -> None:
        if self._link < 0.0:
            self._link = sample
        else:
            self._link = (1.0 - LINK_ALPHA) * self._link + LINK_ALPHA * sample
        norm = self._link if self._link > 1.0 else 1.0
        error = self._link - sample
        dev = (1.0 - LINK_ALPHA) * self._link_dev + LINK_ALPHA * error * error / norm
        if dev < LINK_DEV_MIN:
            dev = LINK_DEV_MIN
        elif dev > LINK_DEV_MAX:
            dev = LINK_DEV_MAX
        self._link_dev = dev

    def _link_upper(self) -> float:
        return self._link + 3.0 * math.sqrt(self._link * self._link_dev)

    def _link_lower(self) -> float:
        return self._link - 3.0 * math.sqrt(self._link * self._link_dev)
