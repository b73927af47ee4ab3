"""Video sources by the names users type.

Camera stream: "camera" or "camera:DEVICE" (PyAV device input), "pattern"
or "pattern:WxH" (the moving test pattern that carries its frame counter and
capture time in its pixels), or a video file path. Screen stream:
"display" / "display:N" (a whole display) or "window:TITLE" (one window).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bisc.media.video_pattern import PatternSource
from bisc.media.video_sources import CameraSource, ScreenSource, VideoFileSource
from bisc.media.video_types import VideoFrameIn, VideoSourceError

DEFAULT_SIZE = (1280, 720)
DEFAULT_FPS = 30.0


class VideoSource(Protocol):
    def read_frame(self) -> VideoFrameIn: ...

    def close(self) -> None: ...


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise VideoSourceError(f"bad size {text!r}: use WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320) or w % 2 or h % 2:
        raise VideoSourceError(f"bad size {text!r}: even numbers within 16x16..7680x4320")
    return w, h


def open_camera_source(spec: str, fps: float = DEFAULT_FPS) -> tuple[VideoSource, tuple[int, int]]:
    """The source for the camera stream and its size. VideoSourceError if it cannot be opened."""
    name = spec.strip()
    if name == "pattern" or name.startswith("pattern:"):
        size = _size(name[8:]) if name.startswith("pattern:") else DEFAULT_SIZE
        return PatternSource(size[0], size[1], fps), size
    if name == "camera" or name.startswith("camera:"):
        device = name[7:] if name.startswith("camera:") else None
        camera = CameraSource(device, DEFAULT_SIZE[0], DEFAULT_SIZE[1], fps)
        return camera, (camera.width, camera.height)
    if Path(name).expanduser().is_file():
        video_file = VideoFileSource(Path(name).expanduser(), loop=True)
        return video_file, (video_file.width, video_file.height)
    raise VideoSourceError(
        f"unknown video source {spec!r}: use camera[:DEVICE], pattern[:WxH] or a video file"
    )


def open_screen_source(spec: str) -> tuple[VideoSource, tuple[int, int]]:
    name = spec.strip()
    if name == "display" or name.startswith("display:"):
        index = name[8:] if name.startswith("display:") else "1"
        if not index.isdigit():
            raise VideoSourceError(f"bad display {spec!r}: use display or display:N")
        screen = ScreenSource(display=int(index))
    elif name.startswith("window:") and name[7:].strip():
        screen = ScreenSource(window=name[7:].strip())
    else:
        raise VideoSourceError(f"unknown screen {spec!r}: use display[:N] or window:TITLE")
    return screen, (screen.width, screen.height)
