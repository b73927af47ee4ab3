"""Which chunk to ask which peer for next: rarest first, ties random.

Sans-IO: no clock, no I/O, randomness from the injected `random.Random`.
Chunk sets are Python ints used as bitmasks (bit i = chunk i), so set
operations over even a 1 TiB file's 4 Mi chunks run in C, not in a loop.

Rarity counts only peers with a partial copy: a peer with the whole file
adds one to every chunk, which does not change which chunk is rarest.
Levels are capped at MAX_LEVELS partial holders; beyond that chunks count
as equally common.
"""

from __future__ import annotations

import random
from collections.abc import Hashable

MAX_LEVELS = 4

Peer = Hashable


class ChunkPicker:
    def __init__(self, count: int, have: int, rng: random.Random) -> None:
        self.count = count
        self._full = (1 << count) - 1
        self.have = have & self._full
        self._rng = rng
        self._in_flight = 0
        self._owner: dict[int, Peer] = {}  # chunk -> the peer it was asked from
        self._peers: dict[Peer, int | None] = {}  # None: the peer has every chunk
        self._levels: list[int] | None = None  # _levels[k]: chunks at least k+1 partial peers hold

    # -- state ---------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return self.have == self._full

    @property
    def missing(self) -> int:
        """Chunks not verified yet (in flight or not)."""
        return self._full & ~self.have

    def in_flight(self, peer: Peer) -> list[int]:
        return [i for i, p in self._owner.items() if p == peer]

    def peers(self) -> list[Peer]:
        return list(self._peers)

    def has_peer(self, peer: Peer) -> bool:
        return peer in self._peers

    def offers(self, peer: Peer) -> bool:
        """Whether `peer` holds a chunk we still need that nobody is fetching."""
        bits = self._peers.get(peer, 0)
        avail = self._full & ~self.have & ~self._in_flight
        return bool(avail if bits is None else avail & bits)

    # -- peers ---------------------------------------------------------------
    def set_peer(self, peer: Peer, bits: int | None) -> None:
        """`peer` holds `bits` (None: the whole file)."""
        self._peers[peer] = None if bits is None or bits & self._full == self._full else bits & self._full
        self._levels = None

    def peer_has(self, peer: Peer, index: int) -> None:
        """A HAVE from `peer` (ignored for unknown peers and bad indices)."""
        bits = self._peers.get(peer, 0)
        if bits is None or peer not in self._peers or not 0 <= index < self.count:
            return
        bit = 1 << index
        if bits & bit:
            return
        bits |= bit
        self._peers[peer] = None if bits == self._full else bits
        if self._levels is not None:
            for k, level in enumerate(self._levels):
                if not level & bit:
                    self._levels[k] = level | bit
                    break

    def peer_lacks(self, peer: Peer, index: int) -> None:
        """`peer` said it does not have chunk `index` after all."""
        if peer not in self._peers or not 0 <= index < self.count:
            return
        bits = self._peers[peer]
        self._peers[peer] = (self._full if bits is None else bits) & ~(1 << index)
        self._levels = None

    def remove_peer(self, peer: Peer) -> list[int]:
        """Forget `peer`; its chunks in flight go back to the pool (returned)."""
        self._peers.pop(peer, None)
        self._levels = None
        released = self.in_flight(peer)
        for index in released:
            self.release(index)
        return released

    # -- chunks --------------------------------------------------------------
    def pick(self, peer: Peer, limit: int) -> list[int]:
        """Up to `limit` chunks to ask `peer` for, marked in flight to it."""
        if peer not in self._peers or limit <= 0:
            return []
        bits = self._peers[peer]
        avail = self._full & ~self.have & ~self._in_flight
        if bits is not None:
            avail &= bits
        picked: list[int] = []
        levels = self._rarity()
        while avail and len(picked) < limit:
            rest = avail
            for level in levels:
                candidates = rest & ~level
                if candidates:
                    break
                rest &= level
            else:
                candidates = rest
            index = self._random_bit(candidates)
            bit = 1 << index
            avail &= ~bit
            self._in_flight |= bit
            self._owner[index] = peer
            picked.append(index)
        return picked

    def release(self, index: int, peer: Peer | None = None) -> None:
        """A request for `index` (to `peer`, if given) failed: someone may be asked again."""
        if peer is not None and self._owner.get(index) != peer:
            return  # given up on already, maybe asked from someone else since
        self._in_flight &= ~(1 << index)
        self._owner.pop(index, None)

    def done(self, index: int) -> bool:
        """Chunk `index` arrived and verified; False if it was already."""
        self.release(index)
        bit = 1 << index
        if self.have & bit:
            return False
        self.have |= bit
        return True

    def lose(self, index: int) -> None:
        """A chunk thought verified turned out bad on disk: fetch it again."""
        self.release(index)
        self.have &= ~(1 << index)

    # -- internals -----------------------------------------------------------
    def _rarity(self) -> list[int]:
        if self._levels is None:
            levels = [0] * MAX_LEVELS
            for bits in self._peers.values():
                if bits is None:
                    continue
                # Bit-sliced counting: a chunk climbs one level per partial holder.
                for k in range(MAX_LEVELS - 1, 0, -1):
                    levels[k] |= levels[k - 1] & bits
                levels[0] |= bits
            self._levels = levels
        return self._levels

    def _random_bit(self, mask: int) -> int:
        """A set bit of `mask`: the first at or after a random position, wrapping."""
        start = self._rng.randrange(self.count)
        high = mask >> start
        if high:
            return start + (high & -high).bit_length() - 1
        return (mask & -mask).bit_length() - 1
