"""Core events -> Kivy properties.

ChannelBridge reads `channel.events()` (the async iterator of bisc.app events) on the asyncio loop
Kivy also runs on, folds each event into plain Python state at once, and publishes that state to
Kivy properties at most every PUBLISH_INTERVAL seconds (Clock.create_trigger coalesces bursts: a
join storm or a download's progress events cause one redraw, not hundreds). The screens only bind
to these properties; nothing here opens sockets or devices.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from kivy.clock import Clock
from kivy.event import EventDispatcher
from kivy.properties import (
    BooleanProperty,
    DictProperty,
    ListProperty,
    NumericProperty,
    StringProperty,
)

from bisc.app import Channel
from bisc.app.events import (
    ChatReceived,
    DownloadComplete,
    DownloadFailed,
    DownloadProgress,
    FileWithdrawn,
    MediaStateChanged,
    MediaStats,
    MemberJoined,
    MemberLeft,
    SpeakingChanged,
    TicketRefreshed,
    VideoStatsEvent,
)
from bisc.errors import BiscError
from bisc.files.download import Download
from bisc.files.service import CatalogEntry
from bisc.identity import EndpointId
from bisc.media.video_types import DecodedFrame
from bisc.proto.media_control import SCREEN_STREAM

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 0.1  # seconds: at most ten property updates a second
PREVIEW_FPS = 15  # our own camera/screen in its tile: enough to see ourselves, cheap to convert
PREVIEW_WIDTH = 640
MAX_MESSAGES = 500


def screen_key(peer_key: str) -> str:
    """The tile key of a peer's screen share (its camera or initials tile is keyed by the peer)."""
    return peer_key + ":screen"


def initials(name: str) -> str:
    parts = [p for p in name.replace("_", " ").replace(".", " ").split() if p]
    if not parts:
        return "?"
    if len(parts) == 1:
        return parts[0][:2].upper()
    return (parts[0][0] + parts[-1][0]).upper()


def link_quality(loss_pct: float, rtt_ms: float, jitter_ms: float = 0.0) -> str:
    """"good", "fair" or "poor" from a link's loss (%), round trip and jitter (ms; negative: unknown)."""
    if loss_pct >= 10 or rtt_ms >= 400 or jitter_ms >= 100:
        return "poor"
    if loss_pct >= 3 or rtt_ms >= 200 or jitter_ms >= 40:
        return "fair"
    return "good"


WORSE = {"": 0, "good": 1, "fair": 2, "poor": 3}


@dataclass
class PeerState:
    key: str  # the EndpointId's text, stable across renames
    name: str
    me: bool = False
    muted: bool = False
    video: bool = False
    screen: bool = False
    speaking: bool = False
    voice_quality: str = ""  # "" until the first report
    video_quality: str = ""

    @property
    def quality(self) -> str:
        return max(self.voice_quality, self.video_quality, key=WORSE.__getitem__)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": "You" if self.me else self.name,
            "initials": initials(self.name),
            "me": self.me,
            "muted": self.muted,
            "video": self.video,
            "screen": self.screen,
            "speaking": self.speaking,
            "quality": self.quality,
        }


class ChannelBridge(EventDispatcher):  # type: ignore[misc]
    """One per joined channel; `stop()` when leaving."""

    members = ListProperty()  # dicts (PeerState.as_dict), this node first
    member_count = NumericProperty(1)
    messages = ListProperty()  # dicts: seq (grows by one per message), name, text, time, mine
    unread = NumericProperty(0)  # chat messages since the chat panel was last open
    chat_open = BooleanProperty(False)
    files = ListProperty()  # the catalog, one dict per file (see _file_row), by name
    downloads = DictProperty()  # hash hex -> dict: name, done, size, rate, eta, state, path, reason
    file_notice = StringProperty("")  # e.g. one of our shared files changed on disk and was withdrawn
    stats = DictProperty()  # peer key -> short text (voice/video link quality)
    notice = StringProperty("")  # the latest "X joined" / "X left" line
    ticket = StringProperty("")  # the newest ticket text (ours or refreshed by a member)

    def __init__(self, channel: Channel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channel = channel
        me = channel.me
        self._me = PeerState(str(me), channel.display_name, me=True)
        self._peers: dict[str, PeerState] = {}
        self._messages: deque[dict[str, Any]] = deque(maxlen=MAX_MESSAGES)
        self._downloads: dict[str, dict[str, Any]] = {}  # from events: also downloads resumed at start
        self._handles: dict[str, Download] = {}  # downloads started here: their live state wins
        self._file_notice = ""
        self._stats: dict[str, str] = {}
        self._notice = ""
        self._ticket = ""
        self._new_chat = 0
        self._chat_version = self._chat_published = 0
        self._task: asyncio.Task[None] | None = None
        self._previews: dict[int, tuple[int, float, DecodedFrame]] = {}  # stream -> version, when, picture
        self._publish = Clock.create_trigger(self._flush, PUBLISH_INTERVAL)
        for peer_id, member in channel.members.items():
            self._peers[str(peer_id)] = PeerState(str(peer_id), member.name)
        self._flush()

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pump())

    def stop(self) -> None:
        self._publish.cancel()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _pump(self) -> None:
        async for event in self.channel.events():
            try:
                self.apply(event)
            except Exception:  # one odd event must not stop the UI from updating
                log.exception("could not show event %r", event)
            self._publish()

    # -- state from events (plain Python, no Kivy) ----------------------------
    def apply(self, event: object) -> None:
        if isinstance(event, MemberJoined):
            key = str(event.member.peer_id)
            peer = self._peers.setdefault(key, PeerState(key, event.member.name))
            peer.name = event.member.name
            media = event.member.media
            peer.muted, peer.video, peer.screen = media.audio_muted, media.video_enabled, media.screen_sharing
            self._notice = f"{peer.name} joined"
        elif isinstance(event, MemberLeft):
            self._peers.pop(str(event.peer_id), None)
            self._stats.pop(str(event.peer_id), None)
            self._notice = f"{event.name} left" + (" (timed out)" if event.reason == "timeout" else "")
        elif isinstance(event, ChatReceived):
            self._add_message(event.name, event.text, event.timestamp_ms / 1000, mine=False)
        elif isinstance(event, MediaStateChanged):
            known = self._peers.get(str(event.peer_id))
            if known is not None:
                s = event.state
                known.muted, known.video, known.screen = s.audio_muted, s.video_enabled, s.screen_sharing
        elif isinstance(event, SpeakingChanged):
            speaker = self._peer(event.peer_id)
            if speaker is not None:
                speaker.speaking = event.speaking
        elif isinstance(event, MediaStats):
            st = event.stats
            rtt = f"{st.rtt_ms:.0f} ms" if st.rtt_ms >= 0 else "?"
            self._stats[str(event.peer_id)] = f"voice {st.loss_pct:.0f}% loss, rtt {rtt}"
            if (known := self._peers.get(str(event.peer_id))) is not None:
                known.voice_quality = link_quality(st.loss_pct, st.rtt_ms, st.jitter_ms)
        elif isinstance(event, VideoStatsEvent):
            vs = event.stats
            self._stats[str(event.peer_id)] = f"video {vs.fps:.0f} fps, {vs.loss_pct:.0f}% loss"
            if (known := self._peers.get(str(event.peer_id))) is not None:
                frozen = vs.fps < 1 and vs.frames > 0
                known.video_quality = "poor" if frozen else link_quality(vs.loss_pct, -1)
        elif isinstance(event, TicketRefreshed):
            self._ticket = event.ticket
        else:
            self._apply_file_event(event)

    def _apply_file_event(self, event: object) -> None:
        # FileAnnounced needs no state here: the catalog (channel.files) is read when publishing.
        if isinstance(event, FileWithdrawn):
            self._file_notice = f"Stopped sharing {event.name}: {event.reason}"
        elif isinstance(event, DownloadProgress):
            self._downloads[event.file_hash.hex()] = {
                "name": event.name,
                "done": event.bytes_done,
                "size": event.size,
                "rate": event.rate_bps,
                "eta": event.eta_seconds,
                "state": "downloading",
            }
        elif isinstance(event, DownloadComplete):
            d = self._downloads.setdefault(event.file_hash.hex(), {"name": event.name})
            d.update(state="complete", path=str(event.path))
        elif isinstance(event, DownloadFailed):
            d = self._downloads.setdefault(event.file_hash.hex(), {"name": event.name})
            d.update(state="failed", reason=event.reason)

    def track_download(self, handle: Download) -> None:
        """A download the UI started: its handle tells queued, running and cancelled apart."""
        self._handles[handle.file_hash.hex()] = handle
        self._publish()

    def refresh_files(self) -> None:
        """Publish again soon: a rate decays and a cancel happens without any event."""
        self._publish()

    def _file_rows(self) -> list[dict[str, Any]]:
        try:
            catalog = self.channel.files
        except BiscError:  # sharing stopped (the channel was left)
            catalog = {}
        rows = [self._file_row(entry) for entry in catalog.values()]
        return sorted(rows, key=lambda r: (r["name"].lower(), r["hash"]))

    def _file_row(self, entry: CatalogEntry) -> dict[str, Any]:
        """hash, name, size, owners (names), mine, and the download's state (available, queued,
        downloading, complete, failed, cancelled, paused, shared), done, rate, eta, path, reason."""
        key, size, state = entry.file_hash.hex(), entry.size, entry.state
        # Members only: the core may still list a peer that left (a late copy of its announcement).
        owners = sorted(self._peers[str(p)].name for p in entry.holders if str(p) in self._peers)
        row: dict[str, Any] = {"hash": key, "name": entry.name, "size": size, "owners": owners, "mine": False}
        row |= {"done": 0, "rate": 0.0, "eta": None, "path": str(entry.path or ""), "reason": ""}
        handle, seen = self._handles.get(key), self._downloads.get(key)
        if state == "shared":
            row.update(state="shared", mine=True)
        elif handle is not None:
            live = {"queued": "queued", "running": "downloading"}.get(handle.state, handle.state)
            row.update(state=live, done=handle.bytes_done, rate=handle.rate_bps, eta=handle.eta_seconds)
            row.update(reason=handle.error or "", path=str(handle.path or row["path"]))
        elif seen is not None:
            row.update({k: v for k, v in seen.items() if k != "name"})
        else:  # complete, or a part file from an earlier run (None: only announced)
            row["state"] = {"complete": "complete", "downloading": "paused"}.get(state or "", "available")
        if row["state"] == "complete":
            row["done"] = size
        return row

    def _peer(self, peer_id: EndpointId) -> PeerState | None:
        key = str(peer_id)
        return self._me if key == self._me.key else self._peers.get(key)

    def _add_message(self, name: str, text: str, when: float, *, mine: bool) -> None:
        stamp = time.strftime("%H:%M", time.localtime(when))
        self._chat_version += 1
        seq, name = self._chat_version, "You" if mine else name
        self._messages.append({"seq": seq, "name": name, "text": text, "time": stamp, "mine": mine})
        if not mine:
            self._new_chat += 1

    # -- calls from the UI ---------------------------------------------------
    def add_own_chat(self, text: str) -> None:
        """The core does not echo our own chat back: show it at once."""
        self._add_message(self._me.name, text, time.time(), mine=True)
        self._flush()

    def set_own_media(
        self, *, muted: bool | None = None, video: bool | None = None, screen: bool | None = None
    ) -> None:
        if muted is not None:
            self._me.muted = muted
        if video is not None:
            self._me.video = video
        if screen is not None:
            self._me.screen = screen
        self._flush()

    def on_chat_open(self, _instance: object, is_open: bool) -> None:
        if is_open:
            self._new_chat = 0
            self.unread = 0

    def frames(self) -> dict[str, tuple[tuple[int, int], DecodedFrame]]:
        """The newest picture of every tile: a peer's camera under its key, its screen share under
        `screen_key(key)`, and our own streams as a self-view (scaled down, at most PREVIEW_FPS).

        The version is (stream, frame version): a tile uploads a texture only when it changed."""
        video = self.channel.video
        if video is None:
            return {}
        out: dict[str, tuple[tuple[int, int], DecodedFrame]] = {}
        for (peer, sid), (version, frame) in video.frames().items():
            if frame is not None:
                key = str(peer)
                out[screen_key(key) if sid == SCREEN_STREAM else key] = ((sid, version), frame)
        now = time.monotonic()
        for sid, (version, captured) in video.local_frames().items():
            cached = self._previews.get(sid)
            due = cached is None or (cached[0] != version and now - cached[1] >= 1 / PREVIEW_FPS)
            if captured is not None and due:
                from bisc.media.video_color import to_rgb_preview  # PyAV: loaded only once we send video

                rgb = to_rgb_preview(captured, PREVIEW_WIDTH)
                picture = DecodedFrame(rgb, "rgb24", rgb.shape[1], rgb.shape[0], None, False)
                cached = self._previews[sid] = (version, now, picture)
            if cached is not None:
                key = self._me.key
                out[screen_key(key) if sid == SCREEN_STREAM else key] = ((sid, cached[0]), cached[2])
        for sid in [s for s in self._previews if s not in video.local_frames()]:
            del self._previews[sid]
        return out

    # -- publishing (throttled) ----------------------------------------------
    def _flush(self, *_args: object) -> None:
        peers = sorted(self._peers.values(), key=lambda p: (p.name.lower(), p.key))
        members = [self._me.as_dict(), *(p.as_dict() for p in peers)]
        if members != self.members:
            self.members = members
        self.member_count = len(members)
        if self._chat_version != self._chat_published:
            self._chat_published = self._chat_version
            self.messages = list(self._messages)
        self.unread = 0 if self.chat_open else self._new_chat
        self.files = self._file_rows()
        self.downloads = {k: dict(v) for k, v in self._downloads.items()}
        self.file_notice = self._file_notice
        self.stats = dict(self._stats)
        self.notice = self._notice
        if self._ticket:
            self.ticket = self._ticket
