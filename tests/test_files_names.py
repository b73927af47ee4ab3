"""sanitize_name: a hostile announced name becomes one safe path component."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bisc.files.names import MAX_NAME_BYTES, UNNAMED, candidate_names, sanitize_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../x", "x"),
        ("/etc/passwd", "passwd"),
        ("C:\\x", "x"),
        ("C:", "C_"),
        ("..", UNNAMED),
        ("../..", UNNAMED),
        ("", UNNAMED),
        ("   ", UNNAMED),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("Lpt9.tar.gz", "_Lpt9.tar.gz"),
        ("nul .txt", "_nul.txt"),
        ("COM¹", "_COM¹"),
        ("console.txt", "console.txt"),
        ("a\x00b\x1fc\x7f.txt", "abc.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("trailing. . ", "trailing"),
        (".hidden", "hidden"),
        ("a..b", "a.b"),
        ('what?<>:"|*.txt', "what_______.txt"),
        ("dir/sub\\file.bin", "file.bin"),
    ],
)
def test_sanitize_known_cases(raw: str, expected: str) -> None:
    assert sanitize_name(raw) == expected


def test_long_names_are_bounded_and_keep_the_extension() -> None:
    name = sanitize_name("a" * 10_000 + ".mkv")
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert name.endswith(".mkv")
    multibyte = sanitize_name("é" * 5_000 + ".txt")
    assert len(multibyte.encode()) <= MAX_NAME_BYTES
    assert multibyte.endswith(".txt")
    assert multibyte.encode().decode() == multibyte  # never cut inside a character


def test_candidate_names_never_repeat_and_stay_bounded() -> None:
    names = candidate_names(sanitize_name("x" * 300 + ".tar"))
    seen = [next(names) for _ in range(12)]
    assert len(set(seen)) == 12
    assert seen[1].endswith(" (1).tar") and seen[11].endswith(" (11).tar")
    assert all(len(n.encode()) <= MAX_NAME_BYTES for n in seen)
    assert list(zip(range(3), candidate_names("a.txt"), strict=False))[2][1] == "a (2).txt"


def _is_safe(name: str, root: Path) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
        and not name.startswith(".")
        and not name.endswith((".", " "))
        and len(name.encode()) <= MAX_NAME_BYTES
        and (root / name).resolve().parent == root.resolve()
    )


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=400))
def test_sanitize_fuzz(raw: str) -> None:
    root = Path("/tmp/bisc-names-root")
    name = sanitize_name(raw)
    assert _is_safe(name, root)
    assert sanitize_name(name) == name  # idempotent: a sanitized name is kept as is
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in name)
    assert name.split(".")[0].rstrip(" ").upper() not in {"CON", "PRN", "AUX", "NUL"}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "/", "\\", "C:", "con", "a", " ", "\x00", "é"]), max_size=30))
def test_sanitize_fuzz_path_like(parts: list[str]) -> None:
    assert _is_safe(sanitize_name("".join(parts)), Path("/tmp/bisc-names-root"))
