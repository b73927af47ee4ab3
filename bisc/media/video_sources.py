"""Video sources: a test pattern, a video file, a camera, and (re-exported from
:mod:`bisc.media.video_screen`) the screen. Each has ``read_frame() -> VideoFrameIn`` (yuv420p),
``width``/``height`` (the frames it delivers) and ``close()``.

``PatternSource`` and ``VideoFileSource`` do not pace (they return the next frame at once; the caller
ticks at ``fps``). ``CameraSource`` blocks until the device delivers the next frame.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Protocol, cast

import av

from bisc.media.video_pattern import PatternSource, read_pattern_stamp
from bisc.media.video_screen import ScreenSource
from bisc.media.video_types import CameraError, Image, VideoFrameIn, VideoSourceError, check_size

__all__ = [
    "CameraSource",
    "PatternSource",
    "ScreenSource",
    "VideoFileSource",
    "VideoSource",
    "camera_input_format",
    "read_pattern_stamp",
]

_MAX_DECODE_ERRORS = 16  # consecutive undecodable packets before a file/camera counts as broken


class VideoSource(Protocol):
    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    def read_frame(self) -> VideoFrameIn: ...

    def close(self) -> None: ...


def _even_yuv(frame: av.VideoFrame) -> VideoFrameIn:
    """A decoded frame as a yuv420p VideoFrameIn, cropped/scaled to even sizes when needed."""
    w, h = frame.width & ~1, frame.height & ~1
    check_size(w, h)
    if frame.format.name != "yuv420p" or (w, h) != (frame.width, frame.height):
        frame = frame.reformat(width=w, height=h, format="yuv420p")
    return VideoFrameIn(cast(Image, frame.to_ndarray()), "yuv420p", time.time())


class VideoFileSource:
    """Frames of the first video stream of a file (any container/codec FFmpeg reads), looping at EOF."""

    def __init__(self, path: str | os.PathLike[str], loop: bool = True) -> None:
        self.path = os.fspath(path)
        self.loop = loop
        if not os.path.isfile(self.path):
            raise VideoSourceError(f"no video file at {self.path}")
        try:
            self._container: Any = av.open(self.path)
        except (av.FFmpegError, OSError) as exc:
            raise VideoSourceError(f"cannot open {self.path} as a video: {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise VideoSourceError(f"{self.path} has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 30.0
        # Frames are cropped to even sizes (yuv420p).
        self.width = int(self._stream.codec_context.width) & ~1
        self.height = int(self._stream.codec_context.height) & ~1
        self._frames = self._container.decode(self._stream)
        self._closed = False

    def read_frame(self) -> VideoFrameIn:
        if self._closed:
            raise VideoSourceError(f"{self.path}: the source is closed")
        errors = 0
        restarted = False
        while True:
            try:
                return _even_yuv(next(self._frames))
            except StopIteration:
                if not self.loop or restarted:  # an empty file would loop forever
                    raise VideoSourceError(f"{self.path}: end of video") from None
                restarted = True
                self._container.seek(0)
                self._frames = self._container.decode(self._stream)
            except av.FFmpegError as exc:
                errors += 1
                if errors >= _MAX_DECODE_ERRORS:
                    raise VideoSourceError(f"{self.path}: cannot decode: {exc}") from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._container.close()


def camera_input_format(platform: str | None = None) -> tuple[str, str]:
    """The FFmpeg input device format and the default device name for ``platform`` (sys.platform)."""
    p = platform or sys.platform
    if p.startswith("linux"):
        return "v4l2", "/dev/video0"
    if p == "darwin":
        return "avfoundation", "0"
    if p in ("win32", "cygwin"):
        return "dshow", "video=Integrated Camera"
    raise CameraError(f"no camera support on platform {p!r}")


class CameraSource:
    """A camera through FFmpeg's device input (v4l2 / avfoundation / dshow, picked by the platform)."""

    def __init__(
        self, device: str | None = None, width: int = 1280, height: int = 720, fps: float = 30.0
    ) -> None:
        check_size(width, height)
        fmt, default = camera_input_format()
        if device is None and fmt == "dshow":
            from bisc.media.devices import list_cameras  # dshow has no "first camera" name: ask

            listed, _reason = list_cameras()
            default = listed[0] if listed else default
        self.device = device or default
        self.width, self.height, self.fps = width, height, fps
        if fmt == "v4l2" and not os.path.exists(self.device):
            raise CameraError(
                f"no camera: {self.device} does not exist (is a camera plugged in and allowed?)"
            )
        if not any(fmt in name.split(",") for name in av.formats_available):
            raise CameraError(f"this PyAV build has no {fmt} input device support")
        options = {"video_size": f"{width}x{height}", "framerate": f"{fps:g}"}
        try:
            self._container: Any = av.open(self.device, format=fmt, options=options)
        except (av.FFmpegError, OSError) as exc:
            raise CameraError(
                f"cannot open camera {self.device} ({fmt}) at {width}x{height}@{fps:g}: {exc}"
            ) from exc
        self._frames = self._container.decode(video=0)
        self._closed = False
        # The driver may have picked the nearest mode it supports: report what it delivers.
        ctx = self._container.streams.video[0].codec_context
        if ctx.width and ctx.height:
            self.width, self.height = int(ctx.width) & ~1, int(ctx.height) & ~1

    def read_frame(self) -> VideoFrameIn:
        if self._closed:
            raise CameraError(f"camera {self.device} is closed")
        errors = 0
        while True:
            try:
                return _even_yuv(next(self._frames))
            except StopIteration:
                raise CameraError(f"camera {self.device} stopped delivering frames") from None
            except av.FFmpegError as exc:
                errors += 1
                if errors >= _MAX_DECODE_ERRORS:
                    raise CameraError(f"camera {self.device}: {exc}") from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._container.close()
