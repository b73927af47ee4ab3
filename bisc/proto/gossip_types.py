"""What the gossip state machine is configured with, what it outputs, and what it counts.

Shared by the membership half (hyparview.py), the broadcast half
(plumtree.py) and the facade (gossip.py), which re-exports all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from bisc.proto.gossip_wire import (
    EAGER_PUSH_OVERHEAD,
    MAX_FRAME_SIZE,
    MAX_GRAFT_IDS,
    MAX_IHAVE_ENTRIES,
    MAX_PEER_DATA_SIZE,
    MAX_SHUFFLE_ENTRIES,
    MAX_TTL,
    GossipError,
    MessageId,
    PeerId,
)


@dataclass(frozen=True)
class GossipConfig:
    """Protocol parameters. Times are in seconds of the caller's clock."""

    # HyParView membership
    active_view_size: int = 5
    passive_view_size: int = 30
    active_random_walk_length: int = 6  # ARWL: hops a ForwardJoin travels
    passive_random_walk_length: int = 3  # PRWL: the hop at which the joiner enters passive views
    shuffle_interval: float = 30.0
    shuffle_jitter: float = 5.0  # each shuffle is interval ± up to this much, so peers do not synchronise
    shuffle_random_walk_length: int = 6
    shuffle_active_count: int = 3  # active peers sampled into a shuffle
    shuffle_passive_count: int = 4  # passive peers sampled into a shuffle
    neighbor_request_timeout: float = 5.0  # an unanswered Join/Neighbor request counts as a failed peer
    refill_interval: float = 1.0  # retry filling an incomplete active view this often
    max_bootstrap_peers: int = 16
    max_peer_data_size: int = 512
    # PlumTree broadcast
    max_message_size: int = 60 * 1024
    ihave_interval: float = 0.05  # lazy announcements are batched for this long
    ihave_batch_max: int = 256  # entries per IHave frame; a full batch is sent at once
    graft_timeout: float = 0.2  # wait this long for the eager copy after the first IHave
    graft_retry_timeout: float = 0.1  # then ask the next announcer after this long
    max_announcers_per_message: int = 4
    max_missing_messages: int = 1024  # announced but not yet received
    optimization_threshold: int = 7  # re-root the tree when an IHave is this many hops shorter
    seen_ttl: float = 300.0  # how long a message id suppresses duplicates
    seen_max: int = 16384
    payload_cache_ttl: float = 30.0  # how long a payload can be served to a Graft
    payload_cache_max_bytes: int = 8 * 1024 * 1024
    recent_ihave_window: float = 10.0  # a new neighbour is told about payloads received this recently

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value < 0 or (value == 0 and field.name.endswith(("_size", "_max", "_interval"))):
                raise GossipError(f"GossipConfig.{field.name} must be positive, got {value}")
        if self.max_message_size + EAGER_PUSH_OVERHEAD > MAX_FRAME_SIZE:
            raise GossipError(f"max_message_size must be at most {MAX_FRAME_SIZE - EAGER_PUSH_OVERHEAD}")
        if self.max_peer_data_size > MAX_PEER_DATA_SIZE:
            raise GossipError(f"max_peer_data_size must be at most {MAX_PEER_DATA_SIZE}")
        if self.shuffle_active_count + self.shuffle_passive_count + 1 > MAX_SHUFFLE_ENTRIES:
            raise GossipError(f"a shuffle may carry at most {MAX_SHUFFLE_ENTRIES} entries")
        if self.passive_view_size < self.shuffle_active_count + self.shuffle_passive_count:
            raise GossipError("passive_view_size must hold a whole shuffle sample")
        if self.ihave_batch_max > min(MAX_IHAVE_ENTRIES, MAX_GRAFT_IDS):
            raise GossipError(f"ihave_batch_max must be at most {min(MAX_IHAVE_ENTRIES, MAX_GRAFT_IDS)}")
        walks = (self.active_random_walk_length, self.passive_random_walk_length)
        if max(*walks, self.shuffle_random_walk_length) > MAX_TTL:
            raise GossipError(f"random walk lengths must be at most {MAX_TTL}")
        if self.passive_random_walk_length > self.active_random_walk_length:
            raise GossipError("passive_random_walk_length must not exceed active_random_walk_length")
        if self.shuffle_jitter >= self.shuffle_interval:
            raise GossipError("shuffle_jitter must be less than shuffle_interval")


# --- outputs: commands for the runtime and events for the application ----------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver `data` to `peer` on the reliable control stream, dialing it first if needed."""

    peer: PeerId
    data: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    """A broadcast received for the first time (never the node's own broadcasts)."""

    msg_id: MessageId
    payload: bytes
    hops: int  # links it travelled from its origin (1 = the origin is a neighbour)
    from_peer: PeerId


@dataclass(frozen=True, slots=True)
class NeighborUp:
    peer: PeerId


@dataclass(frozen=True, slots=True)
class NeighborDown:
    peer: PeerId


@dataclass(frozen=True, slots=True)
class PeerData:
    """How to reach `peer` (opaque; addresses in production). Emitted when a peer enters the
    views with new data and before gossip contacts a peer outside its active view."""

    peer: PeerId
    data: bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Gossip no longer needs its link to `peer`; the runtime may close it once queued Sends are out."""

    peer: PeerId


Output = Send | Deliver | NeighborUp | NeighborDown | PeerData | Disconnect


@dataclass
class GossipStats:
    """Counters since construction; `Gossip.stats()` hands out a copy."""

    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    malformed_frames: int = 0  # did not decode: counted and ignored
    rejected_messages: int = 0  # decoded but invalid here (oversize, bad data, from ourselves)
    id_mismatches: int = 0  # a payload whose id was not its hash: never delivered
    broadcasts: int = 0
    delivered: int = 0
    duplicates: int = 0  # payload copies received after the first
    eager_pushes_sent: int = 0
    ihave_entries_sent: int = 0
    grafts_sent: int = 0
    prunes_sent: int = 0
    missing_dropped: int = 0  # announced messages given up on (no announcer left or table full)
    neighbor_up: int = 0
    neighbor_down: int = 0
    shuffles_sent: int = 0


class Effects:
    """The ordered output list both protocol halves append to, plus the counters."""

    __slots__ = ("outputs", "stats")

    def __init__(self) -> None:
        self.outputs: list[Output] = []
        self.stats = GossipStats()

    def send(self, peer: PeerId, frame: bytes) -> None:
        self.outputs.append(Send(peer, frame))
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(frame)

    def emit(self, output: Output) -> None:
        self.outputs.append(output)
