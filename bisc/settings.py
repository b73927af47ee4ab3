"""User settings, stored as TOML in the platform config dir.

Unknown keys are kept out of the way (logged and ignored) so a newer bisc's
file still loads; a syntax error or a bad value is a SettingsError naming the
file and the line or key, never a traceback.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from bisc.errors import SettingsError

log = logging.getLogger(__name__)

QUALITY_PRESETS = ("low", "standard", "high")
VIDEO_QUALITY_PRESETS = ("auto", "low", "standard", "high")
THEMES = ("dark", "light")
MAX_DISPLAY_NAME = 64


def _default_name() -> str:
    try:
        return getpass.getuser()[:MAX_DISPLAY_NAME] or "bisc user"
    except (OSError, KeyError):  # no user database entry (containers)
        return "bisc user"


@dataclass
class Settings:
    display_name: str = dataclasses.field(default_factory=_default_name)
    storage_dir: str = ""  # empty: the platform's downloads directory
    audio_quality: str = "standard"
    video_quality: str = "auto"
    audio_input_device: str = ""  # empty: system default
    audio_output_device: str = ""
    camera_device: str = ""
    theme: str = "dark"

    def validate(self) -> None:
        name = self.display_name.strip()
        if not name or len(name) > MAX_DISPLAY_NAME:
            raise SettingsError(f"display_name must be 1..{MAX_DISPLAY_NAME} characters")
        _one_of("audio_quality", self.audio_quality, QUALITY_PRESETS)
        _one_of("video_quality", self.video_quality, VIDEO_QUALITY_PRESETS)
        _one_of("theme", self.theme, THEMES)

    def to_toml(self) -> str:
        return tomli_w.dumps(dataclasses.asdict(self))

    @classmethod
    def from_toml(cls, text: str, source: str = "settings") -> Settings:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{source}: invalid TOML: {exc}") from None
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                log.warning("%s: ignoring unknown setting %r", source, key)
                continue
            if not isinstance(value, str):
                raise SettingsError(f"{source}: {key} must be a string, got {type(value).__name__}")
            values[key] = value
        settings = cls(**values)
        try:
            settings.validate()
        except SettingsError as exc:
            raise SettingsError(f"{source}: {exc}") from None
        return settings

    @classmethod
    def load(cls, path: Path) -> Settings:
        """Read settings; defaults when the file does not exist yet."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"cannot read {path}: {exc}") from None
        return cls.from_toml(text, source=str(path))

    def save(self, path: Path) -> None:
        """Write atomically, so a crash never leaves half a file."""
        self.validate()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_toml(), encoding="utf-8")
        os.replace(tmp, path)


def _one_of(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingsError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
