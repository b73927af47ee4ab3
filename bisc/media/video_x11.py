"""X11 desktop queries for screen capture: the window list and geometry, and the pointer position.

Windows come from ``xwininfo`` (Debian ``x11-utils``): one subprocess for the list, one per geometry
refresh (the screen source refreshes at most twice a second). The pointer is read every frame, so it
goes through ``XQueryPointer`` in libX11 by ctypes (microseconds, no subprocess), with
``xdotool getmouselocation`` as the fallback when libX11 cannot be loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from bisc.media.video_types import ScreenCaptureError, WindowNotFoundError

_TIMEOUT = 2.0  # seconds for any helper process: a wedged X server must not wedge the caller
# xwininfo -tree line: `  0x1a00007 "title": ("res" "Class")  300x200+0+0  +100+50`
_TREE_LINE = re.compile(
    r'^\s*(0x[0-9a-f]+) "(.*)": \(.*\)\s+(\d+)x(\d+)[+-]-?\d+[+-]-?\d+\s+\+?(-?\d+)\+?(-?\d+)\s*$'
)
_MAX_WINDOWS = 4096


@dataclass(frozen=True, slots=True)
class WindowInfo:
    """A top-level window: its id, title and geometry in root (screen) coordinates."""

    id: int
    title: str
    x: int
    y: int
    width: int
    height: int


def _run(args: list[str], display: str | None) -> str:
    if shutil.which(args[0]) is None:
        raise ScreenCaptureError(f"{args[0]} is not installed (Debian: apt install x11-utils xdotool)")
    env = dict(os.environ)
    if display:
        env["DISPLAY"] = display
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=_TIMEOUT, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ScreenCaptureError(f"{args[0]} did not answer within {_TIMEOUT} s") from exc
    if done.returncode != 0:
        raise ScreenCaptureError(f"{' '.join(args)} failed: {done.stderr.strip()[:200]}")
    return done.stdout


class _Xlib:
    """Just enough libX11 for XQueryPointer, on one display connection owned by this object."""

    def __init__(self, display: str | None) -> None:
        name = ctypes.util.find_library("X11")
        if name is None:
            raise OSError("libX11 not found")
        lib = ctypes.CDLL(name)
        lib.XOpenDisplay.restype = ctypes.c_void_p
        lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
        lib.XDefaultRootWindow.restype = ctypes.c_ulong
        lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
        ulong_p, int_p = ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.c_int)
        argtypes: list[Any] = [ctypes.c_void_p, ctypes.c_ulong, ulong_p, ulong_p, int_p, int_p, int_p, int_p]
        lib.XQueryPointer.argtypes = [*argtypes, ctypes.POINTER(ctypes.c_uint)]
        lib.XQueryPointer.restype = ctypes.c_int
        handle = lib.XOpenDisplay(display.encode() if display else None)
        if not handle:
            raise OSError(f"cannot open X display {display or os.environ.get('DISPLAY')!r}")
        self._lib, self._dpy = lib, handle
        self._root = lib.XDefaultRootWindow(handle)

    def pointer(self) -> tuple[int, int] | None:
        root, child = ctypes.c_ulong(), ctypes.c_ulong()
        rx, ry, wx, wy = (ctypes.c_int() for _ in range(4))
        mask = ctypes.c_uint()
        refs = [ctypes.byref(v) for v in (root, child, rx, ry, wx, wy, mask)]
        same = self._lib.XQueryPointer(self._dpy, self._root, *refs)
        return (rx.value, ry.value) if same else None  # False: the pointer is on another screen

    def close(self) -> None:
        if self._dpy:
            self._lib.XCloseDisplay(self._dpy)
            self._dpy = None


class X11Desktop:
    """:class:`bisc.media.video_screen.Desktop` for X11 (``display`` like ``":0"``; None: $DISPLAY)."""

    def __init__(self, display: str | None = None) -> None:
        self.display = display or os.environ.get("DISPLAY")
        if not self.display:
            raise ScreenCaptureError("no X display: DISPLAY is not set")
        self._xlib: _Xlib | None
        try:
            self._xlib = _Xlib(self.display)
        except OSError:
            self._xlib = None  # fall back to xdotool for the pointer

    def list_windows(self) -> list[WindowInfo]:
        """Named, viewable top-level windows (children of the root), largest first."""
        out = _run(["xwininfo", "-root", "-children"], self.display)
        windows: list[WindowInfo] = []
        for line in out.splitlines()[:_MAX_WINDOWS]:
            m = _TREE_LINE.match(line)
            if not m or not m.group(2):
                continue
            windows.append(
                WindowInfo(int(m.group(1), 16), m.group(2), int(m.group(5)), int(m.group(6)), int(m.group(3)),
                           int(m.group(4)))
            )  # fmt: skip
        windows = [w for w in windows if w.width > 1 and w.height > 1]
        return sorted(windows, key=lambda w: -w.width * w.height)

    def window_geometry(self, window_id: int) -> WindowInfo:
        """Current title and absolute geometry of a window; WindowNotFoundError when gone or unmapped."""
        try:
            out = _run(["xwininfo", "-id", hex(window_id)], self.display)
        except ScreenCaptureError as exc:
            raise WindowNotFoundError(f"window {hex(window_id)} is gone") from exc
        fields = dict(line.strip().split(":", 1) for line in out.splitlines() if ":" in line)
        if fields.get("Map State", "").strip() != "IsViewable":
            raise WindowNotFoundError(f"window {hex(window_id)} is not viewable (minimized or unmapped)")
        m = re.search(r'Window id: 0x[0-9a-f]+ "(.*)"', out)
        try:
            return WindowInfo(
                window_id, m.group(1) if m else "", int(fields["Absolute upper-left X"]),
                int(fields["Absolute upper-left Y"]), int(fields["Width"]), int(fields["Height"]),
            )  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise ScreenCaptureError(f"cannot parse xwininfo output for {hex(window_id)}") from exc

    def cursor_position(self) -> tuple[int, int] | None:
        if self._xlib is not None:
            return self._xlib.pointer()
        try:
            out = _run(["xdotool", "getmouselocation", "--shell"], self.display)
        except ScreenCaptureError:
            return None
        fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        try:
            return int(fields["X"]), int(fields["Y"])
        except (KeyError, ValueError):
            return None

    def close(self) -> None:
        if self._xlib is not None:
            self._xlib.close()
