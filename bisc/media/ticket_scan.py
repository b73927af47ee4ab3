"""Read a channel ticket from a QR code in front of the camera.

A TicketScanner opens a video source (bisc.media.video_endpoints.open_camera_source: a camera, or a
file in tests) on its own thread, keeps the newest frame for a preview, and looks for a QR code in
every few frames with zxing-cpp (on the luma plane: the yuv420p frames carry a grayscale picture
for free). The first code that parses as a bisc ticket ends the scan. Codes that are not tickets
are counted and reported, so the user learns why nothing happens."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from bisc.errors import BiscError
from bisc.media.video_color import yuv420p_planes
from bisc.media.video_types import VideoFrameIn, VideoSourceError
from bisc.ticket import BiscTicket

log = logging.getLogger(__name__)

DECODE_EVERY = 3  # frames: decoding costs more than capturing, and the code does not move fast
MAX_SECONDS = 300.0  # a scanner left open stops by itself
FPS = 15.0


class ScanError(BiscError):
    """The scanner cannot run: no camera, no QR decoder."""


def find_ticket(luma: object) -> tuple[BiscTicket | None, str | None]:
    """The ticket in a grayscale picture, or (None, the text of a QR code that is not a ticket)."""
    try:
        import zxingcpp
    except ImportError as exc:  # the gui extra brings it
        raise ScanError(f"QR scanning needs zxing-cpp: pip install 'bisc[gui]' ({exc})") from None
    other: str | None = None
    for result in zxingcpp.read_barcodes(luma):
        text = "".join(result.text.split())
        try:
            return BiscTicket.parse(text), None
        except BiscError:
            other = text[:80]
    return None, other


class TicketScanner:
    """Scans until a ticket is found (`on_ticket` is called from the scanner thread) or closed."""

    def __init__(
        self,
        open_source: Callable[[], object],
        on_ticket: Callable[[BiscTicket], None],
        on_error: Callable[[str], None],
    ) -> None:
        self._open = open_source
        self._on_ticket = on_ticket
        self._on_error = on_error
        self.latest: tuple[int, VideoFrameIn | None] = (0, None)  # for a preview, swapped whole
        self.not_a_ticket: str | None = None  # the last QR code seen that was something else
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bisc-ticket-scan", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        try:
            source = self._open()
        except (BiscError, OSError) as exc:
            self._on_error(str(exc))
            return
        try:
            self._scan(source)
        except (BiscError, OSError) as exc:
            self._on_error(str(exc))
        finally:
            with contextlib.suppress(Exception):
                source.close()  # type: ignore[attr-defined]

    def _scan(self, source: object) -> None:
        started = time.monotonic()
        read = source.read_frame  # type: ignore[attr-defined]
        while not self._stop.is_set():
            if time.monotonic() - started > MAX_SECONDS:
                raise ScanError("no ticket found: the scanner stopped after five minutes")
            try:
                frame: VideoFrameIn = read()
            except VideoSourceError as exc:
                raise ScanError(f"the camera stopped: {exc}") from exc
            self.frames += 1
            self.latest = (self.latest[0] + 1, frame)
            if self.frames % DECODE_EVERY == 0:
                luma = yuv420p_planes(frame.data)[0] if frame.pixel_format == "yuv420p" else frame.data
                ticket, other = find_ticket(luma)
                if ticket is not None:
                    self._on_ticket(ticket)
                    return
                if other is not None:
                    self.not_a_ticket = other
            self._stop.wait(1 / FPS)
