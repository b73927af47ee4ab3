"""Typed channel events, as the API's async iterator and the CLI's JSON show them."""

from __future__ import annotations

from typing import Any

from bisc.app.video_events import VideoStatsEvent, video_event_to_json
from bisc.app.voice_events import MediaStats, SpeakingChanged, VoiceEvent, voice_event_to_json
from bisc.files.events import (
    ChunkRejected,
    DownloadComplete,
    DownloadFailed,
    DownloadProgress,
    FileEvent,
    FileWithdrawn,
)
from bisc.proto.membership import (
    ChatReceived,
    FileAnnounced,
    MediaStateChanged,
    MemberJoined,
    MemberLeft,
    MembershipEvent,
    TicketRefreshed,
)

ChannelEvent = MembershipEvent | FileEvent | VoiceEvent | VideoStatsEvent

__all__ = [
    "ChannelEvent",
    "ChatReceived",
    "ChunkRejected",
    "DownloadComplete",
    "DownloadFailed",
    "DownloadProgress",
    "FileAnnounced",
    "FileWithdrawn",
    "MediaStateChanged",
    "MediaStats",
    "MemberJoined",
    "MemberLeft",
    "SpeakingChanged",
    "TicketRefreshed",
    "VideoStatsEvent",
    "event_to_json",
]


def event_to_json(event: ChannelEvent) -> dict[str, Any]:
    """One event as the CLI's --json line."""
    if isinstance(event, MemberJoined):
        m = event.member
        return {"event": "peer_joined", "peer": str(m.peer_id), "name": m.name}
    if isinstance(event, MemberLeft):
        return {"event": "peer_left", "peer": str(event.peer_id), "name": event.name, "reason": event.reason}
    if isinstance(event, ChatReceived):
        return {
            "event": "chat",
            "peer": str(event.peer_id),
            "name": event.name,
            "text": event.text,
            "timestamp_ms": event.timestamp_ms,
            "id": event.chat_id.hex(),
        }
    if isinstance(event, MediaStateChanged):
        s = event.state
        return {
            "event": "media_state",
            "peer": str(event.peer_id),
            "audio_muted": s.audio_muted,
            "video_enabled": s.video_enabled,
            "screen_sharing": s.screen_sharing,
            "app_audio_sharing": s.app_audio_sharing,
        }
    if isinstance(event, FileAnnounced):
        f = event.file
        return {
            "event": "file_announced",
            "peer": str(event.peer_id),
            "hash": f.file_hash.hex(),
            "name": f.name,
            "size": f.size,
        }
    if isinstance(event, TicketRefreshed):
        return {"event": "ticket_refreshed", "peer": str(event.peer_id), "ticket": event.ticket}
    if isinstance(event, MediaStats | SpeakingChanged):
        return voice_event_to_json(event)
    if isinstance(event, VideoStatsEvent):
        return video_event_to_json(event)
    return _file_event_to_json(event)


def _file_event_to_json(event: FileEvent) -> dict[str, Any]:
    if isinstance(event, DownloadProgress):
        return {
            "event": "download_progress",
            "hash": event.file_hash.hex(),
            "name": event.name,
            "bytes_done": event.bytes_done,
            "size": event.size,
            "rate_bps": round(event.rate_bps),
            "eta_seconds": None if event.eta_seconds is None else round(event.eta_seconds, 1),
            "sources": len(event.sources),
        }
    if isinstance(event, DownloadComplete):
        return {
            "event": "download_complete",
            "hash": event.file_hash.hex(),
            "name": event.name,
            "path": str(event.path),
            "verified": True,
        }
    if isinstance(event, DownloadFailed):
        return {
            "event": "download_failed",
            "hash": event.file_hash.hex(),
            "name": event.name,
            "reason": event.reason,
        }
    if isinstance(event, FileWithdrawn):
        return {
            "event": "file_withdrawn",
            "hash": event.file_hash.hex(),
            "name": event.name,
            "reason": event.reason,
        }
    return {
        "event": "chunk_rejected",
        "hash": event.file_hash.hex(),
        "peer": str(event.peer),
        "index": event.index,
    }
