"""Recent channels: the tickets of channels created or joined, in a small JSON file in the data dir.

Kept apart from the screens so it can be tested without a window. A damaged file is ignored
(recent channels are a convenience, never a reason not to start)."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bisc.errors import BiscError
from bisc.ticket import BiscTicket

log = logging.getLogger(__name__)

FILE_NAME = "recent_channels.json"
MAX_RECENT = 12


@dataclass(frozen=True)
class RecentChannel:
    topic: str  # the channel's topic id, hex
    ticket: str
    title: str
    role: str  # "created" or "joined"
    used_at: float  # seconds since the epoch

    @property
    def when(self) -> str:
        return time.strftime("%d %b %H:%M", time.localtime(self.used_at))


class RecentChannels:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE_NAME

    def load(self) -> list[RecentChannel]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            items = [RecentChannel(**item) for item in raw["channels"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s: %s", self.path, exc)
            return []
        return sorted(items, key=lambda r: r.used_at, reverse=True)[:MAX_RECENT]

    def remember(self, ticket: str, role: str, title: str = "") -> RecentChannel:
        """Add or refresh the channel of `ticket` (a newer ticket replaces an older one)."""
        try:
            topic = BiscTicket.parse(ticket).topic_id.hex()
        except BiscError:
            raise
        items = [r for r in self.load() if r.topic != topic]
        entry = RecentChannel(topic, ticket, title or f"Channel {topic[:8]}", role, time.time())
        self._save([entry, *items][:MAX_RECENT])
        return entry

    def forget(self, topic: str) -> None:
        self._save([r for r in self.load() if r.topic != topic])

    def _save(self, items: list[RecentChannel]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"channels": [asdict(r) for r in items]}, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
