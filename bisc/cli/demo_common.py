"""What the parts of `bisc demo` share: the live status line and the small figures helpers."""

from __future__ import annotations

import sys

POLL = 0.05
LEAVE_RESERVE = 2.0  # seconds of the time limit kept for the leave step

_last_live = [""]


def live(line: str) -> None:
    """One status line, redrawn in place on a terminal, printed on change otherwise."""
    if line == _last_live[0]:
        return
    _last_live[0] = line
    if sys.stdout.isatty():
        sys.stdout.write("\r\033[K" + line.rstrip("\n") + ("\n" if line.endswith("\n") else ""))
    else:
        sys.stdout.write(line.rstrip("\n") + "\n")
    sys.stdout.flush()


def quantiles(samples: list[float]) -> tuple[float | None, float | None]:
    """(p50, p95) of the samples, None when there are none."""
    if not samples:
        return None, None
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def ms_quantiles(samples: list[float]) -> tuple[float | None, float | None]:
    """(p50, p95) of samples in seconds, as milliseconds rounded to 0.1."""
    p50, p95 = quantiles(samples)
    return rnd(None if p50 is None else p50 * 1000), rnd(None if p95 is None else p95 * 1000)


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def steady(samples: list[float], skip: int) -> list[float]:
    """The samples after the stream settled: the first `skip` left out (the second half if few)."""
    return samples[skip:] if len(samples) > 2 * skip else samples[len(samples) // 2 :]


def rnd(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
