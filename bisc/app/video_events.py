"""Events a channel's video emits."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bisc.identity import EndpointId
from bisc.media.video_receiver import VideoStats


@dataclass(frozen=True)
class VideoStatsEvent:
    """Every few seconds, per peer stream we receive video from."""

    peer_id: EndpointId
    name: str
    stream_id: int  # 1 camera, 2 screen
    stats: VideoStats


def video_event_to_json(event: VideoStatsEvent) -> dict[str, Any]:
    head = {"event": "media_stats", "kind": "video", "peer": str(event.peer_id), "name": event.name}
    return head | {"stream": "camera" if event.stream_id == 1 else "screen"} | asdict(event.stats)
