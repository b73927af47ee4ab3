"""File sharing in the headless session: --share/--download, /share /files
/get, and a progress bar per transfer (rate, ETA)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bisc.app.channel import Channel
from bisc.app.events import ChannelEvent, DownloadComplete, DownloadProgress, FileAnnounced
from bisc.errors import BiscError

BAR_WIDTH = 24
PLAIN_PROGRESS_INTERVAL = 2.0  # seconds between progress lines when not on a terminal


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def progress_bar(name: str, done: int, total: int, rate: float, eta: float | None) -> str:
    fraction = done / total if total else 1.0
    filled = int(fraction * BAR_WIDTH)
    eta_text = "" if eta is None else f" ETA {eta:.0f}s"
    return (
        f"{name[:30]:<30} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%} "
        f"{human_bytes(done)}/{human_bytes(total)} {human_bytes(rate)}/s{eta_text}"
    )


class Transfers:
    """Auto-downloads and progress display for one session."""

    def __init__(self, channel: Channel, download: list[str]) -> None:
        self.channel = channel
        self.want_all = "all" in download
        self.wanted = {h.lower() for h in download if h != "all"}
        self._last_plain: dict[bytes, float] = {}
        self._started: set[bytes] = set()

    def on_event(self, event: ChannelEvent) -> str | None:
        """Start wanted downloads; returns a progress line to show, if any."""
        if isinstance(event, FileAnnounced):
            file_hash = event.file.file_hash
            if self.want_all or file_hash.hex() in self.wanted:
                self._start(file_hash)
        if isinstance(event, DownloadProgress):
            now = time.monotonic()
            if not sys.stdout.isatty():
                if now - self._last_plain.get(event.file_hash, 0.0) < PLAIN_PROGRESS_INTERVAL:
                    return None
                self._last_plain[event.file_hash] = now
            return progress_bar(event.name, event.bytes_done, event.size, event.rate_bps, event.eta_seconds)
        return None

    def start_wanted_known(self) -> None:
        """Files already in the catalog when the session starts."""
        for file_hash in list(self.channel.files):
            if self.want_all or file_hash.hex() in self.wanted:
                self._start(file_hash)

    def _start(self, file_hash: bytes) -> None:
        if file_hash in self._started:
            return
        try:
            handle = self.channel.download(file_hash)
        except BiscError:
            return  # no source yet: a later announcement starts it
        self._started.add(file_hash)
        if handle.state == "complete" and handle.path is not None:
            # Done in an earlier run: say so, as a script waiting for it expects.
            self.channel._emit(DownloadComplete(file_hash, handle.name, handle.path))

    def files_lines(self) -> list[str]:
        lines = []
        for file_hash, entry in self.channel.files.items():
            state = entry.state or "-"
            lines.append(
                f"  {file_hash.hex()[:16]}  {human_bytes(entry.size):>9}  {len(entry.holders)} holder(s)  "
                f"{state:<11} {entry.name}"
            )
        return lines or ["  (no files shared in this channel yet)"]


async def share_path(channel: Channel, path: str) -> tuple[bytes, str, int]:
    """Hash and announce one file, with a hashing progress line on a terminal."""
    target = Path(path).expanduser()
    if not target.is_file():
        raise BiscError(f"cannot share {path}: not a readable file")

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\rhashing {target.name}: {done / total if total else 1:4.0%}")
            sys.stderr.flush()

    info = await channel.share(target, progress)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    return info.file_hash, info.name, info.size
