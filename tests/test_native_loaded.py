"""CI must not pass on the pure-Python path by accident."""

from __future__ import annotations

import os

import pytest

from bisc import hotpaths
from bisc._native.select import HOT_PATHS

REQUIRED = os.environ.get("BISC_REQUIRE_NATIVE", "") not in ("", "0")


@pytest.mark.equivalence
@pytest.mark.skipif(not REQUIRED, reason="BISC_REQUIRE_NATIVE not set")
def test_every_expected_implementation_loaded() -> None:
    if hotpaths.SELECTION.setting == "python":
        for hot_path in HOT_PATHS:
            assert list(hotpaths.SELECTION.loaded(hot_path)) == ["python"]
        return
    for hot_path, impls in HOT_PATHS.items():
        assert sorted(hotpaths.SELECTION.loaded(hot_path)) == sorted(impls), hot_path
    assert hotpaths.SELECTION.errors == {}


def test_auto_prefers_native_when_loaded() -> None:
    if hotpaths.SELECTION.setting != "auto":
        pytest.skip("BISC_IMPL forces an implementation")
    for hot_path in HOT_PATHS:
        loaded = hotpaths.SELECTION.loaded(hot_path)
        if len(loaded) > 1:
            assert hotpaths.SELECTION.chosen[hot_path] != "python"


@pytest.mark.skipif(not REQUIRED, reason="BISC_REQUIRE_NATIVE not set")
def test_libopus_loaded_for_fec_and_concealment() -> None:
    """Voice recovers lost frames through libopus itself (PyAV exposes neither FEC nor PLC); without it
    the decoder falls back to a fade, and the call tests, which count the jitter buffer's decisions,
    would not notice."""
    from bisc.media.opus import OpusDecoder, libopus_available

    assert libopus_available()
    assert OpusDecoder().has_fec
