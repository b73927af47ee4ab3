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
    FileAnnounced,
    FileWithdrawn,
    MediaStateChanged,
    MediaStats,
    MemberJoined,
    MemberLeft,
    SpeakingChanged,
    TicketRefreshed,
    VideoStatsEvent,
)
from bisc.identity import EndpointId
from bisc.media.video_types import DecodedFrame
from bisc.proto.media_control import SCREEN_STREAM

log = logging.getLogger(__name__)

PUBLISH_INTERVAL = 0.1  # seconds: at most ten property updates a second
MAX_MESSAGES = 500


def initials(name: str) -> str:
    parts = [p for p in name.replace("_", " ").replace(".", " ").split() if p]
    if not parts:
        return "?"
    if len(parts) == 1:
        return parts[0][:2].upper()
    return (parts[0][0] + parts[-1][0]).upper()


@dataclass
class PeerState:
    key: str  # the EndpointId's text, stable across renames
    name: str
    me: bool = False
    muted: bool = False
    video: bool = False
    screen: bool = False
    speaking: bool = False

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
        }


class ChannelBridge(EventDispatcher):  # type: ignore[misc]
    """One per joined channel; `stop()` when leaving."""

    members = ListProperty()  # dicts (PeerState.as_dict), this node first
    member_count = NumericProperty(1)
    messages = ListProperty()  # dicts: name, text, time, mine
    unread = NumericProperty(0)  # chat messages since the chat panel was last open
    chat_open = BooleanProperty(False)
    files = ListProperty()  # dicts: hash, name, size, owners
    downloads = DictProperty()  # hash hex -> dict: name, done, size, rate, state, path, reason
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
        self._files: dict[str, dict[str, Any]] = {}
        self._downloads: dict[str, dict[str, Any]] = {}
        self._stats: dict[str, str] = {}
        self._notice = ""
        self._ticket = ""
        self._new_chat = 0
        self._chat_version = self._chat_published = 0
        self._task: asyncio.Task[None] | None = None
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
        elif isinstance(event, VideoStatsEvent):
            self._stats[str(event.peer_id)] = f"video {event.stats.fps:.0f} fps"
        elif isinstance(event, TicketRefreshed):
            self._ticket = event.ticket
        else:
            self._apply_file_event(event)

    def _apply_file_event(self, event: object) -> None:
        if isinstance(event, FileAnnounced):
            f = event.file
            entry = self._files.setdefault(f.file_hash.hex(), {"hash": f.file_hash.hex(), "owners": []})
            entry.update(name=f.name, size=f.size)
            if str(event.peer_id) not in entry["owners"]:
                entry["owners"].append(str(event.peer_id))
        elif isinstance(event, FileWithdrawn):
            self._files.pop(event.file_hash.hex(), None)
        elif isinstance(event, DownloadProgress):
            self._downloads[event.file_hash.hex()] = {
                "name": event.name,
                "done": event.bytes_done,
                "size": event.size,
                "rate": event.rate_bps,
                "state": "downloading",
            }
        elif isinstance(event, DownloadComplete):
            d = self._downloads.setdefault(event.file_hash.hex(), {"name": event.name})
            d.update(state="complete", path=str(event.path))
        elif isinstance(event, DownloadFailed):
            d = self._downloads.setdefault(event.file_hash.hex(), {"name": event.name})
            d.update(state="failed", reason=event.reason)

    def _peer(self, peer_id: EndpointId) -> PeerState | None:
        key = str(peer_id)
        return self._me if key == self._me.key else self._peers.get(key)

    def _add_message(self, name: str, text: str, when: float, *, mine: bool) -> None:
        stamp = time.strftime("%H:%M", time.localtime(when))
        self._messages.append({"name": "You" if mine else name, "text": text, "time": stamp, "mine": mine})
        self._chat_version += 1
        if not mine:
            self._new_chat += 1

    # -- calls from the UI ---------------------------------------------------
    def add_own_chat(self, text: str) -> None:
        """The core does not echo our own chat back: show it at once."""
        self._add_message(self._me.name, text, time.time(), mine=True)
        self._flush()

    def set_own_media(self, *, muted: bool | None = None, video: bool | None = None) -> None:
        if muted is not None:
            self._me.muted = muted
        if video is not None:
            self._me.video = video
        self._flush()

    def on_chat_open(self, _instance: object, is_open: bool) -> None:
        if is_open:
            self._new_chat = 0
            self.unread = 0

    def frames(self) -> dict[str, tuple[tuple[int, int], DecodedFrame]]:
        """The newest picture per peer (its screen share over its camera), keyed like `members`.

        The version is (stream, frame version): a tile uploads a texture only when it changed."""
        video = self.channel.video
        if video is None:
            return {}
        out: dict[str, tuple[tuple[int, int], DecodedFrame]] = {}
        for (peer, sid), (version, frame) in video.frames().items():
            if frame is None:
                continue
            key = str(peer)
            if key in out and sid != SCREEN_STREAM:
                continue
            out[key] = ((sid, version), frame)
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
        self.files = sorted(self._files.values(), key=lambda f: f["name"].lower())
        self.downloads = {k: dict(v) for k, v in self._downloads.items()}
        self.stats = dict(self._stats)
        self.notice = self._notice
        if self._ticket:
            self.ticket = self._ticket
