"""Small, dependency-free timing helpers for `bisc bench`."""

from __future__ import annotations

import time
from collections.abc import Callable


def ops_per_second(fn: Callable[[], object], min_time: float, repeats: int = 5) -> float:
    """Best-of-`repeats` calls per second of `fn`, each repeat about min_time/repeats.

    Best-of, not mean: on a noisy machine the fastest run is the one least
    disturbed by other work.
    """
    loops = 1
    target = max(min_time / repeats, 1e-3)
    while True:
        elapsed = _run(fn, loops)
        if elapsed >= target / 4 or loops >= 1 << 30:
            break
        loops *= 4 if elapsed < target / 40 else 2
    loops = max(1, int(loops * target / max(elapsed, 1e-9)))
    best = min(_run(fn, loops) for _ in range(repeats))
    return loops / max(best, 1e-12)


def _run(fn: Callable[[], object], loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        fn()
    return time.perf_counter() - start


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` single calls, for long operations such as hashing a file."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
