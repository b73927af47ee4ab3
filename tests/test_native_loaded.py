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
