"""Gossip for one topic: HyParView membership plus PlumTree broadcast, as a sans-IO state machine.

Inputs are method calls carrying the current time; outputs are collected and
handed out by `drain()`. Nothing here reads a clock, touches a socket or uses
global randomness, so a seeded `random.Random` and the same inputs always
give the same outputs.

    gossip = Gossip(me, GossipConfig(), random.Random(seed), peer_data=my_addresses)
    gossip.join([bootstrap_peer], now)
    for output in gossip.drain(): ...          # Send, Deliver, NeighborUp/Down, PeerData, Disconnect
    gossip.handle_message(peer, frame, now)    # a frame from a peer's control stream
    gossip.handle_disconnected(peer, now)      # the connection to peer failed
    if (t := gossip.poll_timeout()) is not None and now >= t: gossip.handle_timeout(now)

Contract with the runtime:
- Send(peer, data): deliver on the reliable, ordered link to peer, dialing it
  (with the latest PeerData) if there is none. Frames on one link must stay in
  order; the protocol relies on that to keep both ends of a link in agreement.
- handle_disconnected(peer): the link failed (timeout, reset, dial failure).
  Do not report links the runtime closed itself after a Disconnect output.
- Disconnect(peer): gossip no longer needs the link; close it once the queued
  Sends to that peer are out.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from bisc.proto.gossip_types import (
    Deliver,
    Disconnect,
    Effects,
    GossipConfig,
    GossipStats,
    NeighborDown,
    NeighborUp,
    Output,
    PeerData,
    Send,
)
from bisc.proto.gossip_wire import (
    MAX_PEER_ID_SIZE,
    DisconnectNotice,
    EagerPush,
    ForwardJoin,
    GossipError,
    Graft,
    IHave,
    JoinRequest,
    MessageId,
    NeighborReply,
    NeighborRequest,
    PeerId,
    Prune,
    ShuffleReply,
    ShuffleRequest,
    decode,
    encode,
)
from bisc.proto.hyparview import HyParView
from bisc.proto.plumtree import PlumTree

__all__ = [
    "Deliver",
    "Disconnect",
    "Gossip",
    "GossipConfig",
    "GossipError",
    "GossipStats",
    "MessageId",
    "NeighborDown",
    "NeighborUp",
    "Output",
    "PeerData",
    "PeerId",
    "Send",
]


class Gossip:
    """One node's membership in one gossip topic."""

    def __init__(self, me: PeerId, config: GossipConfig, rng: random.Random, peer_data: bytes = b"") -> None:
        if not 1 <= len(me) <= MAX_PEER_ID_SIZE:
            raise GossipError(f"peer id must be 1..{MAX_PEER_ID_SIZE} bytes")
        if len(peer_data) > config.max_peer_data_size:
            raise GossipError(f"peer_data of {len(peer_data)} bytes exceeds {config.max_peer_data_size}")
        self.me = me
        self.config = config
        self._effects = Effects()
        self._now = float("-inf")
        self._plumtree = PlumTree(me, config, self._effects)
        self._membership = HyParView(
            me, config, rng, peer_data, self._effects, self._neighbor_up, self._neighbor_down
        )

    # --- views -------------------------------------------------------------------------------------

    @property
    def active_view(self) -> list[PeerId]:
        return list(self._membership.active)

    @property
    def passive_view(self) -> list[PeerId]:
        return list(self._membership.passive)

    @property
    def eager_peers(self) -> list[PeerId]:
        return list(self._plumtree.eager)

    @property
    def lazy_peers(self) -> list[PeerId]:
        return list(self._plumtree.lazy)

    @property
    def has_left(self) -> bool:
        return self._membership.left

    def stats(self) -> GossipStats:
        return replace(self._effects.stats)

    def state_sizes(self) -> dict[str, int]:
        """How full every bounded structure is, for tests and diagnostics."""
        seen, cached, cached_bytes = self._plumtree.cache_sizes
        return {
            "active": len(self._membership.active),
            "passive": len(self._membership.passive),
            "pending": len(self._membership.pending),
            "seen": seen,
            "cached_payloads": cached,
            "cached_bytes": cached_bytes,
            "missing": self._plumtree.missing_count,
            "queued_ihaves": self._plumtree.queued_ihave_count,
            "queued_outputs": len(self._effects.outputs),
        }

    # --- commands ----------------------------------------------------------------------------------

    def join(self, bootstrap: Sequence[PeerId], now: float) -> None:
        """Ask every bootstrap peer at once to let us in (repeated later if we end up isolated)."""
        now = self._clock(now)
        self._check_live()
        self._membership.join(bootstrap, now)

    def broadcast(self, payload: bytes, now: float) -> MessageId:
        """Send `payload` to every member; returns its id. GossipError if it exceeds max_message_size."""
        now = self._clock(now)
        self._check_live()
        return self._plumtree.broadcast(payload, now)

    def leave(self, now: float) -> None:
        """Tell the active neighbours we are gone for good; the instance ignores all input after this."""
        now = self._clock(now)
        if not self._membership.left:
            self._membership.leave(now)

    # --- events ------------------------------------------------------------------------------------

    def handle_message(self, sender: PeerId, data: bytes, now: float) -> None:
        """A frame from `sender`. Malformed or invalid frames are counted in stats() and ignored."""
        now = self._clock(now)
        stats = self._effects.stats
        stats.frames_received += 1
        stats.bytes_received += len(data)
        if self._membership.left:
            return
        try:
            message = decode(data)
        except GossipError:
            stats.malformed_frames += 1
            return
        if sender == self.me or not 1 <= len(sender) <= MAX_PEER_ID_SIZE:
            stats.rejected_messages += 1
            return
        membership, plumtree = self._membership, self._plumtree
        match message:
            case EagerPush() | IHave() | Prune() if not plumtree.is_neighbor(sender):
                # Tree traffic from a peer that is not our neighbour: it still thinks the link is up
                # (our DisconnectNotice may be in flight). Take the payload, and tell it again.
                if isinstance(message, EagerPush):
                    plumtree.on_eager_push(sender, message, now)
                if sender not in membership.pending:
                    self._effects.send(sender, encode(DisconnectNotice(alive=True)))
            case EagerPush():
                plumtree.on_eager_push(sender, message, now)
            case IHave():
                plumtree.on_ihave(sender, message, now)
            case Graft():
                plumtree.on_graft(sender, message, now)
            case Prune():
                plumtree.on_prune(sender, now)
            case (
                JoinRequest()
                | NeighborRequest()
                | NeighborReply()
                | ShuffleRequest()
                | ShuffleReply()
                | ForwardJoin()
            ) if not self._valid_peer_data(message):
                stats.rejected_messages += 1
            case JoinRequest():
                membership.on_join(sender, message, now)
            case ForwardJoin():
                membership.on_forward_join(sender, message, now)
            case NeighborRequest():
                membership.on_neighbor_request(sender, message, now)
            case NeighborReply():
                membership.on_neighbor_reply(sender, message, now)
            case DisconnectNotice():
                membership.on_disconnect(sender, message, now)
            case ShuffleRequest():
                membership.on_shuffle(sender, message, now)
            case ShuffleReply():
                membership.on_shuffle_reply(sender, message, now)

    def handle_disconnected(self, peer: PeerId, now: float) -> None:
        """The runtime lost its link to `peer` (or could not dial it)."""
        now = self._clock(now)
        if not self._membership.left:
            self._membership.peer_failed(peer, now)

    def poll_timeout(self) -> float | None:
        """When handle_timeout wants to be called next, or None if no timer is running."""
        if self._membership.left:
            return None
        deadlines = [
            t for t in (self._membership.poll_timeout(), self._plumtree.poll_timeout()) if t is not None
        ]
        return min(deadlines, default=None)

    def handle_timeout(self, now: float) -> None:
        """Run every timer due at `now`; calling it early is harmless."""
        now = self._clock(now)
        if self._membership.left:
            return
        self._membership.on_timeout(now)
        self._plumtree.on_timeout(now)

    def drain(self) -> list[Output]:
        """Every output since the previous drain, in the order they happened."""
        outputs, self._effects.outputs = self._effects.outputs, []
        return outputs

    # --- internals -----------------------------------------------------------------------------

    def _neighbor_up(self, peer: PeerId, peer_asked: bool, now: float) -> None:
        self._effects.emit(NeighborUp(peer))
        self._plumtree.neighbor_up(peer, peer_asked, now)

    def _neighbor_down(self, peer: PeerId, now: float) -> None:
        self._plumtree.neighbor_down(peer, now)
        self._effects.emit(NeighborDown(peer))

    def _clock(self, now: float) -> float:
        # Caches age in arrival order; a clock that steps back must not reorder them.
        self._now = max(self._now, now)
        return self._now

    def _check_live(self) -> None:
        if self._membership.left:
            raise GossipError("this gossip instance has left its topic")

    def _valid_peer_data(
        self,
        message: JoinRequest | NeighborRequest | NeighborReply | ShuffleRequest | ShuffleReply | ForwardJoin,
    ) -> bool:
        limit = self.config.max_peer_data_size
        match message:
            case ShuffleRequest():
                return len(message.origin_data) <= limit and all(len(d) <= limit for _, d in message.entries)
            case ShuffleReply():
                return all(len(d) <= limit for _, d in message.entries)
            case ForwardJoin():
                return len(message.joiner_data) <= limit
            case _:
                return len(message.peer_data) <= limit
