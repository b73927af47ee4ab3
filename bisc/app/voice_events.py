"""Events a channel's voice call emits."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bisc.identity import EndpointId
from bisc.media.voice_receiver import VoiceStats


@dataclass(frozen=True)
class MediaStats:
    """Every few seconds, per peer we receive voice from."""

    peer_id: EndpointId
    name: str
    stats: VoiceStats
    out_loss_pct: float  # what the peer reported losing of OUR audio, -1 unknown
    red_copies: int = 0  # copies of earlier frames our packets carry now (audio RED: on while peers lose)


@dataclass(frozen=True)
class SpeakingChanged:
    peer_id: EndpointId  # our own id for our microphone
    speaking: bool


VoiceEvent = MediaStats | SpeakingChanged


def voice_event_to_json(event: VoiceEvent) -> dict[str, Any]:
    if isinstance(event, MediaStats):
        head = {"event": "media_stats", "peer": str(event.peer_id), "name": event.name}
        ours = {"out_loss_pct": event.out_loss_pct, "red_copies": event.red_copies}
        return head | asdict(event.stats) | ours
    return {"event": "speaking", "peer": str(event.peer_id), "speaking": event.speaking}
