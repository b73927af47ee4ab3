"""Colour conversion between captured/decoded pixels and yuv420p, kept apart so its cost is measurable.

Two implementations of RGB to yuv420p exist: FFmpeg's swscale through PyAV (``*_av``) and plain numpy
(``*_np``, BT.601 limited range, 2x2 chroma averaging). ``video_bench`` measures both; swscale is several
times cheaper (see :mod:`bisc.media.video_bench`), so the ``to_yuv420p``/``from_yuv420p`` entry points
used by the codec and the sources use it. The numpy versions stay as a dependency-free reference (and
for tests that want to know exactly which matrix was applied).
"""

from __future__ import annotations

from typing import cast

import av
import numpy as np

from bisc.media.video_types import Image, PixelFormat, VideoCodecError, VideoFrameIn, check_size

# BT.601 limited range ("TV" range), what FFmpeg assumes for yuv420p with unspecified colour metadata.
_RGB_TO_Y = np.array([0.256788, 0.504129, 0.097906], dtype=np.float32)
_RGB_TO_U = np.array([-0.148223, -0.290993, 0.439216], dtype=np.float32)
_RGB_TO_V = np.array([0.439216, -0.367788, -0.071427], dtype=np.float32)


def av_frame_from(frame: VideoFrameIn) -> av.VideoFrame:
    """Wrap a frame's pixels in an ``av.VideoFrame`` (one copy into FFmpeg's buffer)."""
    try:
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.data), format=frame.pixel_format)
    except (ValueError, av.FFmpegError) as exc:
        raise VideoCodecError(
            f"cannot wrap a {frame.pixel_format} frame of shape {frame.data.shape}: {exc}"
        ) from exc


def to_yuv420p_av(frame: VideoFrameIn, width: int | None = None, height: int | None = None) -> av.VideoFrame:
    """Convert (and optionally scale) to a yuv420p ``av.VideoFrame`` with swscale."""
    w = frame.width if width is None else width
    h = frame.height if height is None else height
    check_size(w, h)
    src = av_frame_from(frame)
    if frame.pixel_format == "yuv420p" and (w, h) == (frame.width, frame.height):
        return src
    # Bilinear is plenty for a downscale on the ladder and costs half of bicubic.
    return src.reformat(width=w, height=h, format="yuv420p", interpolation="BILINEAR")


def to_yuv420p(frame: VideoFrameIn) -> Image:
    """Any supported frame as a ``(h*3/2, w)`` yuv420p array (swscale; a no-op for yuv420p input)."""
    if frame.pixel_format == "yuv420p":
        return frame.data
    return cast(Image, to_yuv420p_av(frame).to_ndarray())


def from_yuv420p(yuv: Image, pixel_format: PixelFormat = "rgb24") -> Image:
    """A ``(h*3/2, w)`` yuv420p array as ``pixel_format`` (swscale)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(yuv), format="yuv420p")
    return cast(Image, frame.to_ndarray(format=pixel_format))


def to_rgb_preview(frame: VideoFrameIn, max_width: int) -> Image:
    """A frame as rgb24 no wider than `max_width` (a self-view: one swscale pass scales and converts)."""
    src = av_frame_from(frame)
    width = min(frame.width, max_width) & ~1
    height = max(2, round(frame.height * width / frame.width)) & ~1
    return cast(Image, src.reformat(width=width, height=height, format="rgb24").to_ndarray())


def rgb_to_yuv420p_np(rgb: Image, bgr: bool = False) -> Image:
    """Reference numpy RGB (or BGR, 3 or 4 channels) to yuv420p conversion, BT.601 limited range."""
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise VideoCodecError(f"expected an (h, w, 3|4) array, got shape {rgb.shape}")
    h, w = rgb.shape[0], rgb.shape[1]
    check_size(w, h)
    px = rgb[:, :, 2::-1] if bgr else rgb[:, :, :3]
    f = px.astype(np.float32)
    y = f @ _RGB_TO_Y + 16.0
    # Chroma of the 2x2 average is the average of the chroma (the transform is linear).
    sub = f.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    u = sub @ _RGB_TO_U + 128.0
    v = sub @ _RGB_TO_V + 128.0
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    out[:h] = np.clip(y + 0.5, 0, 255)
    out[h:].reshape(-1)[: (h // 2) * (w // 2)] = np.clip(u + 0.5, 0, 255).reshape(-1)
    out[h:].reshape(-1)[(h // 2) * (w // 2) :] = np.clip(v + 0.5, 0, 255).reshape(-1)
    return out


def yuv420p_planes(yuv: Image) -> tuple[Image, Image, Image]:
    """Views of the Y, U and V planes of a ``(h*3/2, w)`` yuv420p array (for a 3-texture upload)."""
    rows, w = yuv.shape
    h = rows * 2 // 3
    chroma = yuv[h:].reshape(-1)
    n = (h // 2) * (w // 2)
    return yuv[:h], chroma[:n].reshape(h // 2, w // 2), chroma[n:].reshape(h // 2, w // 2)
