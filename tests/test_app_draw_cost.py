"""The swap-time average the call screen paces its redraws by (no window needed)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("kivy")

from kivy_app.draw_cost import DrawCost


class SlowWindow:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.flips = 0

    def flip(self) -> None:
        self.flips += 1
        time.sleep(self.seconds)


def test_measures_each_flip_and_follows_a_change() -> None:
    cost, window = DrawCost(), SlowWindow(0.02)
    cost.measure(window)
    for _ in range(3):
        window.flip()
    assert window.flips == 3 and cost.swaps == 3
    assert 0.018 <= cost.value < 0.2
    window.seconds = 0.0
    for _ in range(30):
        window.flip()
    assert cost.value < 0.005  # the average forgets the slow swaps


def test_a_failing_flip_is_still_counted_and_raises() -> None:
    class Broken:
        def flip(self) -> None:
            raise RuntimeError("GL context lost")

    cost, window = DrawCost(), Broken()
    cost.measure(window)
    with pytest.raises(RuntimeError):
        window.flip()
    assert cost.swaps == 1
