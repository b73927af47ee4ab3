"""Settings rules the app and its screens share, with no UI: checking a name and a downloads folder,
the first-run question, and how a settings preset becomes a call parameter.

Every check raises SettingsError with a sentence a user can act on (shown next to the field)."""

from __future__ import annotations

import os
import tempfile
import unicodedata
from pathlib import Path

from bisc.errors import SettingsError
from bisc.media.video_ladder import QUALITY_MAX_HEIGHT
from bisc.media.voice_sender import QUALITY_BITRATES
from bisc.paths import Paths
from bisc.settings import MAX_DISPLAY_NAME, Settings

# Settings says low/standard/high (what the user reads); the voice call says low/medium/high.
# The only place the two meet.
_VOICE_QUALITY = {"low": "low", "standard": "medium", "high": "high"}

MAX_FOLDERS = 400  # rows in the folder picker: a huge directory must not freeze the UI


def voice_quality(preset: str) -> str:
    """The voice call's quality for a Settings audio_quality preset (unknown: the call's default)."""
    return _VOICE_QUALITY.get(preset, "medium")


def audio_bitrate_kbps(preset: str) -> int:
    return QUALITY_BITRATES[voice_quality(preset)] // 1000


def video_max_height(preset: str) -> int | None:
    """The tallest picture a Settings video_quality preset lets the camera or a share send."""
    return QUALITY_MAX_HEIGHT.get(preset)


def check_display_name(text: str) -> str:
    """The name to save (trimmed), or SettingsError saying what is wrong with it."""
    name = text.strip()
    if not name:
        raise SettingsError("Type a name: the others see it in the call.")
    if len(name) > MAX_DISPLAY_NAME:
        raise SettingsError(f"At most {MAX_DISPLAY_NAME} characters (this one has {len(name)}).")
    # Cc: tabs, line breaks, escapes. Not Cf: emoji sequences need the zero-width joiner.
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        raise SettingsError("The name cannot contain control characters such as tabs or line breaks.")
    Settings(display_name=name).validate()  # the core's own rule has the last word
    return name


def check_storage_dir(text: str, *, create: bool = True) -> Path:
    """The folder downloads would go to, checked: absolute, a folder, writable.

    A missing last component is created when its parent exists (people type ~/Downloads/bisc);
    anything else missing is an error rather than a tree of folders made from a typo."""
    raw = text.strip()
    if not raw:
        raise SettingsError("Type a folder, or choose one.")
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise SettingsError(f"Give the full path of the folder (for example {Path.home() / 'Downloads'}).")
    if path.exists() and not path.is_dir():
        raise SettingsError(f"{path} is a file, not a folder.")
    if not path.exists():
        if not create or not path.parent.is_dir():
            raise SettingsError(f"{path} does not exist.")
        try:
            path.mkdir()
        except OSError as exc:
            raise SettingsError(f"Cannot create {path}: {exc.strerror or exc}.") from None
    if not _writable(path):
        raise SettingsError(f"bisc cannot write to {path}: choose a folder you own.")
    return path


def _writable(folder: Path) -> bool:
    # A real file rather than os.access: access() ignores ACLs and read-only mounts on some platforms.
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def storage_dir(paths: Paths, settings: Settings) -> Path:
    """Where downloads go when nothing on the command line says otherwise."""
    return Path(settings.storage_dir).expanduser() if settings.storage_dir else paths.default_storage_dir


def needs_storage_question(paths: Paths) -> bool:
    """First run: no settings file yet, so nobody has said where downloads go."""
    return not paths.settings_file.exists()


def nearest_folder(path: Path) -> Path:
    """`path`, or its closest existing ancestor (where a folder picker can start)."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path.home()


def subfolders(path: Path) -> tuple[list[Path], str | None]:
    """The visible folders in `path`, sorted by name; and a note when some are missing or unreadable."""
    try:
        with os.scandir(path) as entries:
            names = [e.name for e in entries if not e.name.startswith(".") and _is_dir(e)]
    except OSError as exc:
        return [], f"Cannot open {path}: {exc.strerror or exc}."
    names.sort(key=str.casefold)
    note = None
    if len(names) > MAX_FOLDERS:
        note = f"Showing the first {MAX_FOLDERS} of {len(names)} folders: type the path to go further."
        names = names[:MAX_FOLDERS]
    return [path / n for n in names], note


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
