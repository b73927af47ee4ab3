"""Shared fixtures: every hot-path test runs once per loaded implementation."""

from __future__ import annotations

from types import ModuleType

import pytest

from bisc import hotpaths

IMPL_IDS = {"python": "py", "cython": "cy", "rust": "rs"}


def _impls(hot_path: str) -> list[ModuleType]:
    return list(hotpaths.SELECTION.loaded(hot_path).values())


def _ids(hot_path: str) -> list[str]:
    return [IMPL_IDS[name] for name in hotpaths.SELECTION.loaded(hot_path)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, hot_path in (
        ("packet_impl", "packet"),
        ("fragment_impl", "fragment"),
        ("chunkhash_impl", "chunkhash"),
        ("jitter_impl", "jitter"),
        ("bwe_impl", "bwe"),
    ):
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, _impls(hot_path), ids=_ids(hot_path))


@pytest.fixture(scope="session")
def packet_ref() -> ModuleType:
    return hotpaths.SELECTION.loaded("packet")["python"]


@pytest.fixture(scope="session")
def fragment_ref() -> ModuleType:
    return hotpaths.SELECTION.loaded("fragment")["python"]


@pytest.fixture(scope="session")
def chunkhash_ref() -> ModuleType:
    return hotpaths.SELECTION.loaded("chunkhash")["python"]


@pytest.fixture(scope="session")
def jitter_ref() -> ModuleType:
    return hotpaths.SELECTION.loaded("jitter")["python"]


@pytest.fixture(scope="session")
def bwe_ref() -> ModuleType:
    return hotpaths.SELECTION.loaded("bwe")["python"]


pytest_plugins = ["tests.gui_support"]  # the Kivy window and app of the GUI tests
