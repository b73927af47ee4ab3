"""macOS desktop queries for screen capture: on-screen windows and their bounds from Quartz's window
list (``CGWindowListCopyWindowInfo``) and the pointer from a Quartz event (``CGEventGetLocation``).

Needs pyobjc's Quartz bindings (``pyobjc-framework-Quartz``, in the media extra on macOS) and, for
window titles, the Screen Recording permission; without it titles read as the owning app's name.
Only defined on macOS (mypy and the Linux CI skip the block).
"""

from __future__ import annotations

import sys
from typing import Any

from bisc.media.video_types import ScreenCaptureError, WindowNotFoundError
from bisc.media.video_x11 import WindowInfo

MAX_WINDOWS = 4096


def window_from_quartz(entry: Any, keys: Any) -> WindowInfo | None:
    """One entry of Quartz's window list as a WindowInfo; None for what is not a normal window (menu
    bar, Dock, overlays: layer other than 0) or has no size."""
    if int(entry.get(keys.kCGWindowLayer, 0)) != 0:
        return None
    bounds = entry.get(keys.kCGWindowBounds) or {}
    width, height = int(bounds.get("Width", 0)), int(bounds.get("Height", 0))
    if width <= 1 or height <= 1:
        return None
    title = str(entry.get(keys.kCGWindowName) or "")
    owner = str(entry.get(keys.kCGWindowOwnerName) or "")
    name = f"{owner}: {title}" if owner and title else (title or owner)
    x, y = int(bounds.get("X", 0)), int(bounds.get("Y", 0))
    return WindowInfo(int(entry[keys.kCGWindowNumber]), name, x, y, width, height)


if sys.platform == "darwin":

    class MacDesktop:
        """:class:`bisc.media.video_screen.Desktop` for macOS."""

        def __init__(self) -> None:
            try:
                import Quartz  # type: ignore[import-not-found]
            except ImportError:
                raise ScreenCaptureError(
                    "window capture on macOS needs pyobjc-framework-Quartz (pip install 'bisc[media]')"
                ) from None
            self._q: Any = Quartz

        def list_windows(self) -> list[WindowInfo]:
            q = self._q
            options = q.kCGWindowListOptionOnScreenOnly | q.kCGWindowListExcludeDesktopElements
            entries = q.CGWindowListCopyWindowInfo(options, q.kCGNullWindowID) or []
            found = [w for w in (window_from_quartz(e, q) for e in list(entries)[:MAX_WINDOWS]) if w]
            return sorted(found, key=lambda w: -w.width * w.height)

        def window_geometry(self, window_id: int) -> WindowInfo:
            q = self._q
            entries = q.CGWindowListCopyWindowInfo(q.kCGWindowListOptionIncludingWindow, window_id) or []
            for entry in entries:
                if int(entry[q.kCGWindowNumber]) == window_id:
                    if not entry.get(q.kCGWindowIsOnscreen, False):
                        raise WindowNotFoundError(f"window {window_id} is not on screen (minimized?)")
                    info = window_from_quartz(entry, q)
                    if info is not None:
                        return info
            raise WindowNotFoundError(f"window {window_id} is gone")

        def cursor_position(self) -> tuple[int, int] | None:
            q = self._q
            event = q.CGEventCreate(None)
            if event is None:
                return None
            where = q.CGEventGetLocation(event)
            return int(where.x), int(where.y)

        def close(self) -> None:
            pass
