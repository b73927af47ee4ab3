"""HyParView membership: a small symmetric active view and a larger passive view.

The active view holds the peers we keep links with and gossip over; the
passive view is a reserve of known peers to replace failed active ones, kept
fresh by periodic shuffles. Every active link is made by a request and a
reply (Join or Neighbor, then NeighborReply), and undone by a
DisconnectNotice or a failure, so both ends agree on it.

Invariants: active, passive and pending are disjoint and never contain us;
active <= active_view_size, passive <= passive_view_size,
pending <= active_view_size + max_bootstrap_peers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from bisc.proto.gossip_types import Disconnect, Effects, GossipConfig, PeerData
from bisc.proto.gossip_wire import (
    DisconnectNotice,
    ForwardJoin,
    JoinRequest,
    NeighborReply,
    NeighborRequest,
    PeerId,
    ShuffleReply,
    ShuffleRequest,
    encode,
)

NeighborUpCallback = Callable[[PeerId, bool, float], None]  # (peer, it asked for the link, now)
NeighborDownCallback = Callable[[PeerId, float], None]


class _Pending:
    """An outstanding Join or Neighbor request."""

    __slots__ = ("deadline", "high_priority")

    def __init__(self, deadline: float, high_priority: bool) -> None:
        self.deadline = deadline
        self.high_priority = high_priority


class HyParView:
    def __init__(
        self,
        me: PeerId,
        config: GossipConfig,
        rng: random.Random,
        peer_data: bytes,
        effects: Effects,
        on_neighbor_up: NeighborUpCallback,
        on_neighbor_down: NeighborDownCallback,
    ) -> None:
        self._me = me
        self._config = config
        self._rng = rng
        self._my_data = peer_data
        self._effects = effects
        self._on_up = on_neighbor_up
        self._on_down = on_neighbor_down
        # dicts, not sets: iteration order must not depend on hash randomisation
        self.active: dict[PeerId, None] = {}
        self.passive: dict[PeerId, None] = {}
        self.pending: dict[PeerId, _Pending] = {}
        self._peer_data: dict[PeerId, tuple[bytes, bool]] = {}  # peer -> (data, told by the peer itself)
        self._bootstrap: list[PeerId] = []
        self._shuffle_at: float | None = None
        self._refill_at: float | None = None
        self._shuffle_sent: list[PeerId] = []  # what our last shuffle offered, preferred for eviction
        self._shuffle_outstanding = False
        self._last_join_at = float("-inf")
        self._max_pending = config.active_view_size + config.max_bootstrap_peers
        self.left = False

    # --- commands from the application --------------------------------------------------------

    def join(self, bootstrap: Sequence[PeerId], now: float) -> None:
        for peer in bootstrap:
            if peer == self._me or peer in self._bootstrap:
                continue
            if len(self._bootstrap) >= self._config.max_bootstrap_peers:
                break
            self._bootstrap.append(peer)
        self._send_joins(now)
        self._arm_shuffle(now)

    def leave(self, now: float) -> None:
        frame = encode(DisconnectNotice(alive=False))
        for peer in list(self.active):
            self._effects.send(peer, frame)
            self._remove_active(peer, now)
            self._effects.emit(Disconnect(peer))
        self.passive.clear()
        self.pending.clear()
        self._peer_data.clear()
        self._shuffle_at = self._refill_at = None
        self.left = True

    def peer_failed(self, peer: PeerId, now: float) -> None:
        """The runtime lost (or could not make) the connection: forget the peer entirely."""
        self.pending.pop(peer, None)
        self.passive.pop(peer, None)
        if peer in self.active:
            self._remove_active(peer, now)
        self._forget_data(peer)
        self._refill(now)

    # --- messages ------------------------------------------------------------------------------

    def on_join(self, sender: PeerId, message: JoinRequest, now: float) -> None:
        newcomer = sender not in self.active
        self._add_active(sender, now, peer_asked=False)  # a newcomer has missed nothing it expects
        self._note_data(sender, message.peer_data, direct=True)
        self._reply(sender, accepted=True)
        if not newcomer:
            return  # a repeated Join (e.g. its reply was slow) must not start more walks
        walk = encode(ForwardJoin(sender, message.peer_data, self._config.active_random_walk_length))
        for peer in self.active:
            if peer != sender:
                self._effects.send(peer, walk)

    def on_forward_join(self, sender: PeerId, message: ForwardJoin, now: float) -> None:
        joiner = message.joiner
        if joiner == self._me:
            return
        ttl = min(message.ttl, self._config.active_random_walk_length)  # a peer cannot lengthen walks
        next_hop = self._random_active(exclude=(sender, joiner))
        if ttl == 0 or next_hop is None:
            if joiner in self.active or joiner in self.pending:
                return
            if len(self.pending) >= self._max_pending:
                self._add_passive(joiner)  # too many open requests (a flood of walks?): keep it in reserve
                self._note_data(joiner, message.joiner_data, direct=False)
                return
            self.passive.pop(joiner, None)
            self._request_neighbor(joiner, message.joiner_data, high_priority=True, now=now)
            return
        if ttl == self._config.passive_random_walk_length:
            self._add_passive(joiner)
            self._note_data(joiner, message.joiner_data, direct=False)
            self._want_refill(now)
        self._effects.send(next_hop, encode(ForwardJoin(joiner, message.joiner_data, ttl - 1)))

    def on_neighbor_request(self, sender: PeerId, message: NeighborRequest, now: float) -> None:
        accept = (
            sender in self.active or message.high_priority or len(self.active) < self._config.active_view_size
        )
        if accept:
            self._add_active(sender, now, peer_asked=True)
        else:
            self._add_passive(sender)
        self._note_data(sender, message.peer_data, direct=True)
        self._reply(sender, accepted=accept)

    def on_neighbor_reply(self, sender: PeerId, message: NeighborReply, now: float) -> None:
        requested = self.pending.pop(sender, None) is not None
        if message.accepted and sender not in self.active:
            if requested or len(self.active) < self._config.active_view_size:
                self._add_active(sender, now, peer_asked=False)
            else:
                # We gave up on this request and filled up meanwhile: undo the peer's half of the link.
                self._effects.send(sender, encode(DisconnectNotice(alive=True)))
                self._add_passive(sender)
        elif not message.accepted and sender not in self.active:
            self._add_passive(sender)
        self._note_data(sender, message.peer_data, direct=True)
        # A rejection is retried by the refill timer, not at once: in a network of full views an
        # immediate retry would spin through the passive view at the speed of round trips.
        self._want_refill(now)

    def on_disconnect(self, sender: PeerId, message: DisconnectNotice, now: float) -> None:
        self.pending.pop(sender, None)
        was_active = sender in self.active
        if was_active:
            self._remove_active(sender, now)
            self._effects.emit(Disconnect(sender))
        if message.alive:
            if was_active:
                self._add_passive(sender)
        else:
            self.passive.pop(sender, None)
            self._forget_data(sender)
        self._refill(now)

    def on_shuffle(self, sender: PeerId, message: ShuffleRequest, now: float) -> None:
        origin = message.origin
        if origin == self._me:
            return
        ttl = min(message.ttl, self._config.shuffle_random_walk_length)
        next_hop = self._random_active(exclude=(sender, origin))
        if ttl > 0 and next_hop is not None:
            forwarded = ShuffleRequest(origin, message.origin_data, ttl - 1, message.entries)
            self._effects.send(next_hop, encode(forwarded))
            return
        # End of the walk: answer the origin directly with as many of our passive peers.
        our_sample_size = self._config.shuffle_active_count + self._config.shuffle_passive_count + 1
        count = min(len(self.passive), len(message.entries) + 1, our_sample_size)
        offered = self._rng.sample(list(self.passive), count)
        reply = ShuffleReply(tuple((peer, self._data_of(peer)) for peer in offered))
        if self._valid_data(message.origin_data):
            self._effects.emit(PeerData(origin, message.origin_data))
        self._effects.send(origin, encode(reply))
        self._integrate(((origin, message.origin_data), *message.entries), prefer_evict=offered)
        self._want_refill(now)

    def on_shuffle_reply(self, sender: PeerId, message: ShuffleReply, now: float) -> None:
        if not self._shuffle_outstanding:
            return  # unsolicited: ignore rather than let a peer rewrite our passive view
        self._shuffle_outstanding = False
        self._integrate(message.entries, prefer_evict=self._shuffle_sent)
        self._want_refill(now)

    # --- timers --------------------------------------------------------------------------------

    def poll_timeout(self) -> float | None:
        deadlines = [p.deadline for p in self.pending.values()]
        deadlines += [t for t in (self._shuffle_at, self._refill_at) if t is not None]
        return min(deadlines, default=None)

    def on_timeout(self, now: float) -> None:
        if self.left:
            return
        expired = [peer for peer, p in self.pending.items() if p.deadline <= now]
        for peer in expired:  # no answer: as good as failed
            del self.pending[peer]
            self._forget_data(peer)
        if self._shuffle_at is not None and self._shuffle_at <= now:
            self._shuffle(now)
            self._shuffle_at = now + self._next_shuffle_delay()
        if expired or (self._refill_at is not None and self._refill_at <= now):
            self._refill_at = None
            self._refill(now)

    # --- internals -----------------------------------------------------------------------------

    def _arm_shuffle(self, now: float) -> None:
        if self._shuffle_at is None:
            self._shuffle_at = now + self._next_shuffle_delay()

    def _next_shuffle_delay(self) -> float:
        jitter = self._config.shuffle_jitter
        return self._config.shuffle_interval + self._rng.uniform(-jitter, jitter)

    def _send_joins(self, now: float) -> None:
        self._last_join_at = now
        frame = encode(JoinRequest(self._my_data))
        deadline = now + self._config.neighbor_request_timeout
        for peer in self._bootstrap:
            if peer not in self.active and peer not in self.pending:
                self.passive.pop(peer, None)
                self.pending[peer] = _Pending(deadline, high_priority=True)
                self._effects.send(peer, frame)

    def _reply(self, peer: PeerId, accepted: bool) -> None:
        self._effects.send(peer, encode(NeighborReply(accepted, self._my_data)))

    def _request_neighbor(self, peer: PeerId, data: bytes, high_priority: bool, now: float) -> None:
        self.pending[peer] = _Pending(now + self._config.neighbor_request_timeout, high_priority)
        self._note_data(peer, data, direct=False)
        known = self._data_of(peer)
        if known:
            self._effects.emit(PeerData(peer, known))  # the runtime may need to dial it
        self._effects.send(peer, encode(NeighborRequest(high_priority, self._my_data)))

    def _refill(self, now: float) -> None:
        """Ask passive peers to fill the active view; a node with no neighbours asks with priority."""
        if self.left:
            return
        while len(self.active) + len(self.pending) < self._config.active_view_size and self.passive:
            peer = self._rng.choice(list(self.passive))
            del self.passive[peer]
            high = not self.active and not any(p.high_priority for p in self.pending.values())
            self._request_neighbor(peer, self._data_of(peer), high, now)
        rejoin_due = now >= self._last_join_at + self._config.neighbor_request_timeout
        if not self.active and not self.pending and self._bootstrap and rejoin_due:
            self._send_joins(now)  # isolated with nothing in reserve: start over, at a bounded rate
        self._want_refill(now)

    def _want_refill(self, now: float) -> None:
        """Arm the refill timer if the active view has room and there is someone to ask."""
        if self.left or self._refill_at is not None:
            return
        room = len(self.active) + len(self.pending) < self._config.active_view_size
        isolated = not self.active and not self.pending and bool(self._bootstrap)
        if (room and self.passive) or isolated:
            self._refill_at = now + self._config.refill_interval

    def _add_active(self, peer: PeerId, now: float, peer_asked: bool) -> None:
        if peer == self._me or peer in self.active:
            return
        self.pending.pop(peer, None)
        self.passive.pop(peer, None)
        while len(self.active) >= self._config.active_view_size:
            evicted = self._rng.choice(list(self.active))
            self._effects.send(evicted, encode(DisconnectNotice(alive=True)))
            self._remove_active(evicted, now)
            self._effects.emit(Disconnect(evicted))
            self._add_passive(evicted)
        self.active[peer] = None
        self._effects.stats.neighbor_up += 1
        self._on_up(peer, peer_asked, now)
        if self._shuffle_at is None:
            self._arm_shuffle(now)

    def _remove_active(self, peer: PeerId, now: float) -> None:
        del self.active[peer]
        self._effects.stats.neighbor_down += 1
        self._on_down(peer, now)
        self._want_refill(now)

    def _add_passive(self, peer: PeerId, prefer_evict: Sequence[PeerId] = ()) -> None:
        if peer == self._me or peer in self.active or peer in self.passive or peer in self.pending:
            return
        if len(self.passive) >= self._config.passive_view_size:
            candidates = [p for p in prefer_evict if p in self.passive] or list(self.passive)
            evicted = self._rng.choice(candidates)
            del self.passive[evicted]
            self._forget_data(evicted)
        self.passive[peer] = None

    def _integrate(self, entries: Sequence[tuple[PeerId, bytes]], prefer_evict: Sequence[PeerId]) -> None:
        for peer, data in entries[: self._config.passive_view_size]:
            self._add_passive(peer, prefer_evict)
            self._note_data(peer, data, direct=False)

    def _shuffle(self, now: float) -> None:
        target = self._random_active(exclude=())
        if target is None:
            return
        others = [p for p in self.active if p != target]
        sample = self._rng.sample(others, min(len(others), self._config.shuffle_active_count))
        passive = list(self.passive)
        sample += self._rng.sample(passive, min(len(passive), self._config.shuffle_passive_count))
        entries = tuple((peer, self._data_of(peer)) for peer in sample)
        ttl = self._config.shuffle_random_walk_length
        self._effects.send(target, encode(ShuffleRequest(self._me, self._my_data, ttl, entries)))
        self._effects.stats.shuffles_sent += 1
        self._shuffle_sent = sample
        self._shuffle_outstanding = True

    def _random_active(self, exclude: Sequence[PeerId]) -> PeerId | None:
        candidates = [p for p in self.active if p not in exclude]
        return self._rng.choice(candidates) if candidates else None

    def _valid_data(self, data: bytes) -> bool:
        return len(data) <= self._config.max_peer_data_size

    def _note_data(self, peer: PeerId, data: bytes, direct: bool) -> None:
        """Remember how to reach a peer in our views; what a peer says of itself beats hearsay."""
        if not data or not self._valid_data(data):
            return
        if peer not in self.active and peer not in self.passive and peer not in self.pending:
            return
        known = self._peer_data.get(peer)
        if known is not None and known[1] and not direct:
            return
        self._peer_data[peer] = (data, direct)
        if known is None or known[0] != data:
            self._effects.emit(PeerData(peer, data))

    def _data_of(self, peer: PeerId) -> bytes:
        known = self._peer_data.get(peer)
        return known[0] if known is not None else b""

    def _forget_data(self, peer: PeerId) -> None:
        if peer not in self.active and peer not in self.passive and peer not in self.pending:
            self._peer_data.pop(peer, None)
