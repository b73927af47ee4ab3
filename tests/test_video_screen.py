"""Screen and window capture on a private Xvfb display with known content."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pytest

from bisc.media.video_screen import ScreenSource, draw_cursor
from bisc.media.video_types import ScreenCaptureError, WindowNotFoundError

pytest.importorskip("mss")
NEEDED = ("Xvfb", "xsetroot", "xdotool", "xwininfo")
pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in NEEDED),
    reason=f"needs {', '.join(NEEDED)} (ci/setup installs them)",
)


@pytest.fixture(scope="module")
def xdisplay() -> Iterator[str]:
    """A fresh 1280x720 Xvfb on a free display number (Xvfb picks it: -displayfd)."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x720x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def x(display: str, *args: str) -> None:
    subprocess.run(args, check=True, timeout=10, env={**os.environ, "DISPLAY": display})


def test_display_capture_sees_the_root_colour_and_the_pointer(xdisplay):
    x(xdisplay, "xsetroot", "-solid", "#3366cc")
    x(xdisplay, "xdotool", "mousemove", "200", "150")
    src = ScreenSource(1, x_display=xdisplay)
    bgra = src.read_bgra()
    assert bgra.shape == (720, 1280, 4)
    assert tuple(bgra[400, 800, :3]) == (0xCC, 0x66, 0x33)  # BGRA order
    assert tuple(bgra[150, 200, :3]) == (0, 0, 0)  # arrow tip: outline
    assert tuple(bgra[155, 202, :3]) == (255, 255, 255)  # arrow body: fill
    frame = src.read_frame()
    assert (frame.width, frame.height, frame.pixel_format) == (1280, 720, "yuv420p")
    assert abs(int(frame.data[400, 800]) - 99) <= 2  # BT.601 luma of #3366cc
    src.close()
    with pytest.raises(ScreenCaptureError):
        src.read_frame()
    no_cursor = ScreenSource(1, x_display=xdisplay, cursor=False)
    assert tuple(no_cursor.read_bgra()[155, 202, :3]) == (0xCC, 0x66, 0x33)
    no_cursor.close()


def test_bad_display_index_is_refused(xdisplay):
    with pytest.raises(ScreenCaptureError, match="no display 5"):
        ScreenSource(5, x_display=xdisplay)


def test_window_capture_by_title(xdisplay):
    tkinter = pytest.importorskip("tkinter")
    root = tkinter.Tk(screenName=xdisplay)
    try:
        root.title("bisc window test")
        root.geometry("320x200+400+300")
        root.configure(bg="#ff0000")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            root.update()
            if root.winfo_viewable():
                break
        root.update()
        src = ScreenSource(window="bisc window test", x_display=xdisplay, cursor=False)
        assert src.window is not None and (src.window.width, src.window.height) == (320, 200)
        bgra = src.read_bgra()
        assert bgra.shape == (200, 320, 4) and (src.width, src.height) == (320, 200)
        assert tuple(bgra[100, 160, :3]) == (0, 0, 255)
        frame = src.read_frame()
        assert (frame.width, frame.height) == (320, 200)
        src.close()
        # a case-insensitive part of the title is enough when it is unique
        partial = ScreenSource(window="WINDOW TEST", x_display=xdisplay, cursor=False)
        assert partial.window is not None and partial.window.title == "bisc window test"
        partial.close()
    finally:
        root.destroy()
    with pytest.raises(WindowNotFoundError, match="no window titled"):
        ScreenSource(window="no such window here", x_display=xdisplay)


def test_draw_cursor_clips_at_the_edges():
    img = np.full((10, 10, 4), 7, np.uint8)
    draw_cursor(img, 8, 8)
    assert img[8, 8, 0] == 0 and img[9, 9, 0] == 0
    draw_cursor(img, -50, -50)  # off-picture: nothing drawn, no error
    draw_cursor(img, -3, -5)
    assert img.dtype == np.uint8


def test_no_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(ScreenCaptureError, match="DISPLAY"):
        ScreenSource(1)


def test_quartz_window_entries() -> None:
    """macOS windows come from Quartz's window list: normal windows (layer 0) with a size, named by
    app and title; menu bar, Dock and zero-size overlays are left out. The entries are what
    CGWindowListCopyWindowInfo returns (dicts keyed by its constants, here their names)."""
    from types import SimpleNamespace

    from bisc.media.video_desktop_mac import window_from_quartz

    keys = SimpleNamespace(
        **{k: k for k in ("kCGWindowLayer", "kCGWindowBounds", "kCGWindowName", "kCGWindowOwnerName",
                          "kCGWindowNumber")}
    )  # fmt: skip

    def entry(number: int, layer: int, owner: str, title: str, w: int, h: int) -> dict[str, object]:
        return {
            "kCGWindowNumber": number,
            "kCGWindowLayer": layer,
            "kCGWindowOwnerName": owner,
            "kCGWindowName": title,
            "kCGWindowBounds": {"X": 10, "Y": 25, "Width": w, "Height": h},
        }

    editor = window_from_quartz(entry(41, 0, "TextEdit", "notes.txt", 800, 600), keys)
    assert editor is not None and (editor.id, editor.title) == (41, "TextEdit: notes.txt")
    assert (editor.x, editor.y, editor.width, editor.height) == (10, 25, 800, 600)
    untitled = window_from_quartz(entry(42, 0, "Finder", "", 640, 480), keys)
    assert untitled is not None and untitled.title == "Finder"  # no Screen Recording permission
    assert window_from_quartz(entry(43, 25, "Dock", "Dock", 1440, 80), keys) is None
    assert window_from_quartz(entry(44, 0, "Overlay", "x", 0, 0), keys) is None


def test_each_platform_has_its_desktop_backend() -> None:
    """X11 here; the Windows (user32) and macOS (Quartz) backends only exist on their platforms."""
    import sys

    import bisc.media.video_desktop_mac as mac
    import bisc.media.video_desktop_win as win
    from bisc.media.video_screen import desktop_for_platform
    from bisc.media.video_x11 import X11Desktop

    assert not hasattr(win, "WindowsDesktop") and not hasattr(mac, "MacDesktop")
    if sys.platform.startswith("linux") and os.environ.get("DISPLAY"):
        desktop = desktop_for_platform()
        assert isinstance(desktop, X11Desktop)
        desktop.close()
