"""File sharing inside a channel: wires the FileService to gossip.

The FileService moves the bytes; this class tells the channel what it shares
(signed FileAnnounces, also handed to joiners and sent on new links), tells
the service who has what (from the announcements it hears), and announces a
file again once a download completes, so others can fetch it from us too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bisc.errors import BiscError
from bisc.files.download import Download
from bisc.files.events import DownloadComplete, FileEvent, FileWithdrawn
from bisc.files.service import FileService
from bisc.files.swarm import FileInfo
from bisc.proto.membership import FileAnnounced, MemberLeft, MembershipEvent
from bisc.proto.messages import FileAnnounce

if TYPE_CHECKING:
    from bisc.app.channel import Channel

FILES_DIR = "files"


class Sharing:
    def __init__(self, channel: Channel, storage_dir: Path, data_dir: Path) -> None:
        self.channel = channel
        self.service = FileService(
            me=channel.me,
            # One database per channel: its downloads resume only in that channel.
            db_path=data_dir / FILES_DIR / f"{channel.topic_id.hex()[:32]}.sqlite3",
            storage_dir=storage_dir,
            emit=self._on_file_event,
        )
        self.sealed: dict[bytes, bytes] = {}  # our own signed FileAnnounces by hash

    async def start(self) -> None:
        await self.service.start()

    async def close(self) -> None:
        await self.service.close()

    async def share(self, path: Path, progress: Callable[[int, int], None] | None = None) -> FileInfo:
        info = await self.service.share(path, progress)
        self._announce(info.file_hash, info.name, info.size, info.chunk_count)
        return info

    def download(self, file_hash: bytes) -> Download:
        return self.service.download(file_hash)

    def _announce(self, file_hash: bytes, name: str, size: int, chunk_count: int) -> None:
        message = FileAnnounce(file_hash, name[:255], size, chunk_count)
        with contextlib.suppress(BiscError):
            self.sealed[file_hash] = self.channel._broadcast(message)

    def on_membership_event(self, event: MembershipEvent) -> None:
        if isinstance(event, FileAnnounced):
            f = event.file
            self.service.learn(event.peer_id, f.file_hash, f.name, f.size, f.chunk_count)
        elif isinstance(event, MemberLeft):
            self.service.forget_peer(event.peer_id)

    def _on_file_event(self, event: FileEvent) -> None:
        if isinstance(event, DownloadComplete):
            entry = self.service.files.get(event.file_hash)
            if entry is not None:
                self._announce(event.file_hash, entry.name, entry.size, entry.chunk_count)
        elif isinstance(event, FileWithdrawn):
            self.sealed.pop(event.file_hash, None)
        self.channel._emit(event)
