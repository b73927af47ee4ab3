"""Settings: defaults, round trip, and errors that name the line or key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bisc.errors import SettingsError
from bisc.settings import Settings


def test_defaults_when_missing(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "settings.toml")
    settings.validate()
    assert settings.theme in ("dark", "light")


def test_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "settings.toml"
    settings = Settings(display_name="Ada", theme="light", audio_quality="high", storage_dir="/x")
    settings.save(path)
    assert Settings.load(path) == settings
    assert not path.with_name("settings.toml.tmp").exists()


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('display_name = "Ada"\ntheme = dark\n')
    with pytest.raises(SettingsError, match="line 2") as info:
        Settings.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('theme = "purple"', "theme must be one of"),
        ("audio_quality = 3", "audio_quality must be a string"),
        ('display_name = ""', "display_name"),
        ('video_quality = "ultra"', "video_quality"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(text + "\n")
    with pytest.raises(SettingsError, match=message):
        Settings.load(path)


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('future_option = "x"\ntheme = "light"\n')
    assert Settings.load(path).theme == "light"


def test_binary_garbage_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SettingsError):
        Settings.load(path)
