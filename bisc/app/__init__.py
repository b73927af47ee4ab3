"""The UI-agnostic core: Node, Channel and their events (the public API)."""

from bisc.app.channel import Channel
from bisc.app.events import (
    ChannelEvent,
    ChatReceived,
    FileAnnounced,
    MediaStateChanged,
    MemberJoined,
    MemberLeft,
    TicketRefreshed,
)
from bisc.app.node import JoinError, Node

__all__ = [
    "Channel",
    "ChannelEvent",
    "ChatReceived",
    "FileAnnounced",
    "JoinError",
    "MediaStateChanged",
    "MemberJoined",
    "MemberLeft",
    "Node",
    "TicketRefreshed",
]
