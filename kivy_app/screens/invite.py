"""The invite sheet: the channel's ticket as text and as a QR code; copy it, or refresh it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kivy.core.clipboard import Clipboard
from kivy.properties import ObjectProperty, StringProperty
from kivy.uix.modalview import ModalView

from kivy_app.qr import qr_texture

if TYPE_CHECKING:
    from kivy_app.app import BiscApp


class InviteSheet(ModalView):  # type: ignore[misc]
    ticket = StringProperty("")
    qr = ObjectProperty(None, allownone=True)  # a Texture
    status = StringProperty("")

    def __init__(self, app: BiscApp, **kwargs: Any) -> None:
        self.app = app
        self.name = "invite"
        super().__init__(**kwargs)

    def show(self) -> None:
        bridge = self.app.bridge
        if bridge is not None:
            bridge.bind(ticket=self._on_ticket)
            self._on_ticket(bridge, bridge.ticket)
        self.status = ""
        self.open()

    def on_dismiss(self) -> None:
        bridge = self.app.bridge
        if bridge is not None:
            bridge.unbind(ticket=self._on_ticket)

    def _on_ticket(self, _bridge: object, text: str) -> None:
        if text and text != self.ticket:
            self.ticket = text
            self.qr = qr_texture(text)

    def copy(self) -> None:
        Clipboard.copy(self.ticket)
        self.status = "Ticket copied. Send it to the people you want to invite."

    def refresh(self) -> None:
        async def run() -> None:
            await self.app.refresh_ticket()
            self.status = "A fresh ticket: it also lists members who are online now."

        self.app.spawn(run(), on_error=self._fail, what="Could not refresh the ticket")

    def _fail(self, text: str) -> None:
        self.status = text


def create(app: BiscApp) -> InviteSheet:
    return InviteSheet(app)
