"""The sending half of one video stream (camera or screen).

Each captured frame is encoded once and fragmented to the smallest datagram
size over the links; the caller fans the same datagrams out to every peer.
Keyframes: on request (a new peer, a receiver's KeyframeRequest), at most
one per `KEYFRAME_MIN_INTERVAL`, and periodically for late joiners (the
encoder's own interval). The bandwidth estimate from the receivers' reports
moves the encoder along the ladder.
"""

from __future__ import annotations

import random
import threading

from bisc import hotpaths
from bisc.codec.packet import FLAG_KEYFRAME
from bisc.media.video_codec import CLOCK_RATE, VideoCodec, VideoEncoder
from bisc.media.video_ladder import Ladder, Target
from bisc.media.video_types import VideoFrameIn
from bisc.proto.media_control import StreamOffer

KEYFRAME_MIN_INTERVAL = 0.15
# PyAV cannot retarget a running encoder: a new bitrate reopens it and costs a keyframe, so the
# bitrate only follows the estimate in steps of at least this fraction.
BITRATE_STEP = 0.2
SEND_DEADLINE = 0.2  # video older than this when it reaches the network is dropped
START_BPS = 600_000


class VideoSender:
    def __init__(
        self,
        stream_id: int,
        *,
        codec: VideoCodec = "vp8",
        source_size: tuple[int, int],
        fps: float = 30.0,
        screen: bool = False,
        max_height: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        rng = rng or random.Random()
        self.stream_id = stream_id
        self.codec: VideoCodec = codec
        self.fps = fps
        self.ladder = Ladder(source_size[0], source_size[1], fps, screen=screen, max_height=max_height)
        self.target: Target = self.ladder.update(START_BPS, 0.0)
        self.encoder = VideoEncoder(
            codec, self.target.width, self.target.height, fps, self.target.bitrate, keyframe_interval=3.0
        )
        self._sequence = rng.getrandbits(32)
        self._ts_base = rng.getrandbits(32)
        self._keyframe_wanted = True
        self._last_keyframe = -1e9
        self._lock = threading.Lock()
        self.clock: tuple[int, float] | None = None  # (timestamp, capture time) of the newest frame
        self.frames_encoded = 0
        self.keyframes = 0
        self.last_had_keyframe = False  # whether the last packetize() carried a keyframe
        self.bytes_encoded = 0
        self.too_large = 0
        # Under loss a keyframe of many fragments is likely to lose one and be useless, and the
        # receiver then waits a round trip for the next: send keyframes twice while peers report loss.
        self.protect_keyframes = False

    def offer(self) -> StreamOffer:
        return StreamOffer(self.stream_id, "video", self.codec, CLOCK_RATE, 1, round(1000 / self.fps), False)

    def request_keyframe(self) -> None:
        self._keyframe_wanted = True

    def set_codec(self, codec: VideoCodec) -> None:
        """Encode with `codec` from the next frame on (a keyframe); the stream must be offered again."""
        with self._lock:
            if codec == self.codec:
                return
            target = self.target
            self.encoder = VideoEncoder(
                codec, target.width, target.height, self.fps, self.encoder.bitrate, keyframe_interval=3.0
            )
            self.codec = codec
            self._keyframe_wanted = True
            self._last_keyframe = -1e9

    def set_estimate(self, estimate_bps: int, now: float, reserve_bps: int = 0) -> Target:
        """Move along the ladder for a new bandwidth estimate (the lowest over the receivers)."""
        target = self.ladder.update(estimate_bps, now, reserve_bps)
        with self._lock:
            if (target.width, target.height) != (self.target.width, self.target.height):
                self.encoder.set_resolution(target.width, target.height)
            resized = (target.width, target.height) != (self.target.width, self.target.height)
            old = self.encoder.bitrate
            # A rung's ceiling is always reached, even by a small step: the ladder climbs only once the
            # estimate allows 1.2x the ceiling, and a receiver's estimate stays within ~1.5x what it
            # receives, so an encoder held a few percent under the ceiling could never climb.
            ceiling = target.bitrate == self.ladder.rung.max_bps and old < target.bitrate
            if resized or ceiling or abs(target.bitrate - old) > BITRATE_STEP * old:
                self.encoder.set_bitrate(target.bitrate)
            else:
                target = Target(target.width, target.height, target.fps, old, target.rung)
            self.target = target
        return target

    def packetize(self, frame: VideoFrameIn, capture_mono: float, max_datagram_size: int) -> list[bytes]:
        """Encode one captured frame and fragment it; the datagrams for every peer."""
        with self._lock:
            force = self._keyframe_wanted and capture_mono - self._last_keyframe >= KEYFRAME_MIN_INTERVAL
            if force:
                self._keyframe_wanted = False
            encoded = self.encoder.encode(frame, force_keyframe=force)
            self.last_had_keyframe = any(enc.keyframe for enc in encoded)
            datagrams: list[bytes] = []
            for enc in encoded:
                ts = (self._ts_base + enc.pts) & 0xFFFFFFFF
                try:
                    parts = hotpaths.fragment.fragment_frame(
                        enc.data,
                        stream_id=self.stream_id,
                        first_sequence=self._sequence,
                        timestamp=ts,
                        flags=FLAG_KEYFRAME if enc.keyframe else 0,
                        max_datagram_size=max_datagram_size,
                    )
                except ValueError:  # FrameTooLargeError: a frame no link can carry
                    self.too_large += 1
                    self._keyframe_wanted = True
                    continue
                self._sequence = (self._sequence + len(parts)) & 0xFFFFFFFF
                datagrams.extend(parts)
                if enc.keyframe and self.protect_keyframes:
                    datagrams.extend(parts)  # the copies go after the originals: a burst rarely hits both
                self.clock = (ts, capture_mono)
                self.frames_encoded += 1
                self.bytes_encoded += len(enc.data)
                if enc.keyframe:
                    self.keyframes += 1
                    self._last_keyframe = capture_mono
            return datagrams
