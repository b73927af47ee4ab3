"""Colours and sizes, in one place. Light and dark palettes; touch targets at least 48 dp."""

from __future__ import annotations

from dataclasses import dataclass, fields

from kivy.event import EventDispatcher
from kivy.metrics import dp, sp
from kivy.properties import ColorProperty, NumericProperty, OptionProperty

Rgba = tuple[float, float, float, float]


def _hex(value: str, alpha: float = 1.0) -> Rgba:
    value = value.lstrip("#")
    r, g, b = (int(value[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return (r, g, b, alpha)


@dataclass(frozen=True)
class Palette:
    bg: Rgba
    surface: Rgba  # cards, sheets, panels
    surface_alt: Rgba  # inputs, tiles
    text: Rgba
    text_muted: Rgba
    primary: Rgba
    on_primary: Rgba
    danger: Rgba
    on_danger: Rgba
    speaking: Rgba
    divider: Rgba
    scrim: Rgba  # behind modal sheets


DARK = Palette(
    bg=_hex("#121417"),
    surface=_hex("#1c1f24"),
    surface_alt=_hex("#2a2e35"),
    text=_hex("#eceff3"),
    text_muted=_hex("#9aa3ad"),
    primary=_hex("#4f8cff"),
    on_primary=_hex("#ffffff"),
    danger=_hex("#e5484d"),
    on_danger=_hex("#ffffff"),
    speaking=_hex("#3ddc84"),
    divider=_hex("#33373e"),
    scrim=_hex("#000000", 0.6),
)

LIGHT = Palette(
    bg=_hex("#f4f5f7"),
    surface=_hex("#ffffff"),
    surface_alt=_hex("#e6e9ee"),
    text=_hex("#15181c"),
    text_muted=_hex("#5c6570"),
    primary=_hex("#2f6fe4"),
    on_primary=_hex("#ffffff"),
    danger=_hex("#d13438"),
    on_danger=_hex("#ffffff"),
    speaking=_hex("#1a9f53"),
    divider=_hex("#d5d9df"),
    scrim=_hex("#000000", 0.45),
)

PALETTES = {"dark": DARK, "light": LIGHT}


class Theme(EventDispatcher):  # type: ignore[misc]
    """Bound from the .kv files as app.theme.<name>; switching `mode` recolours everything."""

    mode = OptionProperty("dark", options=tuple(PALETTES))

    bg = ColorProperty(DARK.bg)
    surface = ColorProperty(DARK.surface)
    surface_alt = ColorProperty(DARK.surface_alt)
    text = ColorProperty(DARK.text)
    text_muted = ColorProperty(DARK.text_muted)
    primary = ColorProperty(DARK.primary)
    on_primary = ColorProperty(DARK.on_primary)
    danger = ColorProperty(DARK.danger)
    on_danger = ColorProperty(DARK.on_danger)
    speaking = ColorProperty(DARK.speaking)
    divider = ColorProperty(DARK.divider)
    scrim = ColorProperty(DARK.scrim)

    # Sizes: every control a finger taps is at least `touch` high and wide.
    touch = NumericProperty(dp(48))
    pad = NumericProperty(dp(16))
    gap = NumericProperty(dp(10))
    radius = NumericProperty(dp(12))
    font = NumericProperty(sp(16))
    font_small = NumericProperty(sp(13))
    font_title = NumericProperty(sp(28))
    font_heading = NumericProperty(sp(20))
    content_width = NumericProperty(dp(560))  # forms do not stretch across wide screens
    panel_width = NumericProperty(dp(360))  # the chat panel beside the call on wide screens

    def __init__(self, mode: str = "dark", **kwargs: object) -> None:
        super().__init__(**kwargs)
        # Kivy binds an attribute named on_<property> as that property's change handler: on_primary and
        # on_danger are colours here, and calling them broke every switch to another palette.
        for name in ("primary", "danger"):
            self.unbind(**{name: getattr(self, f"on_{name}")})
        self.mode = mode if mode in PALETTES else "dark"
        self._paint()

    def on_mode(self, _instance: object, _mode: str) -> None:
        self._paint()

    def _paint(self) -> None:
        palette = PALETTES[self.mode]
        # Base rules bind a property to these colours (BiscButton's bg and fg, BiscLabel's color) and
        # derived rules bind the same property to another (SecondaryButton, MutedLabel); Kivy keeps
        # whichever changed last, so the base colours change first.
        order = {name: i for i, name in enumerate(_BASE_COLOURS)}
        names = sorted((f.name for f in fields(palette)), key=lambda n: order.get(n, len(order)))
        for name in names:
            setattr(self, name, getattr(palette, name))


_BASE_COLOURS = ("primary", "on_primary", "text")  # in this order: SecondaryButton's fg is text
