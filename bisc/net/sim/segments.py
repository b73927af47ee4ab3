"""The segments a simulated connection carries reliably and in order."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Control:
    frame: bytes


@dataclass(slots=True)
class _Close:
    reason: str


@dataclass(slots=True)
class _StreamOpen:
    sid: int


@dataclass(slots=True)
class _StreamData:
    sid: int
    data: bytes


@dataclass(slots=True)
class _StreamFin:
    sid: int


@dataclass(slots=True)
class _StreamReset:
    sid: int


@dataclass(slots=True)
class _Credit:
    sid: int
    amount: int


_Segment = _Control | _Close | _StreamOpen | _StreamData | _StreamFin | _StreamReset | _Credit
