"""Shared widgets whose properties need defaults before their .kv rules run (widgets.kv styles them)."""

from __future__ import annotations

from kivy.properties import ColorProperty
from kivy.uix.button import Button


class BiscButton(Button):  # type: ignore[misc]
    bg = ColorProperty((0.31, 0.55, 1.0, 1.0))  # the fill; the .kv binds it to app.theme
    fg = ColorProperty((1.0, 1.0, 1.0, 1.0))
