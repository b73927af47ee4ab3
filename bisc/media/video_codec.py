"""VP8 and H.264 video encode/decode through PyAV, tuned for real-time calls.

* VP8: ``libvpx`` with ``deadline=realtime``, a high ``cpu-used``, ``error-resilient`` and
  ``lag-in-frames=0`` (VP8 has no B-frames): one packet out per frame in, immediately.
* H.264: ``libx264`` ``ultrafast`` + ``zerolatency`` (no lookahead, no B-frames, no frame threads),
  constrained-baseline profile so every decoder (hardware ones included) can take it.

Output is Annex B for H.264 (start codes, SPS/PPS repeated before every IDR) and raw VP8 frames, one
:class:`EncodedFrame` per input frame. Keyframes come from :meth:`VideoEncoder.encode`'s
``force_keyframe`` and from the periodic interval (measured on capture time, so a variable-rate screen
source still gets one every ``keyframe_interval`` seconds).

Bitrate and resolution changes reopen the codec context, which costs one keyframe: PyAV 18 cannot
reconfigure either encoder live (measured: see :meth:`VideoEncoder.set_bitrate`).
"""

from __future__ import annotations

import functools
import os
from fractions import Fraction
from typing import Literal, cast

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from bisc.media.video_color import to_yuv420p_av
from bisc.media.video_types import (
    DecodedFrame,
    EncodedFrame,
    Image,
    PixelFormat,
    VideoCodecError,
    VideoFrameIn,
    check_size,
)

VideoCodec = Literal["vp8", "h264"]
CODECS: tuple[VideoCodec, ...] = ("vp8", "h264")
_ENCODERS = {"vp8": "libvpx", "h264": "libx264"}
_DECODERS = {"vp8": "vp8", "h264": "h264"}

CLOCK_RATE = 90000  # RTP video clock: pts unit of EncodedFrame
MIN_BITRATE = 30_000
MAX_BITRATE = 50_000_000
MAX_FRAME_BYTES = 4 * 1024 * 1024  # a decoder refuses larger "frames": bounds work on garbage

# Resolution ladder the congestion controller steps along (16:9).
LADDER: dict[str, tuple[int, int]] = {
    "1080p": (1920, 1080),
    "720p": (1280, 720),
    "360p": (640, 360),
    "180p": (320, 180),
}


def _threads(width: int, height: int) -> int:
    # One thread per ~0.5 Mpixel, at most 4: realtime VP8 at 1080p needs several, 360p gains nothing.
    return max(1, min(4, os.cpu_count() or 1, (width * height) // 500_000 + 1))


class VideoEncoder:
    """Encodes :class:`VideoFrameIn` frames of any supported format and size into ``codec`` packets.

    Frames whose size differs from the encoder's (``set_resolution``) are scaled with swscale first, so
    the resolution ladder never touches the source.
    """

    def __init__(
        self,
        codec: VideoCodec = "vp8",
        width: int = 640,
        height: int = 360,
        fps: float = 30.0,
        bitrate: int = 800_000,
        keyframe_interval: float | None = 3.0,
    ) -> None:
        if codec not in _ENCODERS:
            raise VideoCodecError(f"unknown video codec {codec!r}; use one of {CODECS}")
        if not 1.0 <= fps <= 120.0:
            raise VideoCodecError(f"fps must be within 1..120, got {fps}")
        if keyframe_interval is not None and keyframe_interval <= 0:
            raise VideoCodecError(f"keyframe_interval must be positive or None, got {keyframe_interval}")
        check_size(width, height)
        self._check_bitrate(bitrate)
        self.codec: VideoCodec = codec
        self.width = width
        self.height = height
        self.fps = fps
        self.bitrate = bitrate
        self.keyframe_interval = keyframe_interval
        self.reopens = 0  # codec contexts opened after the first (bitrate or resolution changes)
        self._t0: float | None = None
        self._last_pts = -1
        self._last_keyframe_time: float | None = None
        self._force_next = False
        self._vbv_max = bitrate * 3 // 2
        self._ctx = self._open()

    @staticmethod
    def _check_bitrate(bps: int) -> None:
        if not MIN_BITRATE <= bps <= MAX_BITRATE:
            raise VideoCodecError(f"bitrate must be within {MIN_BITRATE}..{MAX_BITRATE} b/s, got {bps}")

    def _open(self) -> VideoCodecContext:
        ctx = cast(VideoCodecContext, av.CodecContext.create(_ENCODERS[self.codec], "w"))
        ctx.width = self.width
        ctx.height = self.height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, CLOCK_RATE)
        ctx.framerate = Fraction(self.fps).limit_denominator(1001)
        ctx.bit_rate = self.bitrate
        ctx.max_b_frames = 0
        # Keyframes are ours to place (periodic on capture time, or on request): keep the codec's own
        # GOP far away so it never adds surprise ones.
        ctx.gop_size = 100_000
        ctx.thread_count = _threads(self.width, self.height)
        if self.codec == "vp8":
            ctx.options = {
                "deadline": "realtime",
                "cpu-used": "8",  # 4..16 for realtime; 8 keeps 1080p under a frame time on one core
                "error-resilient": "1",
                "lag-in-frames": "0",
                "auto-alt-ref": "0",
                "static-thresh": "0",
                "undershoot-pct": "95",
                "overshoot-pct": "15",
            }
            ctx.qmin, ctx.qmax = 4, 56
        else:
            ctx.profile = "Constrained Baseline"
            ctx.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "forced-idr": "1",  # a forced keyframe must be an IDR: a fresh decoder starts there
                # repeat SPS/PPS in-band before every IDR so any keyframe decodes standalone
                "x264-params": "repeat-headers=1",
                # VBV: caps the bursts the pacer has to smooth.
                "maxrate": str(self._vbv_max),
                "bufsize": str(self._vbv_max),
            }
        try:
            ctx.open()
        except av.FFmpegError as exc:
            raise VideoCodecError(
                f"cannot open the {self.codec} encoder at {self.width}x{self.height}: {exc}"
            ) from exc
        unused = dict(ctx.options)
        if unused:
            raise VideoCodecError(f"the {self.codec} encoder does not support the options {sorted(unused)}")
        self._force_next = True  # a new context starts with a keyframe anyway; say so
        return ctx

    def set_bitrate(self, bps: int) -> None:
        """Change the target bitrate from the next frame, by reopening the codec context (one keyframe).

        Measured with PyAV 18: assigning ``bit_rate`` on an open context changes nothing in the output of
        either libvpx or libx264 (the next 2 s stay at the old rate), while a reopened context is on the
        new rate within half a second. The congestion controller should therefore step, not creep.
        """
        self._check_bitrate(bps)
        if bps == self.bitrate:
            return
        self.bitrate = bps
        self._vbv_max = bps * 3 // 2
        self._ctx = self._open()
        self.reopens += 1

    def set_resolution(self, width: int, height: int) -> None:
        """Change the output size (e.g. a ladder step, see :data:`LADDER`); the next frame is a keyframe."""
        check_size(width, height)
        if (width, height) == (self.width, self.height):
            return
        self.width, self.height = width, height
        self._ctx = self._open()
        self.reopens += 1

    def request_keyframe(self) -> None:
        """Make the next encoded frame a keyframe (e.g. a peer asked for one after loss)."""
        self._force_next = True

    def encode(self, frame: VideoFrameIn, force_keyframe: bool = False) -> list[EncodedFrame]:
        """Encode one frame; the packets it produced (exactly one with these settings)."""
        if not isinstance(frame, VideoFrameIn):
            raise VideoCodecError(f"encode() takes a VideoFrameIn, got {type(frame).__name__}")
        t = frame.capture_time
        if self._t0 is None:
            self._t0 = t
        # pts from capture time (variable frame rate is fine) but strictly increasing, as encoders demand.
        pts = max(self._last_pts + 1, round((t - self._t0) * CLOCK_RATE))
        self._last_pts = pts
        key = force_keyframe or self._force_next
        if (
            not key
            and self.keyframe_interval is not None
            and self._last_keyframe_time is not None
            and t - self._last_keyframe_time >= self.keyframe_interval
        ):
            key = True
        av_frame = to_yuv420p_av(frame, self.width, self.height)
        av_frame.pts = pts
        av_frame.time_base = Fraction(1, CLOCK_RATE)
        av_frame.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
        try:
            packets = self._ctx.encode(av_frame)
        except av.FFmpegError as exc:
            raise VideoCodecError(f"{self.codec} encoding failed: {exc}") from exc
        out: list[EncodedFrame] = []
        for packet in packets:
            is_key = bool(packet.is_keyframe)
            if is_key:
                self._last_keyframe_time = t
                self._force_next = False
            out.append(
                EncodedFrame(
                    data=bytes(packet),
                    keyframe=is_key,
                    pts=int(packet.pts) if packet.pts is not None else pts,
                    capture_time=t,
                    width=self.width,
                    height=self.height,
                )
            )
        return out


@functools.cache
def available_codecs() -> tuple[VideoCodec, ...]:
    """The codecs this PyAV build can both encode and decode (what this node can offer and take)."""
    found: list[VideoCodec] = []
    for codec in CODECS:
        try:
            av.codec.Codec(_ENCODERS[codec], "w")
            av.codec.Codec(_DECODERS[codec], "r")
        except Exception:  # UnknownCodecError and the like: not in this build
            continue
        found.append(codec)
    return tuple(found)


def is_keyframe(codec: VideoCodec, data: bytes) -> bool:
    """Whether ``data`` (one encoded frame) starts a decodable sequence, read from the bitstream."""
    if codec == "vp8":
        # RFC 6386 §9.1: frame tag bit 0 is 0 for a key frame, then the start code 9d 01 2a.
        return len(data) >= 10 and not data[0] & 1 and data[3:6] == b"\x9d\x01\x2a"
    return any(nal_type == 5 for nal_type in _h264_nal_types(data))


def _h264_nal_types(data: bytes, limit: int = 64) -> list[int]:
    """NAL unit types of an Annex B access unit (at most ``limit`` units looked at)."""
    types: list[int] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(data) and len(types) < limit:
        types.append(data[i + 3] & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


def _check_bitstream(codec: VideoCodec, data: bytes) -> None:
    """Cheap structural checks that catch garbage FFmpeg would silently swallow (or log and drop)."""
    if not data:
        raise VideoCodecError("empty video frame")
    if len(data) > MAX_FRAME_BYTES:
        raise VideoCodecError(f"video frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
    if codec == "vp8":
        if len(data) < 3:
            raise VideoCodecError(f"VP8 frame of {len(data)} bytes is shorter than its 3-byte tag")
        tag = data[0] | data[1] << 8 | data[2] << 16
        version = (tag >> 1) & 7
        first_part = tag >> 5
        if version > 3 or first_part > len(data):
            raise VideoCodecError("not a VP8 frame (bad frame tag)")
        if not tag & 1 and (len(data) < 10 or data[3:6] != b"\x9d\x01\x2a"):
            raise VideoCodecError("not a VP8 frame (key frame without the 9d 01 2a start code)")
        return
    if not (data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")):
        raise VideoCodecError("not an H.264 Annex B access unit (no leading start code)")
    i = data.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(data):
        header = data[i + 3]
        if header & 0x80 or not 1 <= header & 0x1F <= 23:
            raise VideoCodecError(f"not an H.264 access unit (bad NAL header 0x{header:02x})")
        i = data.find(b"\x00\x00\x01", i + 3)


class VideoDecoder:
    """Decodes one stream of ``codec`` frames into pictures in ``output`` format.

    ``output`` is ``rgb24`` (default: a texture upload as is), ``rgba``, or ``yuv420p`` (three planes for
    a shader-side conversion, see :func:`bisc.media.video_color.yuv420p_planes`; the cheapest).

    Bad data raises :class:`VideoCodecError` and never crashes. After an error, or before the first
    keyframe, delta frames are dropped (counted in ``dropped``) until a keyframe arrives:
    ``needs_keyframe`` tells the pipeline to ask the sender for one.
    """

    def __init__(self, codec: VideoCodec = "vp8", output: PixelFormat = "rgb24") -> None:
        if codec not in _DECODERS:
            raise VideoCodecError(f"unknown video codec {codec!r}; use one of {CODECS}")
        if output not in ("rgb24", "rgba", "yuv420p", "bgr24", "bgra"):
            raise VideoCodecError(f"unsupported decoder output format {output!r}")
        self.codec: VideoCodec = codec
        self.output: PixelFormat = output
        self.needs_keyframe = True
        self.dropped = 0
        self.errors = 0
        self._ctx = self._open()

    def _open(self) -> VideoCodecContext:
        ctx = cast(VideoCodecContext, av.CodecContext.create(_DECODERS[self.codec], "r"))
        # Slice threads only: frame threading would hold back one frame per thread (latency).
        ctx.thread_type = "SLICE"
        ctx.thread_count = 2
        try:
            ctx.open()
        except av.FFmpegError as exc:
            raise VideoCodecError(f"cannot open the {self.codec} decoder: {exc}") from exc
        return ctx

    def decode(self, data: bytes) -> list[DecodedFrame]:
        """Decode one encoded frame; the pictures it completed (one, or none while waiting for a keyframe)."""
        data = bytes(data)
        try:
            _check_bitstream(self.codec, data)
        except VideoCodecError:
            self._fail()
            raise
        key = is_keyframe(self.codec, data)
        if self.needs_keyframe and not key:
            self.dropped += 1
            return []
        try:
            frames = self._ctx.decode(av.Packet(data))
            out = [
                DecodedFrame(
                    data=cast(Image, f.to_ndarray(format=self.output)),
                    pixel_format=self.output,
                    width=f.width,
                    height=f.height,
                    pts=f.pts,
                    keyframe=key,
                )
                for f in frames
            ]
        except (av.FFmpegError, ValueError) as exc:
            self._fail()
            raise VideoCodecError(f"cannot decode {self.codec} frame of {len(data)} bytes: {exc}") from exc
        if key:
            self.needs_keyframe = False
        return out

    def _fail(self) -> None:
        # The reference state may now be wrong: drop deltas until the next keyframe. A fresh context
        # makes sure no corrupted reference leaks into the next keyframe's neighbours.
        self.errors += 1
        self.needs_keyframe = True
        self._ctx = self._open()


def psnr(a: Image, b: Image) -> float:
    """Peak signal-to-noise ratio of two same-shaped uint8 images, in dB (inf when identical)."""
    if a.shape != b.shape:
        raise VideoCodecError(f"psnr of different shapes {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))
