"""PlumTree broadcast over the HyParView active view.

Each active neighbour is either eager (gets every payload at once) or lazy
(gets only the id, batched into IHave frames). Links start eager; a duplicate
payload prunes its link to lazy, so the eager links settle into a spanning
tree. A node that hears of an id (IHave) without receiving the payload within
graft_timeout grafts the announcer: it asks for the payload and makes that
link eager again, which repairs the tree around failed nodes.

A node that asks for a new neighbour (to replace a lost one) is sent an
IHave of the payloads that neighbour received in the last recent_ihave_window
seconds, so a node cut off while a message spread still learns of it.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

from bisc.proto.gossip_types import Deliver, Effects, GossipConfig
from bisc.proto.gossip_wire import (
    MAX_HOPS,
    EagerPush,
    GossipError,
    Graft,
    IHave,
    MessageId,
    PeerId,
    Prune,
    encode,
    encode_eager_push,
    message_id,
)

# Our own Grafts name at most one id; serving more than this per frame would let one small
# frame make us send megabytes.
MAX_GRAFT_IDS_SERVED = 16


class _Seen:
    __slots__ = ("from_peer", "hops", "time")

    def __init__(self, time: float, hops: int, from_peer: PeerId | None) -> None:
        self.time = time
        self.hops = hops
        self.from_peer = from_peer  # None for our own broadcasts


class _Cached:
    __slots__ = ("hops", "payload", "time")

    def __init__(self, time: float, hops: int, payload: bytes) -> None:
        self.time = time
        self.hops = hops
        self.payload = payload


class _Missing:
    """An id announced to us whose payload has not arrived."""

    __slots__ = ("announcers", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.announcers: list[PeerId] = []


class PlumTree:
    def __init__(self, me: PeerId, config: GossipConfig, effects: Effects) -> None:
        self._me = me
        self._config = config
        self._effects = effects
        self.eager: dict[PeerId, None] = {}
        self.lazy: dict[PeerId, None] = {}
        self._seen: OrderedDict[MessageId, _Seen] = OrderedDict()  # arrival order = time order
        self._cache: OrderedDict[MessageId, _Cached] = OrderedDict()
        self._cache_bytes = 0
        self._missing: dict[MessageId, _Missing] = {}
        self._graft_timers: list[tuple[float, int, MessageId]] = []  # heap; stale entries skipped
        self._timer_seq = 0
        self._lazy_queue: dict[PeerId, list[tuple[MessageId, int]]] = {}
        self._flush_at: float | None = None

    def is_neighbor(self, peer: PeerId) -> bool:
        return peer in self.eager or peer in self.lazy

    @property
    def missing_count(self) -> int:
        return len(self._missing)

    @property
    def queued_ihave_count(self) -> int:
        return sum(len(q) for q in self._lazy_queue.values())

    @property
    def cache_sizes(self) -> tuple[int, int, int]:
        """(ids remembered, payloads cached, payload bytes cached)."""
        return len(self._seen), len(self._cache), self._cache_bytes

    # --- neighbours ------------------------------------------------------------------------------

    def neighbor_up(self, peer: PeerId, catch_up: bool, now: float) -> None:
        """A new neighbour starts eager. With `catch_up` (it asked for the link to replace one it lost,
        so it may have been cut off) it is also told of the payloads we received recently."""
        self.lazy.pop(peer, None)
        self.eager[peer] = None
        if not catch_up:
            return
        horizon = now - self._config.recent_ihave_window
        recent: list[tuple[MessageId, int]] = []
        for msg_id in reversed(self._cache):
            cached = self._cache[msg_id]
            if cached.time < horizon or len(recent) >= self._config.ihave_batch_max:
                break
            recent.append((msg_id, min(cached.hops + 1, MAX_HOPS)))
        for msg_id, hops in reversed(recent):
            self._queue_ihave(peer, msg_id, hops, now)

    def neighbor_down(self, peer: PeerId, now: float) -> None:
        self.eager.pop(peer, None)
        self.lazy.pop(peer, None)
        self._lazy_queue.pop(peer, None)

    # --- broadcast and messages --------------------------------------------------------------------

    def broadcast(self, payload: bytes, now: float) -> MessageId:
        if len(payload) > self._config.max_message_size:
            raise GossipError(f"payload of {len(payload)} bytes exceeds {self._config.max_message_size}")
        msg_id = message_id(payload)
        self._expire(now)
        if msg_id in self._seen:
            return msg_id  # the same payload again is the same message
        self._effects.stats.broadcasts += 1
        self._accept(msg_id, payload, 0, None, now)
        return msg_id

    def on_eager_push(self, sender: PeerId, message: EagerPush, now: float) -> None:
        stats = self._effects.stats
        if len(message.payload) > self._config.max_message_size:
            stats.rejected_messages += 1
            return
        if message_id(message.payload) != message.msg_id:
            stats.id_mismatches += 1
            return
        self._expire(now)
        if message.msg_id in self._seen:
            stats.duplicates += 1
            if sender in self.eager:  # a second tree path to us: keep only announcements on it
                self._make_lazy(sender)
                self._effects.send(sender, encode(Prune()))
                stats.prunes_sent += 1
            return
        if sender in self.lazy:
            self._make_eager(sender)  # it pushed (e.g. answering our Graft), so the link is a tree edge
        stats.delivered += 1
        self._effects.emit(Deliver(message.msg_id, message.payload, message.hops, sender))
        self._accept(message.msg_id, message.payload, message.hops, sender, now)

    def on_ihave(self, sender: PeerId, message: IHave, now: float) -> None:
        if not self.is_neighbor(sender):
            return
        self._expire(now)
        for msg_id, hops in message.entries:
            seen = self._seen.get(msg_id)
            if seen is not None:
                self._maybe_shorten(sender, seen, hops)
                continue
            missing = self._missing.get(msg_id)
            if missing is None:
                if len(self._missing) >= self._config.max_missing_messages:
                    self._effects.stats.missing_dropped += 1
                    continue
                missing = self._missing[msg_id] = _Missing(now + self._config.graft_timeout)
                self._push_timer(missing.deadline, msg_id)
            if sender not in missing.announcers and (
                len(missing.announcers) < self._config.max_announcers_per_message
            ):
                missing.announcers.append(sender)

    def on_graft(self, sender: PeerId, message: Graft, now: float) -> None:
        if self.is_neighbor(sender):
            self._make_eager(sender)
        self._expire(now)
        for msg_id in message.msg_ids[:MAX_GRAFT_IDS_SERVED]:
            cached = self._cache.get(msg_id)
            if cached is not None:
                frame = encode_eager_push(msg_id, min(cached.hops + 1, MAX_HOPS), cached.payload)
                self._effects.send(sender, frame)
                self._effects.stats.eager_pushes_sent += 1

    def on_prune(self, sender: PeerId, now: float) -> None:
        if sender in self.eager:
            self._make_lazy(sender)

    # --- timers ------------------------------------------------------------------------------------

    def poll_timeout(self) -> float | None:
        timers = self._graft_timers
        while timers and self._stale(timers[0]):
            heapq.heappop(timers)
        deadlines = [t for t in (self._flush_at, timers[0][0] if timers else None) if t is not None]
        return min(deadlines, default=None)

    def on_timeout(self, now: float) -> None:
        self._expire(now)
        if self._flush_at is not None and self._flush_at <= now:
            self._flush_at = None
            for peer in list(self._lazy_queue):
                self._flush_ihave(peer)
        while self._graft_timers and self._graft_timers[0][0] <= now:  # (_push_timer may replace the list)
            entry = heapq.heappop(self._graft_timers)
            if not self._stale(entry):
                self._graft_next(entry[2], now)

    # --- internals -----------------------------------------------------------------------------

    def _accept(
        self, msg_id: MessageId, payload: bytes, hops: int, sender: PeerId | None, now: float
    ) -> None:
        """Remember a new message, then push it on eagerly and announce it lazily."""
        self._seen[msg_id] = _Seen(now, hops, sender)
        self._cache[msg_id] = _Cached(now, hops, payload)
        self._cache_bytes += len(payload)
        self._missing.pop(msg_id, None)
        self._expire(now)
        next_hops = min(hops + 1, MAX_HOPS)
        targets = [peer for peer in self.eager if peer != sender]
        if targets:
            frame = encode_eager_push(msg_id, next_hops, payload)
            for peer in targets:
                self._effects.send(peer, frame)
            self._effects.stats.eager_pushes_sent += len(targets)
        for peer in self.lazy:
            if peer != sender:
                self._queue_ihave(peer, msg_id, next_hops, now)

    def _graft_next(self, msg_id: MessageId, now: float) -> None:
        """The payload is late: ask the next announcer still connected to us for it."""
        missing = self._missing[msg_id]
        while missing.announcers:
            announcer = missing.announcers.pop(0)
            if self.is_neighbor(announcer):
                self._make_eager(announcer)
                self._effects.send(announcer, encode(Graft((msg_id,))))
                self._effects.stats.grafts_sent += 1
                break
        if missing.announcers:
            missing.deadline = now + self._config.graft_retry_timeout
            self._push_timer(missing.deadline, msg_id)
        else:
            # Nobody else to ask for now; a later IHave starts a new entry.
            del self._missing[msg_id]
            self._effects.stats.missing_dropped += 1

    def _maybe_shorten(self, announcer: PeerId, seen: _Seen, hops: int) -> None:
        """PlumTree's optimisation: if a lazy link offers a much shorter path, swap it into the tree."""
        if hops + self._config.optimization_threshold >= seen.hops or announcer not in self.lazy:
            return
        seen.hops = hops  # swap once per message, not once per announcement
        self._make_eager(announcer)
        self._effects.send(announcer, encode(Graft(())))
        self._effects.stats.grafts_sent += 1
        parent = seen.from_peer
        if parent is not None and parent in self.eager and parent != announcer:
            self._make_lazy(parent)
            self._effects.send(parent, encode(Prune()))
            self._effects.stats.prunes_sent += 1

    def _queue_ihave(self, peer: PeerId, msg_id: MessageId, hops: int, now: float) -> None:
        queue = self._lazy_queue.setdefault(peer, [])
        queue.append((msg_id, hops))
        if len(queue) >= self._config.ihave_batch_max:
            self._flush_ihave(peer)
        elif self._flush_at is None:
            self._flush_at = now + self._config.ihave_interval

    def _flush_ihave(self, peer: PeerId) -> None:
        entries = self._lazy_queue.pop(peer, None)
        if entries and self.is_neighbor(peer):
            self._effects.send(peer, encode(IHave(tuple(entries))))
            self._effects.stats.ihave_entries_sent += len(entries)

    def _make_eager(self, peer: PeerId) -> None:
        self.lazy.pop(peer, None)
        self.eager[peer] = None

    def _make_lazy(self, peer: PeerId) -> None:
        self.eager.pop(peer, None)
        self.lazy[peer] = None

    def _push_timer(self, deadline: float, msg_id: MessageId) -> None:
        self._timer_seq += 1
        heapq.heappush(self._graft_timers, (deadline, self._timer_seq, msg_id))
        if len(self._graft_timers) > 4 * self._config.max_missing_messages:
            # Stale entries (their message arrived) pile up under a flood: keep only live ones.
            self._graft_timers = [entry for entry in self._graft_timers if not self._stale(entry)]
            heapq.heapify(self._graft_timers)

    def _stale(self, entry: tuple[float, int, MessageId]) -> bool:
        missing = self._missing.get(entry[2])
        return missing is None or missing.deadline != entry[0]

    def _expire(self, now: float) -> None:
        """Drop ids and payloads past their age or over their bounds (oldest first)."""
        config = self._config
        seen = self._seen
        while seen and (
            len(seen) > config.seen_max or next(iter(seen.values())).time + config.seen_ttl <= now
        ):
            seen.popitem(last=False)
        cache = self._cache
        while cache:
            oldest = next(iter(cache.values()))
            over = self._cache_bytes > config.payload_cache_max_bytes or len(cache) > config.seen_max
            if not over and oldest.time + config.payload_cache_ttl > now:
                break
            cache.popitem(last=False)
            self._cache_bytes -= len(oldest.payload)
