"""Scan a ticket's QR code with the camera: a live preview, and the join starts when one is read."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.graphics.texture import Texture
from kivy.properties import ObjectProperty, StringProperty
from kivy.uix.modalview import ModalView

if TYPE_CHECKING:
    from bisc.media.ticket_scan import TicketScanner
    from bisc.ticket import BiscTicket
    from kivy_app.app import BiscApp

PREVIEW_FPS = 10
PREVIEW_WIDTH = 480


class ScanSheet(ModalView):  # type: ignore[misc]
    status = StringProperty("")
    preview = ObjectProperty(None, allownone=True)  # a Texture

    def __init__(self, app: BiscApp, **kwargs: Any) -> None:
        self.app = app
        self.name = "scan"
        self.scanner: TicketScanner | None = None
        self._version = 0
        self._tick: Any = None
        super().__init__(**kwargs)

    def show(self) -> None:
        from bisc.media.ticket_scan import TicketScanner  # PyAV and zxing-cpp: only when scanning
        from bisc.media.video_endpoints import open_camera_source

        self.preview = None
        self.status = "Point the camera at the QR code of a bisc ticket."
        loop = asyncio.get_running_loop()
        spec = self.app.options.scan_source or self.app.options.video_source
        self.scanner = TicketScanner(
            lambda: open_camera_source(spec, fps=15)[0],
            on_ticket=lambda t: loop.call_soon_threadsafe(self._found, t),
            on_error=lambda text: loop.call_soon_threadsafe(self._failed, text),
        )
        self.scanner.start()
        self._tick = Clock.schedule_interval(self._update, 1 / PREVIEW_FPS)
        self.open()

    def on_dismiss(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self.scanner is not None:
            scanner, self.scanner = self.scanner, None
            asyncio.get_running_loop().run_in_executor(None, scanner.close)

    def _update(self, _dt: float) -> None:
        scanner = self.scanner
        if scanner is None:
            return
        version, frame = scanner.latest
        if frame is None or version == self._version:
            return
        self._version = version
        from bisc.media.video_color import to_rgb_preview

        rgb = to_rgb_preview(frame, PREVIEW_WIDTH)
        h, w = rgb.shape[:2]
        texture = self.preview
        if texture is None or tuple(texture.size) != (w, h):
            texture = Texture.create(size=(w, h), colorfmt="rgb")
            texture.flip_vertical()
        texture.blit_buffer(rgb.tobytes(), colorfmt="rgb", bufferfmt="ubyte")
        if texture is self.preview:
            self.ids.preview_image.canvas.ask_update()
        else:
            self.preview = texture
        if scanner.not_a_ticket:
            self.status = f"That QR code is not a bisc ticket ({scanner.not_a_ticket[:40]}...)."

    def _found(self, ticket: BiscTicket) -> None:
        self._stop()
        self.dismiss()
        home = self.app.view("home")
        home.ids.ticket_input.text = ticket.to_text()
        home.join()

    def _failed(self, text: str) -> None:
        self._stop()
        self.status = f"Cannot scan: {text}"


def create(app: BiscApp) -> ScanSheet:
    return ScanSheet(app)
