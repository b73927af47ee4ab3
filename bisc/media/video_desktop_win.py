"""Windows desktop queries for screen capture: top-level windows (``EnumWindows``), a window's visible
frame (DWM's extended frame bounds, else ``GetWindowRect``) and the pointer (``GetCursorPos``), all
through ctypes on user32 and dwmapi.

Only defined on Windows (mypy and the Linux CI skip the block); mss, which takes the pixels, marks
the process DPI-aware, so these coordinates and its own are the same physical pixels.
"""

from __future__ import annotations

import sys

from bisc.media.video_types import ScreenCaptureError, WindowNotFoundError
from bisc.media.video_x11 import WindowInfo

MAX_WINDOWS = 4096
MAX_TITLE = 512  # characters read of a window title
_DWMWA_EXTENDED_FRAME_BOUNDS = 9

if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    _ENUM_PROC = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.HWND, wintypes.LPARAM)

    class WindowsDesktop:
        """:class:`bisc.media.video_screen.Desktop` for Windows."""

        def __init__(self) -> None:
            try:
                self._user32 = ctypes.WinDLL("user32", use_last_error=True)
            except OSError as exc:
                raise ScreenCaptureError(f"cannot load user32: {exc}") from exc
            try:
                self._dwmapi: ctypes.WinDLL | None = ctypes.WinDLL("dwmapi")
            except OSError:
                self._dwmapi = None  # no DWM (very old Windows): GetWindowRect only

        def list_windows(self) -> list[WindowInfo]:
            """Visible, titled, not minimized top-level windows, largest first."""
            found: list[WindowInfo] = []

            def visit(hwnd: int, _lparam: int) -> bool:
                if len(found) >= MAX_WINDOWS:
                    return False
                if not self._user32.IsWindowVisible(hwnd) or self._user32.IsIconic(hwnd):
                    return True
                title = self._title(hwnd)
                if title:
                    with_frame = self._frame(hwnd, title)
                    if with_frame.width > 1 and with_frame.height > 1:
                        found.append(with_frame)
                return True

            self._user32.EnumWindows(_ENUM_PROC(visit), 0)
            return sorted(found, key=lambda w: -w.width * w.height)

        def window_geometry(self, window_id: int) -> WindowInfo:
            hwnd = wintypes.HWND(window_id)
            if not self._user32.IsWindow(hwnd):
                raise WindowNotFoundError(f"window {window_id:#x} is gone")
            if not self._user32.IsWindowVisible(hwnd) or self._user32.IsIconic(hwnd):
                raise WindowNotFoundError(f"window {window_id:#x} is not visible (minimized or hidden)")
            return self._frame(window_id, self._title(window_id))

        def cursor_position(self) -> tuple[int, int] | None:
            point = wintypes.POINT()
            if not self._user32.GetCursorPos(ctypes.byref(point)):
                return None  # a secure desktop (UAC, lock screen) hides the pointer
            return int(point.x), int(point.y)

        def close(self) -> None:
            pass

        def _title(self, hwnd: int) -> str:
            buffer = ctypes.create_unicode_buffer(MAX_TITLE)
            self._user32.GetWindowTextW(wintypes.HWND(hwnd), buffer, MAX_TITLE)
            return buffer.value

        def _frame(self, hwnd: int, title: str) -> WindowInfo:
            rect = wintypes.RECT()
            handle = wintypes.HWND(hwnd)
            got = False
            if self._dwmapi is not None:  # without the invisible resize borders of Windows 10+
                got = (
                    self._dwmapi.DwmGetWindowAttribute(
                        handle, _DWMWA_EXTENDED_FRAME_BOUNDS, ctypes.byref(rect), ctypes.sizeof(rect)
                    )
                    == 0
                )
            if not got and not self._user32.GetWindowRect(handle, ctypes.byref(rect)):
                raise WindowNotFoundError(f"window {hwnd:#x} is gone")
            return WindowInfo(
                int(hwnd), title, rect.left, rect.top, rect.right - rect.left, rect.bottom - rect.top
            )
