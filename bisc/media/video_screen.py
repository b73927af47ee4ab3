"""Screen capture: a whole display, or one window by title, with the pointer drawn in.

Pixels come from ``mss`` (X11, macOS, Windows). Windows and the pointer come from a :class:`Desktop`
backend, one per platform: X11 (:mod:`bisc.media.video_x11`), Windows (:mod:`bisc.media.video_desktop_win`,
ctypes), macOS (:mod:`bisc.media.video_desktop_mac`, Quartz); elsewhere whole-display capture works and
window capture raises a clear error.

An ``mss`` instance belongs to the thread that created it: create and use a ScreenSource on one thread.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Protocol

import numpy as np

from bisc.media.video_color import to_yuv420p
from bisc.media.video_types import (
    Image,
    ScreenCaptureError,
    VideoFrameIn,
    WindowNotFoundError,
)
from bisc.media.video_x11 import WindowInfo, X11Desktop

__all__ = ["Desktop", "ScreenSource", "WindowInfo", "desktop_for_platform", "draw_cursor", "find_window"]

_GEOMETRY_REFRESH = 0.5  # seconds between window geometry queries (a moved window follows within this)

# A 12x19 arrow pointer: '#' outline (black), '.' fill (white), ' ' transparent.
_ARROW = [
    "#           ", "##          ", "#.#         ", "#..#        ", "#...#       ", "#....#      ",
    "#.....#     ", "#......#    ", "#.......#   ", "#........#  ", "#.........# ", "#..........#",
    "#......#####", "#...#..#    ", "#..# #..#   ", "#.#  #..#   ", "##    #..#  ", "      #..#  ",
    "       ##   ",
]  # fmt: skip
_ARROW_MASK = np.array([[c != " " for c in row] for row in _ARROW])
_ARROW_WHITE = np.array([[c == "." for c in row] for row in _ARROW])


class Desktop(Protocol):
    """What screen capture needs from the platform besides pixels."""

    def list_windows(self) -> list[WindowInfo]: ...

    def window_geometry(self, window_id: int) -> WindowInfo: ...

    def cursor_position(self) -> tuple[int, int] | None: ...

    def close(self) -> None: ...


class _NoWindows:
    """Desktop stand-in for platforms without a backend yet: no window list, no pointer."""

    def __init__(self, platform: str) -> None:
        self.platform = platform

    def list_windows(self) -> list[WindowInfo]:
        raise ScreenCaptureError(f"window capture is not implemented on {self.platform} yet")

    def window_geometry(self, window_id: int) -> WindowInfo:
        raise ScreenCaptureError(f"window capture is not implemented on {self.platform} yet")

    def cursor_position(self) -> tuple[int, int] | None:
        return None

    def close(self) -> None:
        pass


def desktop_for_platform(x_display: str | None = None) -> Desktop:
    """The Desktop backend of this platform (X11 on Linux/BSD, user32 on Windows, Quartz on macOS; a
    window-less stand-in elsewhere)."""
    if sys.platform == "win32":
        from bisc.media.video_desktop_win import WindowsDesktop

        return WindowsDesktop()
    if sys.platform == "darwin":
        from bisc.media.video_desktop_mac import MacDesktop

        return MacDesktop()
    if sys.platform.startswith(("linux", "freebsd", "openbsd")):
        return X11Desktop(x_display)
    return _NoWindows(sys.platform)


def find_window(desktop: Desktop, title: str) -> WindowInfo:
    """The window titled exactly ``title``, else the one whose title contains it (case-insensitive)."""
    windows = desktop.list_windows()
    exact = [w for w in windows if w.title == title]
    if exact:
        return exact[0]  # largest first: a toplevel beats a same-named tooltip
    partial = [w for w in windows if title.lower() in w.title.lower()]
    if len(partial) == 1:
        return partial[0]
    titles = sorted({w.title for w in (partial or windows)})[:10]
    if partial:
        raise WindowNotFoundError(f"several windows match {title!r}: {titles}")
    raise WindowNotFoundError(f"no window titled {title!r}; open windows include {titles}")


def draw_cursor(bgra: Image, x: int, y: int) -> None:
    """Draw an arrow pointer with its tip at (x, y) into an (h, w, 3|4) image, in place, clipped."""
    h, w = bgra.shape[:2]
    ah, aw = _ARROW_MASK.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + aw, w), min(y + ah, h)
    if x0 >= x1 or y0 >= y1:
        return
    mask = _ARROW_MASK[y0 - y : y1 - y, x0 - x : x1 - x]
    white = _ARROW_WHITE[y0 - y : y1 - y, x0 - x : x1 - x]
    region = bgra[y0:y1, x0:x1, :3]
    region[mask] = 0
    region[white] = 255


class ScreenSource:
    """Captures display ``display`` (mss monitor index, 1 = first; 0 = all together) or one ``window``
    (a title, see :func:`find_window`, or an X window id), as yuv420p frames with the pointer drawn.

    ``x_display`` selects the X server (e.g. ``":99"``; default ``$DISPLAY``).
    """

    def __init__(
        self,
        display: int = 1,
        window: str | int | None = None,
        *,
        x_display: str | None = None,
        cursor: bool = True,
        desktop: Desktop | None = None,
    ) -> None:
        import mss  # only screen capture needs it (media extra)

        self.cursor = cursor
        if sys.platform.startswith("linux") and not (x_display or os.environ.get("DISPLAY")):
            raise ScreenCaptureError(
                "no display to capture: DISPLAY is not set (Wayland-only sessions need XWayland)"
            )
        self._desktop: Desktop = desktop or desktop_for_platform(x_display)
        try:
            factory: Any = getattr(mss, "MSS", None) or mss.mss  # mss 10 renamed the factory
            self._sct: Any = factory(display=x_display) if x_display else factory()
            monitors: list[dict[str, int]] = list(self._sct.monitors)
        except Exception as exc:  # mss raises its own ScreenShotError and ctypes errors
            self._desktop.close()
            raise ScreenCaptureError(f"cannot open the screen for capture: {exc}") from exc
        self._bounds = monitors[0]
        self.display_count = len(monitors) - 1  # mss lists all displays together first
        self._window: WindowInfo | None = None
        self._window_checked = 0.0
        try:
            if window is not None:
                self._window = (
                    self._desktop.window_geometry(window)
                    if isinstance(window, int)
                    else find_window(self._desktop, window)
                )
                self._window_checked = time.monotonic()
            elif not 0 <= display < len(monitors):
                raise ScreenCaptureError(
                    f"no display {display}: this screen has displays 0..{len(monitors) - 1}"
                )
        except Exception:
            self.close()
            raise
        self.display = display
        self._monitor = monitors[display] if window is None else None
        self._closed = False

    @property
    def window(self) -> WindowInfo | None:
        return self._window

    @property
    def width(self) -> int:
        """Width of the frames now being captured (a window's may change as it is resized)."""
        return self._region()["width"]

    @property
    def height(self) -> int:
        return self._region()["height"]

    def _region(self) -> dict[str, int]:
        if self._window is None:
            assert self._monitor is not None
            region = dict(self._monitor)
        else:
            now = time.monotonic()
            if now - self._window_checked >= _GEOMETRY_REFRESH:
                self._window = self._desktop.window_geometry(self._window.id)
                self._window_checked = now
            win = self._window
            region = {"left": win.x, "top": win.y, "width": win.width, "height": win.height}
        # Clip to the virtual screen (a window partly off-screen) and make the size even for yuv420p.
        b = self._bounds
        left, top = max(region["left"], b["left"]), max(region["top"], b["top"])
        right = min(region["left"] + region["width"], b["left"] + b["width"])
        bottom = min(region["top"] + region["height"], b["top"] + b["height"])
        width, height = (right - left) & ~1, (bottom - top) & ~1
        if width < 2 or height < 2:
            raise WindowNotFoundError("the window is entirely off-screen")
        return {"left": left, "top": top, "width": width, "height": height}

    def read_frame(self) -> VideoFrameIn:
        t = time.time()
        return VideoFrameIn(to_yuv420p(VideoFrameIn(self.read_bgra(), "bgra", t)), "yuv420p", t)

    def read_bgra(self) -> Image:
        """The next capture as BGRA pixels (what mss gives), pointer included (tests, local preview)."""
        if self._closed:
            raise ScreenCaptureError("the screen source is closed")
        region = self._region()
        try:
            shot = self._sct.grab(region)
        except Exception as exc:  # mss raises ScreenShotError; keep whatever it is in our family
            raise ScreenCaptureError(f"screen grab of {region} failed: {exc}") from exc
        bgra: Image = (
            np.frombuffer(shot.raw, dtype=np.uint8).reshape(region["height"], region["width"], 4).copy()
        )
        if self.cursor and (pos := self._desktop.cursor_position()) is not None:
            draw_cursor(bgra, pos[0] - region["left"], pos[1] - region["top"])
        return bgra

    def close(self) -> None:
        self._closed = True
        sct = getattr(self, "_sct", None)
        if sct is not None:
            sct.close()
            self._sct = None
        self._desktop.close()
