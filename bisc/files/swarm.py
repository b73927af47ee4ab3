"""Who has what: whole-file holders and partial bitfields, per file and peer.

Sans-IO bookkeeping for the file service. Holders come from FileAnnounces
(`learn`) and HAVE_ALL; partial bitfields from BITFIELD and HAVE on swarm
links, and are dropped with the link (the peer sends them again when it
reconnects). Only files the service knows about are tracked, so a peer
cannot make us store bitfields for arbitrary hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

from bisc.identity import EndpointId
from bisc.proto import transfer as tp

MAX_KNOWN_FILES = 100_000  # files learned from announces; further ones are ignored


@dataclass(frozen=True)
class FileInfo:
    file_hash: bytes
    name: str
    size: int
    chunk_count: int


class SwarmBook:
    def __init__(self) -> None:
        self.known: dict[bytes, FileInfo] = {}
        self._holders: dict[bytes, set[EndpointId]] = {}
        self._partials: dict[bytes, dict[EndpointId, int]] = {}

    def learn(self, info: FileInfo, peer: EndpointId) -> bool:
        """`peer` announced it has the whole file; False if ignored."""
        known = self.known.get(info.file_hash)
        if known is None:
            if len(self.known) >= MAX_KNOWN_FILES:
                return False
            self.known[info.file_hash] = info
        elif (known.size, known.chunk_count) != (info.size, info.chunk_count):
            return False  # the hash covers the size: one of the two announces is false
        self._holders.setdefault(info.file_hash, set()).add(peer)
        return True

    def has_sources(self, file_hash: bytes) -> bool:
        return bool(self._holders.get(file_hash) or self._partials.get(file_hash))

    def source_bits(self, file_hash: bytes, peer: EndpointId) -> tuple[bool, int | None]:
        """(whether `peer` has any of the file, its chunks or None for all)."""
        if peer in self._holders.get(file_hash, ()):
            return True, None
        bits = self._partials.get(file_hash, {}).get(peer)
        return (bits is not None and bits != 0), bits

    def holders(self, file_hash: bytes, chunk_count: int) -> frozenset[EndpointId]:
        full = (1 << chunk_count) - 1
        partial = {p for p, bits in self._partials.get(file_hash, {}).items() if bits == full}
        return frozenset(self._holders.get(file_hash, set()) | partial)

    def have_all(self, file_hash: bytes, peer: EndpointId) -> None:
        self._holders.setdefault(file_hash, set()).add(peer)
        self._drop_partial(file_hash, peer)

    def bitfield(self, file_hash: bytes, peer: EndpointId, chunk_count: int, msg: tp.Bitfield) -> None:
        if msg.chunk_count != chunk_count:
            raise tp.TransferError(f"bitfield of {msg.chunk_count} chunks for a file of {chunk_count}")
        bits = tp.bits_to_mask(msg.bits)
        if bits == (1 << chunk_count) - 1:
            self.have_all(file_hash, peer)
        else:
            self._partials.setdefault(file_hash, {})[peer] = bits

    def have(self, file_hash: bytes, peer: EndpointId, chunk_count: int, index: int) -> None:
        if index >= chunk_count:
            raise tp.TransferError(f"HAVE of chunk {index} in a file of {chunk_count} chunks")
        if peer in self._holders.get(file_hash, ()):
            return
        partials = self._partials.setdefault(file_hash, {})
        partials[peer] = partials.get(peer, 0) | (1 << index)

    def dont_have(self, file_hash: bytes, peer: EndpointId) -> None:
        holders = self._holders.get(file_hash)
        if holders is not None:
            holders.discard(peer)
            if not holders:
                del self._holders[file_hash]
        self._drop_partial(file_hash, peer)

    def unlinked(self, peer: EndpointId) -> None:
        """The swarm link to `peer` is gone: its partial bitfields are stale."""
        for file_hash in list(self._partials):
            self._drop_partial(file_hash, peer)

    def forget_peer(self, peer: EndpointId) -> None:
        self.unlinked(peer)
        for file_hash in list(self._holders):
            self.dont_have(file_hash, peer)

    def _drop_partial(self, file_hash: bytes, peer: EndpointId) -> None:
        partials = self._partials.get(file_hash)
        if partials is not None:
            partials.pop(peer, None)
            if not partials:
                del self._partials[file_hash]
