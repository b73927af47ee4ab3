"""The receiving half of one peer's video stream.

Datagrams go in on the event loop (`push`): the reassembler makes frames,
the frame buffer orders them and skips to a keyframe after a loss, and the
bandwidth estimator watches every packet's arrival. Decoding runs on the
stream's own thread (a 720p frame takes milliseconds the loop cannot spare),
fed by a small queue; a full queue drops the frame and resynchronises at
the next keyframe instead of building a backlog. The newest decoded picture
waits in one slot for whoever shows it (newest wins: a slow renderer skips
pictures, never lags).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bisc import hotpaths
from bisc.codec.reception import RateMarks, ReceptionStats
from bisc.codec.video_jitter import BufferedFrame, VideoFrameBuffer
from bisc.errors import PacketError
from bisc.media.video_codec import CLOCK_RATE, VideoCodec, VideoDecoder
from bisc.media.video_pattern import read_pattern_stamp
from bisc.media.video_types import DecodedFrame, VideoError
from bisc.proto.media_control import StreamReport

log = logging.getLogger(__name__)

DECODE_QUEUE = 8
FREEZE = 0.5  # seconds without a new picture that count as a freeze
DELAY_SAMPLES = 600


@dataclass(frozen=True)
class VideoStats:
    frames: int  # pictures decoded
    fps: float  # over the last stats interval
    width: int
    height: int
    bitrate_kbps: float
    loss_pct: float
    estimate_kbps: float  # our bandwidth estimate for this stream
    freezes: int  # gaps of more than FREEZE without a new picture
    keyframes: int
    keyframe_requests: int
    e2e_ms: float  # capture to decoded picture, median of recent ones; -1 unknown
    e2e_p95_ms: float
    decode_errors: int
    dropped: int  # frames never decoded (lost, skipped to a keyframe, queue full)
    malformed: int


class VideoReceiver:
    def __init__(
        self,
        stream_id: int,
        codec: VideoCodec,
        *,
        request_keyframe: Callable[[], None],
        read_stamps: bool = False,
    ) -> None:
        self.stream_id = stream_id
        self.codec: VideoCodec = codec
        self._request_keyframe = request_keyframe
        self._read_stamps = read_stamps  # test pattern: capture time from the pixels
        self._loop = asyncio.get_running_loop()
        self.reassembler = hotpaths.fragment.Reassembler()
        self.buffer = VideoFrameBuffer()
        self.reception = ReceptionStats(CLOCK_RATE)
        self.bwe = hotpaths.bwe.BandwidthEstimator()
        self.malformed = 0
        self.loss_pct = 0.0
        self.rtt: float | None = None
        self._poll_handle: asyncio.TimerHandle | None = None
        self._poll_at = 0.0
        self._queue: queue.Queue[BufferedFrame | None] = queue.Queue(maxsize=DECODE_QUEUE)
        self._decode_failed = threading.Event()
        self._latest: DecodedFrame | None = None
        self._latest_seq = 0  # pictures decoded so far (the slot's version)
        self._sender_clock: tuple[int, float] | None = None
        self._e2e: deque[float] = deque(maxlen=DELAY_SAMPLES)
        self._frame_times: deque[float] = deque(maxlen=120)
        self._last_picture: float | None = None
        self.freezes = 0
        self.keyframes = 0
        self.decode_errors = 0
        self.queue_drops = 0
        # (time, bytes received) once per report: rates over the last few seconds, whoever asks.
        self._rate_marks = RateMarks()
        self._closed = False
        self._thread = threading.Thread(target=self._decode_loop, name=f"bisc-video-{stream_id}", daemon=True)
        self._thread.start()

    # -- event loop side ----------------------------------------------------------

    def push(self, data: bytes, arrival: float) -> None:
        try:
            frame = self.reassembler.push(data, arrival)
        except PacketError:
            self.malformed += 1
            return
        # Every well-formed datagram counts for loss and bandwidth, complete frame or not.
        if len(data) >= 15:
            seq = int.from_bytes(data[3:7], "big")
            ts = int.from_bytes(data[7:11], "big")
            self.reception.on_packet(seq, ts, len(data), arrival)
            self.bwe.on_packet(ts, arrival, len(data))
        if self._decode_failed.is_set():
            self._decode_failed.clear()
            self.buffer.decode_failed()
        if frame is not None:
            buffered = BufferedFrame(
                frame.sequence,
                frame.fragment_count,
                frame.timestamp,
                frame.is_keyframe,
                frame.payload,
                arrival,
            )
            self._hand_over(self.buffer.push(buffered))
        self._after_buffer(arrival)

    def _poll(self) -> None:
        self._poll_handle = None
        if self._closed:
            return
        now = time.monotonic()
        self.reassembler.expire(now)
        self._hand_over(self.buffer.poll(now))
        self._after_buffer(now)

    def _after_buffer(self, now: float) -> None:
        if self.buffer.take_keyframe_request(now):
            self._request_keyframe()
        deadline = self.buffer.next_deadline()
        if self.buffer.keyframe_wanted:  # keep asking (rate-limited) until one comes
            deadline = min(deadline, now + self.buffer.request_interval) if deadline else now + 0.5
        if deadline is None or (self._poll_handle is not None and self._poll_at <= deadline):
            return
        if self._poll_handle is not None:
            self._poll_handle.cancel()
        self._poll_at = deadline
        self._poll_handle = self._loop.call_at(deadline, self._poll)

    def _hand_over(self, frames: list[BufferedFrame]) -> None:
        for frame in frames:
            try:
                self._queue.put_nowait(frame)
            except queue.Full:  # the decoder is behind: do not queue up lag, resync at a keyframe
                self.queue_drops += 1
                self.buffer.decode_failed()

    def set_sender_clock(self, timestamp: int, capture_local: float) -> None:
        self._sender_clock = (timestamp, capture_local)

    # -- the media session's side (RemoteStream) ----------------------------------

    def on_sender_report(self, timestamp: int, capture_local: float | None, rtt: float | None) -> None:
        self.rtt = rtt
        if rtt is not None:
            self.bwe.on_rtt(rtt)
        if capture_local is not None:
            self.set_sender_clock(timestamp, capture_local)

    def interval_report(self) -> StreamReport:
        interval = self.reception.interval()
        now = time.monotonic()
        self.loss_pct = interval.loss * 100.0
        self.bwe.on_loss_report(interval.loss, now)
        self._rate_marks.mark(now, self.reception.bytes)
        p50, _ = self.e2e_quantiles()
        return StreamReport(
            self.stream_id,
            interval.expected,
            interval.received,
            self.reception.jitter * 1000.0,
            0.0,
            p50 * 1000.0 if p50 >= 0 else -1.0,
            int(self.bwe.estimate(now)),
        )

    def close(self) -> None:
        self._closed = True
        if self._poll_handle is not None:
            self._poll_handle.cancel()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            with self._queue.mutex:
                self._queue.queue.clear()
            self._queue.put_nowait(None)

    # -- decode thread ------------------------------------------------------------

    def _decode_loop(self) -> None:
        decoder = VideoDecoder(self.codec, "rgb24")
        while True:
            frame = self._queue.get()
            if frame is None or self._closed:
                return
            try:
                pictures = decoder.decode(frame.payload)
            except VideoError:
                self.decode_errors += 1
                self._decode_failed.set()
                continue
            except Exception:  # a decoder bug must not end the stream's thread
                self.decode_errors += 1
                self._decode_failed.set()
                log.exception("video decoder failed")
                continue
            now = time.monotonic()
            for picture in pictures:
                self._on_picture(picture, frame, now)

    def _on_picture(self, picture: DecodedFrame, frame: BufferedFrame, now: float) -> None:
        if frame.keyframe:
            self.keyframes += 1
        if self._last_picture is not None and now - self._last_picture > FREEZE:
            self.freezes += 1
        self._last_picture = now
        self._frame_times.append(now)
        delay = self._delay(picture, frame, now)
        if delay is not None and -1.0 < delay < 30.0:
            self._e2e.append(delay)
        self._latest = picture
        self._latest_seq += 1

    def _delay(self, picture: DecodedFrame, frame: BufferedFrame, now: float) -> float | None:
        if self._read_stamps:
            stamp = read_pattern_stamp(picture.data, picture.pixel_format)
            if stamp is not None:  # glass to glass: the capture time drawn into the picture (wall clock)
                return time.time() - stamp[1] / 1000.0
        clock = self._sender_clock
        if clock is None:
            return None
        d = (frame.timestamp - clock[0]) & 0xFFFFFFFF
        d = d - 0x100000000 if d >= 0x80000000 else d
        return now - (clock[1] + d / CLOCK_RATE)

    # -- for the renderer -----------------------------------------------------------

    def latest(self) -> tuple[int, DecodedFrame | None]:
        """(version, newest picture): the version grows with every picture, so a renderer can skip
        uploading one it already has."""
        return self._latest_seq, self._latest

    def e2e_quantiles(self) -> tuple[float, float]:
        samples = sorted(list(self._e2e)[-150:])
        if not samples:
            return -1.0, -1.0
        return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.95))]

    def e2e_samples(self) -> list[float]:
        return list(self._e2e)

    def stats(self, now: float) -> VideoStats:
        total_bytes = self.reception.bytes
        bitrate = self._rate_marks.bitrate(now, total_bytes) / 1000
        recent = [t for t in self._frame_times if now - t <= 2.0]
        fps = len(recent) / min(2.0, max(1e-6, now - recent[0])) if len(recent) > 1 else 0.0
        p50, p95 = self.e2e_quantiles()
        latest = self._latest
        buf = self.buffer.stats()
        return VideoStats(
            frames=self._latest_seq,
            fps=round(fps, 1),
            width=latest.width if latest else 0,
            height=latest.height if latest else 0,
            bitrate_kbps=round(bitrate, 1),
            loss_pct=round(self.loss_pct, 2),
            estimate_kbps=round(self.bwe.estimate(now) / 1000, 1),
            freezes=self.freezes,
            keyframes=self.keyframes,
            keyframe_requests=buf["keyframe_requests"],
            e2e_ms=round(p50 * 1000, 1) if p50 >= 0 else -1.0,
            e2e_p95_ms=round(p95 * 1000, 1) if p95 >= 0 else -1.0,
            decode_errors=self.decode_errors,
            dropped=buf["skipped"] + buf["late"] + self.queue_drops,
            malformed=self.malformed,
        )
