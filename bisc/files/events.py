"""What the file service reports to its owner, as small frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bisc.identity import EndpointId


@dataclass(frozen=True)
class DownloadProgress:
    """Throttled to a few per second per download."""

    file_hash: bytes
    name: str
    bytes_done: int
    size: int
    rate_bps: float  # bytes per second, moving average
    eta_seconds: float | None  # None while the rate is unknown or zero
    sources: tuple[EndpointId, ...]  # peers serving chunks right now


@dataclass(frozen=True)
class DownloadComplete:
    """The file is in place at `path` and its identity was re-verified."""

    file_hash: bytes
    name: str
    path: Path


@dataclass(frozen=True)
class DownloadFailed:
    file_hash: bytes
    name: str
    reason: str  # readable; verified chunks stay recorded, so download() resumes


@dataclass(frozen=True)
class FileWithdrawn:
    """A file we shared changed on disk: we stopped serving it."""

    file_hash: bytes
    name: str
    reason: str


@dataclass(frozen=True)
class ChunkRejected:
    """`peer` sent a chunk whose hash is wrong; it is no longer asked for this file."""

    file_hash: bytes
    peer: EndpointId
    index: int


FileEvent = DownloadProgress | DownloadComplete | DownloadFailed | FileWithdrawn | ChunkRejected
