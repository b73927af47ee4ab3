"""The handle a caller gets for one download, and its rate estimate."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from pathlib import Path

from bisc.errors import BiscError
from bisc.identity import EndpointId

QUEUED = "queued"  # waiting for a source (or for the hash list)
RUNNING = "running"
COMPLETE = "complete"
FAILED = "failed"
CANCELLED = "cancelled"
FINISHED = (COMPLETE, FAILED, CANCELLED)

RATE_WINDOW = 3.0  # seconds of history in the moving average


class DownloadError(BiscError):
    """A download failed; its verified chunks stay recorded for a later download()."""


class DownloadCancelled(DownloadError):
    """The download was cancelled."""


class RateMeter:
    """Bytes per second over the last RATE_WINDOW seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, total: int) -> None:
        now = self._clock()
        if self._samples and now - self._samples[-1][0] < 0.05:
            self._samples[-1] = (self._samples[-1][0], total)  # coalesce: bounded samples
        else:
            self._samples.append((now, total))
        self._trim(now)

    def rate(self) -> float:
        now = self._clock()
        self._trim(now)
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (_, b1) = self._samples[0], self._samples[-1]
        span = max(now - t0, 0.25)  # decays to 0 when nothing arrives
        return (b1 - b0) / span

    def _trim(self, now: float) -> None:
        while self._samples and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()


class Download:
    """One download as the caller sees it; the service updates it."""

    def __init__(
        self,
        file_hash: bytes,
        name: str,
        size: int,
        *,
        on_cancel: Callable[[Download, bool], None],
        clock: Callable[[], float],
    ) -> None:
        self.file_hash = file_hash
        self.name = name
        self.size = size
        self.state = QUEUED
        self.bytes_done = 0
        self.sources: tuple[EndpointId, ...] = ()
        self.path: Path | None = None
        self.error: str | None = None
        self._on_cancel = on_cancel
        self._meter = RateMeter(clock)
        self._done: asyncio.Future[Path] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return (
            f"<Download {self.name!r} {self.file_hash.hex()[:12]} {self.state} {self.bytes_done}/{self.size}>"
        )

    @property
    def rate_bps(self) -> float:
        return self._meter.rate() if self.state == RUNNING else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.rate_bps
        if self.state == COMPLETE:
            return 0.0
        return (self.size - self.bytes_done) / rate if rate > 0 else None

    @property
    def finished(self) -> bool:
        """Over, including any clean-up (a cancelled download deleting its data)."""
        return self._done.done()

    def cancel(self, remove: bool = False) -> None:
        """Stop; remove=True also deletes the partial data and its recorded state."""
        if self.state in (COMPLETE, FAILED, CANCELLED) and not remove:
            return
        self._on_cancel(self, remove)

    async def wait(self) -> Path:
        """The final path once complete; raises DownloadError if it failed or was cancelled."""
        return await asyncio.shield(self._done)

    # -- called by the service ------------------------------------------------
    def _progress(self, bytes_done: int) -> None:
        self.bytes_done = bytes_done
        self._meter.add(bytes_done)

    def _complete(self, path: Path) -> None:
        self.state, self.path, self.bytes_done = COMPLETE, path, self.size
        if not self._done.done():
            self._done.set_result(path)

    def _fail(self, reason: str, cancelled: bool = False) -> None:
        self.state = CANCELLED if cancelled else FAILED
        self.error = reason
        if not self._done.done():
            self._done.set_exception(DownloadCancelled(reason) if cancelled else DownloadError(reason))
            self._done.exception()  # retrieved: nobody may be waiting
