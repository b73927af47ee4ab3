"""PNG snapshots of decoded pictures (for `--video-out DIR` and tests), via PyAV's PNG encoder."""

from __future__ import annotations

import os
from pathlib import Path

import av

from bisc.media.video_types import DecodedFrame, VideoCodecError


def encode_png(picture: DecodedFrame) -> bytes:
    if picture.pixel_format not in ("rgb24", "rgba"):
        raise VideoCodecError(f"PNG snapshots take rgb24 or rgba pictures, not {picture.pixel_format}")
    frame = av.VideoFrame.from_ndarray(picture.data, format=picture.pixel_format)
    ctx = av.CodecContext.create("png", "w")
    ctx.width = picture.width
    ctx.height = picture.height
    ctx.pix_fmt = picture.pixel_format
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    return b"".join(bytes(p) for p in packets)


def write_png(picture: DecodedFrame, path: Path) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(encode_png(picture))
    os.replace(tmp, path)
