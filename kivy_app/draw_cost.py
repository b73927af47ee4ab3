"""How long the window's buffer swap takes: where a software GL renderer does its drawing.

The swap runs on the thread the asyncio loop (and so the network) runs on, so the call screen
paces its redraws by it (kivy_app/screens/call.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

ALPHA = 0.2  # weight of the newest swap in the moving average


class DrawCost:
    def __init__(self) -> None:
        self.value = 0.0  # seconds, exponential moving average of the swap time
        self.swaps = 0

    def add(self, seconds: float) -> None:
        self.value = seconds if self.swaps == 0 else self.value + ALPHA * (seconds - self.value)
        self.swaps += 1

    def measure(self, window: Any) -> None:
        """Time every `window.flip()` from now on (Kivy's on_flip calls it after each draw)."""
        flip: Callable[[], Any] = window.flip

        def timed_flip() -> Any:
            start = time.perf_counter()
            try:
                return flip()
            finally:
                self.add(time.perf_counter() - start)

        window.flip = timed_flip
