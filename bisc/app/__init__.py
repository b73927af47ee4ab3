"""The UI-agnostic core: Node, Channel and their events (the public API)."""

from bisc.app.channel import Channel
from bisc.app.events import (
    ChannelEvent,
    ChatReceived,
    FileAnnounced,
    MediaStateChanged,
    MediaStats,
    MemberJoined,
    MemberLeft,
    SpeakingChanged,
    TicketRefreshed,
)
from bisc.app.node import JoinError, Node
from bisc.app.voice import VoiceCall
from bisc.media.voice_receiver import VoiceStats

__all__ = [
    "Channel",
    "ChannelEvent",
    "ChatReceived",
    "FileAnnounced",
    "JoinError",
    "MediaStateChanged",
    "MediaStats",
    "MemberJoined",
    "MemberLeft",
    "Node",
    "SpeakingChanged",
    "TicketRefreshed",
    "VoiceCall",
    "VoiceStats",
]
