"""The share picker: every display and window with a thumbnail; tap one to share it.

The list is taken on a worker thread (bisc.media.video_picker captures each source once); the rows
are built when it arrives. Per-app audio sharing has a row too, disabled, saying why."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kivy.graphics.texture import Texture
from kivy.properties import BooleanProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.modalview import ModalView

if TYPE_CHECKING:
    from bisc.media.video_picker import ScreenChoice
    from kivy_app.app import BiscApp

APP_AUDIO_NOTE = (
    "Sharing one app's sound is not available yet: bisc cannot capture a single application's "
    "audio on this system. Your microphone still works as usual."
)


class ShareChoiceRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]
    title = StringProperty("")
    detail = StringProperty("")
    thumbnail = ObjectProperty(None, allownone=True)
    choice: Any = None


class SharePicker(ModalView):  # type: ignore[misc]
    status = StringProperty("")
    loading = BooleanProperty(False)
    app_audio_note = StringProperty(APP_AUDIO_NOTE)

    def __init__(self, app: BiscApp, **kwargs: Any) -> None:
        self.app = app
        self.name = "picker"
        self.rows: list[ShareChoiceRow] = []
        super().__init__(**kwargs)

    def show(self) -> None:
        self.open()
        self.refresh()

    def refresh(self) -> None:
        self.ids.choices.clear_widgets()
        self.rows = []
        self.loading = True
        self.status = "Looking for screens and windows..."
        self.app.spawn(self._load(), on_error=self._fail, what="Cannot list what to share")

    async def _load(self) -> None:
        from bisc.media.video_picker import list_screen_choices  # mss and PyAV: only when sharing

        try:
            choices = await asyncio.to_thread(list_screen_choices)
        finally:
            self.loading = False
        for choice in choices:
            self._add(choice)
        windows = sum(1 for c in choices if c.kind == "window")
        self.status = f"{len(choices) - windows} screen(s) and {windows} window(s). Tap one to share it."

    def _add(self, choice: ScreenChoice) -> None:
        row = ShareChoiceRow(
            title=choice.title,
            detail=f"{'Screen' if choice.kind == 'display' else 'Window'}, {choice.width}x{choice.height}",
            thumbnail=_texture(choice),
        )
        row.choice = choice
        row.bind(on_release=self._pick)
        self.rows.append(row)
        self.ids.choices.add_widget(row)

    def _pick(self, row: ShareChoiceRow) -> None:
        self.dismiss()
        self.app.spawn(self.app.start_screen_share(row.choice), what=f"Cannot share {row.choice.title!r}")

    def _fail(self, text: str) -> None:
        self.status = text


def _texture(choice: ScreenChoice) -> Texture | None:
    if choice.thumbnail is None:
        return None
    h, w = choice.thumbnail.shape[:2]
    texture = Texture.create(size=(w, h), colorfmt="rgb")
    texture.flip_vertical()  # captured rows go top-down
    texture.blit_buffer(choice.thumbnail.tobytes(), colorfmt="rgb", bufferfmt="ubyte")
    return texture


def create(app: BiscApp) -> SharePicker:
    return SharePicker(app)
