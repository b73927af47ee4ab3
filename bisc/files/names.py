"""Turning a peer-supplied file name into one safe path component.

A file name comes from a FileAnnounce, i.e. from any member of the channel,
so it is hostile input: it must never escape the download directory, never
name a device, and never be unusable on Windows, macOS or Linux.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

MAX_NAME_BYTES = 200  # leaves room under the usual 255-byte limit for " (123)" and ".part"
MAX_EXTENSION_BYTES = 16
UNNAMED = "unnamed"

_SEPARATORS = re.compile(r"[/\\]")
_WINDOWS_RESERVED = re.compile(r'[<>:"|?*]')
_DOT_RUNS = re.compile(r"\.{2,}")
_BIDI = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{kind}{n}" for kind in ("COM", "LPT") for n in [*"123456789", "¹", "²", "³"]]
)


def _dropped(char: str) -> bool:
    category = unicodedata.category(char)
    # Cc: control chars (C0, DEL, C1); Cs: lone surrogates (unencodable);
    # bidi overrides can disguise an extension ("txt.exe" shown as "exe.txt").
    return category in ("Cc", "Cs") or char in _BIDI


def _truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of `text` that is at most `limit` bytes of UTF-8."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode(errors="ignore")


def _split_extension(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext.encode()) > MAX_EXTENSION_BYTES - 1:
        return name, ""
    return stem, "." + ext


def _fit(stem: str, ext: str, limit: int) -> str:
    """stem + ext within `limit` bytes, shortening the stem first."""
    stem = _truncate_utf8(stem, max(1, limit - len(ext.encode())))
    return (stem.rstrip(". ") or "_") + ext


def sanitize_name(name: str) -> str:
    """One safe file name for `name`: never a path, a device, or empty.

    Keeps the last path component, drops control and bidi characters,
    replaces characters Windows forbids, collapses dot runs (no ".."), strips
    leading dots (no hidden files), trailing dots and spaces, and fits the
    result into MAX_NAME_BYTES of UTF-8, keeping the extension.
    """
    name = unicodedata.normalize("NFC", "".join(c for c in name if not _dropped(c)))
    parts = [p for p in _SEPARATORS.split(name) if p.strip(" .")]
    name = parts[-1] if parts else ""
    name = _WINDOWS_RESERVED.sub("_", name)
    name = _DOT_RUNS.sub(".", name)
    name = name.strip(" ").lstrip(".").rstrip(". ")
    if not name:
        return UNNAMED
    stem, ext = _split_extension(name)
    # Windows ignores everything after the first dot, and trailing spaces, here.
    if stem.split(".", 1)[0].rstrip(" ").upper() in _DEVICES:
        stem = "_" + stem
    return _fit(stem, ext, MAX_NAME_BYTES)


def candidate_names(name: str) -> Iterator[str]:
    """`name`, then "stem (1).ext", "stem (2).ext", ...: for never overwriting."""
    yield name
    stem, ext = _split_extension(name)
    n = 1
    while True:
        suffix = f" ({n})"
        yield _fit(stem, "", MAX_NAME_BYTES - len(suffix) - len(ext.encode())) + suffix + ext
        n += 1
