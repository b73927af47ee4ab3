"""What can be shared as a screen: every display and window, each with a small thumbnail.

For a picker (the app's Share button): `list_screen_choices` runs on a worker thread (it captures
each display and window once); a choice opens its ScreenSource on the capture thread later, so the
mss instance stays on the thread that uses it. Platforms without a window backend list displays only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bisc.media.video_screen import ScreenSource, desktop_for_platform
from bisc.media.video_types import Image, ScreenCaptureError

log = logging.getLogger(__name__)

THUMB_WIDTH = 240
MAX_CHOICES = 24  # a desktop with hundreds of windows: the largest ones, not a list nobody can scroll


@dataclass(frozen=True)
class ScreenChoice:
    kind: str  # "display" or "window"
    title: str
    width: int
    height: int
    display: int = 1
    window_id: int | None = None
    thumbnail: Image | None = None  # rgb24, at most THUMB_WIDTH wide; None when it could not be captured

    def open(self) -> ScreenSource:
        """The source for this choice (call it on the thread that will capture)."""
        if self.window_id is not None:
            return ScreenSource(window=self.window_id)
        return ScreenSource(display=self.display)


def thumbnail(bgra: Image, width: int = THUMB_WIDTH) -> Image:
    """A BGRA capture shrunk (by whole-pixel steps: cheap and good enough to recognise) to rgb24."""
    step = max(1, -(-bgra.shape[1] // width))
    return np.ascontiguousarray(bgra[::step, ::step, 2::-1])


def _capture(source: ScreenSource) -> Image | None:
    try:
        return thumbnail(source.read_bgra())
    except ScreenCaptureError as exc:
        log.info("no thumbnail: %s", exc)
        return None


def list_screen_choices(thumbnails: bool = True) -> list[ScreenChoice]:
    """Every display, then the largest windows. ScreenCaptureError when the screen cannot be read at all."""
    choices: list[ScreenChoice] = []
    first = ScreenSource(display=1, cursor=False)
    try:
        count = first.display_count
        for index in range(1, count + 1):
            screen = first if index == 1 else ScreenSource(display=index, cursor=False)
            try:
                title = "Entire screen" if count == 1 else f"Display {index}"
                shot = _capture(screen) if thumbnails else None
                choices.append(ScreenChoice("display", title, screen.width, screen.height, index, None, shot))
            finally:
                if screen is not first:
                    screen.close()
        choices.extend(_windows(first, thumbnails))
    finally:
        first.close()
    return choices[:MAX_CHOICES]


def _windows(screen: ScreenSource, thumbnails: bool) -> list[ScreenChoice]:
    desktop = desktop_for_platform()
    try:
        windows = desktop.list_windows()
    except ScreenCaptureError as exc:  # no window backend here: displays only
        log.info("no window list: %s", exc)
        return []
    finally:
        desktop.close()
    out: list[ScreenChoice] = []
    for win in windows[:MAX_CHOICES]:
        shot = None
        if thumbnails:
            try:
                source = ScreenSource(window=win.id, cursor=False)
            except ScreenCaptureError as exc:  # gone or off-screen since the list was taken
                log.info("skipping window %r: %s", win.title, exc)
                continue
            try:
                shot = _capture(source)
            finally:
                source.close()
        out.append(ScreenChoice("window", win.title, win.width, win.height, 1, win.id, shot))
    return out
