"""Channel membership as a sans-IO state machine.

Verified envelopes and the current time go in; membership events come out.
State messages (announce, heartbeat, media state, leave) apply only when
newer than the last one applied for that origin, because gossip can deliver
one origin's messages out of order. Chat is deduplicated by its id. A member
silent for MEMBER_TIMEOUT seconds is removed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from bisc.identity import EndpointId
from bisc.proto.messages import (
    Chat,
    Envelope,
    FileAnnounce,
    Heartbeat,
    MediaState,
    PeerAnnounce,
    PeerInfo,
    PeerLeave,
    TicketRefresh,
)

HEARTBEAT_INTERVAL = 5.0
MEMBER_TIMEOUT = 15.0
MAX_MEMBERS = 256
CHAT_DEDUP = 4096
DEPARTED_MEMORY = 1024
MAX_FILES_PER_MEMBER = 256


@dataclass
class Member:
    peer_id: EndpointId
    info: PeerInfo
    last_seen: float
    state_seq: int
    media: MediaState = field(default_factory=MediaState)
    sealed_info: bytes = b""  # the newest signed announce/heartbeat, for snapshots
    # Signed FileAnnounces by file hash: the catalog a new joiner receives.
    sealed_files: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name or self.peer_id.short()


@dataclass(frozen=True)
class MemberJoined:
    member: Member


@dataclass(frozen=True)
class MemberLeft:
    peer_id: EndpointId
    name: str
    reason: str  # "left" or "timeout"


@dataclass(frozen=True)
class ChatReceived:
    peer_id: EndpointId
    name: str
    text: str
    timestamp_ms: int
    chat_id: bytes


@dataclass(frozen=True)
class MediaStateChanged:
    peer_id: EndpointId
    state: MediaState


@dataclass(frozen=True)
class FileAnnounced:
    peer_id: EndpointId
    file: FileAnnounce


@dataclass(frozen=True)
class TicketRefreshed:
    peer_id: EndpointId
    ticket: str


MembershipEvent = (
    MemberJoined | MemberLeft | ChatReceived | MediaStateChanged | FileAnnounced | TicketRefreshed
)


class Membership:
    def __init__(self, me: EndpointId, max_members: int = MAX_MEMBERS) -> None:
        self.me = me
        self.max_members = max_members
        self.members: dict[EndpointId, Member] = {}
        self._chat_seen: OrderedDict[bytes, None] = OrderedDict()
        # Last state seq of members who left, so a replayed old heartbeat
        # cannot bring them back.
        self._departed: OrderedDict[EndpointId, int] = OrderedDict()
        self.ignored = 0  # stale, duplicate or over-capacity messages

    def name_of(self, peer_id: EndpointId) -> str:
        member = self.members.get(peer_id)
        return member.name if member else peer_id.short()

    def handle(self, env: Envelope, sealed: bytes, now: float) -> list[MembershipEvent]:
        if env.origin == self.me:
            return []
        msg = env.message
        member = self.members.get(env.origin)
        if member is not None:
            member.last_seen = now
        if isinstance(msg, Chat):
            return self._chat(env, msg)
        if isinstance(msg, FileAnnounce):
            if member is not None:
                if msg.file_hash in member.sealed_files:
                    return []  # already known: a repeat, not news
                if len(member.sealed_files) >= MAX_FILES_PER_MEMBER:
                    self.ignored += 1
                    return []
                member.sealed_files[msg.file_hash] = sealed
            return [FileAnnounced(env.origin, msg)]
        if isinstance(msg, TicketRefresh):
            return [TicketRefreshed(env.origin, msg.ticket)]
        # State messages from here on: only the newest counts.
        newest = member.state_seq if member else self._departed.get(env.origin, -1)
        if env.seq <= newest:
            self.ignored += 1
            return []
        if isinstance(msg, PeerLeave):
            if member is None:
                self._remember_departed(env.origin, env.seq)
                return []
            return [self._remove(env.origin, "left", env.seq)]
        if isinstance(msg, PeerAnnounce | Heartbeat):
            return self._info(env, msg.info, sealed, now)
        if isinstance(msg, MediaState):
            if member is None:
                self.ignored += 1
                return []
            member.state_seq = env.seq
            if member.media == msg:
                return []
            member.media = msg
            return [MediaStateChanged(env.origin, msg)]
        return []  # pragma: no cover - every kind is handled above

    def _chat(self, env: Envelope, msg: Chat) -> list[MembershipEvent]:
        if msg.chat_id in self._chat_seen:
            self.ignored += 1
            return []
        self._chat_seen[msg.chat_id] = None
        if len(self._chat_seen) > CHAT_DEDUP:
            self._chat_seen.popitem(last=False)
        return [ChatReceived(env.origin, self.name_of(env.origin), msg.text, env.timestamp_ms, msg.chat_id)]

    def _info(self, env: Envelope, info: PeerInfo, sealed: bytes, now: float) -> list[MembershipEvent]:
        member = self.members.get(env.origin)
        if member is not None:
            member.info, member.state_seq, member.sealed_info = info, env.seq, sealed
            return []
        if len(self.members) >= self.max_members:
            self.ignored += 1
            return []
        self._departed.pop(env.origin, None)
        member = Member(env.origin, info, now, env.seq, sealed_info=sealed)
        self.members[env.origin] = member
        return [MemberJoined(member)]

    def _remember_departed(self, peer_id: EndpointId, seq: int) -> None:
        self._departed[peer_id] = seq
        if len(self._departed) > DEPARTED_MEMORY:
            self._departed.popitem(last=False)

    def _remove(self, peer_id: EndpointId, reason: str, seq: int) -> MemberLeft:
        member = self.members.pop(peer_id)
        self._remember_departed(peer_id, seq)
        return MemberLeft(peer_id, member.name, reason)

    def expire(self, now: float) -> list[MembershipEvent]:
        """Remove members silent for MEMBER_TIMEOUT seconds."""
        silent = [m for m in self.members.values() if now - m.last_seen > MEMBER_TIMEOUT]
        return [self._remove(m.peer_id, "timeout", m.state_seq) for m in silent]

    def next_expiry(self) -> float | None:
        if not self.members:
            return None
        return min(m.last_seen for m in self.members.values()) + MEMBER_TIMEOUT

    def snapshot(self) -> list[bytes]:
        """Signed announcements of the known members, then their files, for a new joiner."""
        infos = [m.sealed_info for m in self.members.values() if m.sealed_info]
        files = [sealed for m in self.members.values() for sealed in m.sealed_files.values()]
        return infos + files
