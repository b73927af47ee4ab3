"""Shared widgets whose properties need defaults before their .kv rules run (widgets.kv styles them)."""

from __future__ import annotations

from kivy.properties import ColorProperty, NumericProperty
from kivy.uix.button import Button
from kivy.uix.textinput import TextInput


class BiscButton(Button):  # type: ignore[misc]
    bg = ColorProperty((0.31, 0.55, 1.0, 1.0))  # the fill; the .kv binds it to app.theme
    fg = ColorProperty((1.0, 1.0, 1.0, 1.0))


class BiscInput(TextInput):  # type: ignore[misc]
    """A text field that takes at most `max_chars` characters (0: no limit): a huge paste is cut
    there instead of freezing the window while it lays out a line of a million characters."""

    max_chars = NumericProperty(0)

    def insert_text(self, substring: str, from_undo: bool = False) -> None:
        if self.max_chars:
            room = max(0, int(self.max_chars) - len(self.text) + len(self.selection_text))
            substring = substring[:room]
        super().insert_text(substring, from_undo=from_undo)
