"""Video frame containers and errors shared by the video codec, sources and benchmarks.

Frames are numpy ``uint8`` arrays in PyAV's own ``to_ndarray``/``from_ndarray`` layouts, so no copy or
repacking is needed between a source, the encoder and the decoder:

* ``yuv420p``: one ``(height * 3 // 2, width)`` array, the Y plane followed by U then V (each a quarter
  of Y, packed row after row). The cheapest input: the encoders take it as it is.
* ``rgb24`` / ``bgr24``: ``(height, width, 3)``; ``rgba`` / ``bgra``: ``(height, width, 4)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from bisc.errors import BiscError

PixelFormat = Literal["yuv420p", "rgb24", "bgr24", "rgba", "bgra"]
PIXEL_FORMATS: tuple[PixelFormat, ...] = ("yuv420p", "rgb24", "bgr24", "rgba", "bgra")
_CHANNELS = {"rgb24": 3, "bgr24": 3, "rgba": 4, "bgra": 4}

# Largest frame accepted anywhere (8K UHD): bounds memory for a bogus size from a file or a window.
MAX_WIDTH = 7680
MAX_HEIGHT = 4320

Image = npt.NDArray[np.uint8]


class VideoError(BiscError):
    """Base class of the video errors."""


class VideoCodecError(VideoError, ValueError):
    """A frame that cannot be encoded, or data that cannot be decoded."""


class VideoSourceError(VideoError):
    """A video source that cannot be opened or read (file, camera, screen, window)."""


class CameraError(VideoSourceError):
    """No usable camera: none present, busy, or the requested mode is refused."""


class ScreenCaptureError(VideoSourceError):
    """The screen cannot be captured (no display, unsupported platform, bad display index)."""


class WindowNotFoundError(ScreenCaptureError):
    """No window matches the requested title (or it went away)."""


def check_size(width: int, height: int, *, even: bool = True) -> None:
    """Refuse sizes the encoders cannot take (yuv420p needs even sizes) or that are absurdly large."""
    if not (isinstance(width, int) and isinstance(height, int)):
        raise VideoCodecError(f"frame size must be integers, got {width!r}x{height!r}")
    if not (2 <= width <= MAX_WIDTH and 2 <= height <= MAX_HEIGHT):
        raise VideoCodecError(
            f"frame size must be within 2x2..{MAX_WIDTH}x{MAX_HEIGHT}, got {width}x{height}"
        )
    if even and (width % 2 or height % 2):
        raise VideoCodecError(f"yuv420p needs an even width and height, got {width}x{height}")


@dataclass(frozen=True, slots=True)
class VideoFrameIn:
    """One captured frame: pixels, their format and when they were captured (``time.time()`` seconds).

    The capture time is wall-clock so that it can be compared across processes and peers on one machine
    (end-to-end latency); it travels with the encoded frame.
    """

    data: Image
    pixel_format: PixelFormat
    capture_time: float

    def __post_init__(self) -> None:
        a = self.data
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8:
            raise VideoCodecError("frame data must be a numpy uint8 array")
        if self.pixel_format == "yuv420p":
            if a.ndim != 2 or a.shape[0] % 3:
                raise VideoCodecError(f"a yuv420p frame must be a (h*3/2, w) array, got shape {a.shape}")
            check_size(a.shape[1], a.shape[0] * 2 // 3)
        elif self.pixel_format in _CHANNELS:
            if a.ndim != 3 or a.shape[2] != _CHANNELS[self.pixel_format]:
                raise VideoCodecError(
                    f"a {self.pixel_format} frame must be (h, w, {_CHANNELS[self.pixel_format]}), "
                    f"got shape {a.shape}"
                )
            check_size(a.shape[1], a.shape[0], even=False)
        else:
            raise VideoCodecError(
                f"unsupported pixel format {self.pixel_format!r}; use one of {PIXEL_FORMATS}"
            )

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def height(self) -> int:
        rows = int(self.data.shape[0])
        return rows * 2 // 3 if self.pixel_format == "yuv420p" else rows


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded access unit (a whole frame: the transport fragments it).

    ``pts`` is in ``1/90000`` s (the RTP video clock) from the encoder's first frame; ``capture_time``
    is copied from the input frame.
    """

    data: bytes
    keyframe: bool
    pts: int
    capture_time: float
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """One decoded picture, ready for a texture upload in ``pixel_format`` (``rgb24`` by default).

    ``decoded_at`` is ``time.monotonic()`` when the picture was made (after colour conversion): the
    renderer's delay is measured from it."""

    data: Image
    pixel_format: PixelFormat
    width: int
    height: int
    pts: int | None
    keyframe: bool
    decoded_at: float = field(default_factory=time.monotonic, compare=False)
