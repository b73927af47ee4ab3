"""The swarm links to every attached peer: what we tell them, what we hear.

Outgoing: INTERESTED and our BITFIELD when a download starts (and on every
new link), HAVE to peers interested in a file as its chunks verify,
HAVE_ALL / DONT_HAVE as files become whole or go away. Incoming messages
update the SwarmBook and, through the LocalView, the running downloads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from bisc.files.link import SwarmLink
from bisc.files.swarm import SwarmBook
from bisc.identity import EndpointId
from bisc.net.transport import Connection
from bisc.proto import transfer as tp


class LocalView(Protocol):
    """What the links need to know about our own files (the service)."""

    def chunk_count_of(self, file_hash: bytes) -> int | None:
        """None for a file we know nothing about."""
        ...

    def our_state(self, file_hash: bytes) -> tp.Message | None:
        """HAVE_ALL or our BITFIELD for a file, None if we have none of it."""
        ...

    def downloads(self) -> list[tuple[bytes, int, int]]:
        """(file hash, chunk count, verified chunks) of each running download."""
        ...

    def sync_source(self, file_hash: bytes, peer: EndpointId) -> None: ...

    def source_has(self, file_hash: bytes, peer: EndpointId, index: int) -> bool:
        """Pass a HAVE to a running download that uses `peer`; False if none does."""
        ...


def bitfield(file_hash: bytes, count: int, have: int) -> tp.Bitfield:
    return tp.Bitfield(file_hash, count, tp.mask_to_bits(have, count))


class SwarmLinks:
    def __init__(self, book: SwarmBook, local: LocalView) -> None:
        self._book = book
        self._local = local
        self._links: dict[EndpointId, SwarmLink] = {}

    def __iter__(self) -> Iterator[EndpointId]:
        return iter(list(self._links))

    def get(self, peer: EndpointId) -> SwarmLink | None:
        return self._links.get(peer)

    def connection(self, peer: EndpointId) -> Connection | None:
        link = self._links.get(peer)
        return None if link is None or link.conn.is_closed else link.conn

    def add(self, conn: Connection) -> SwarmLink:
        self.remove(conn.remote_id)
        link = SwarmLink(conn, lambda: self._snapshot(link))
        self._links[link.peer] = link
        link.start()
        return link

    def remove(self, peer: EndpointId) -> SwarmLink | None:
        link = self._links.pop(peer, None)
        if link is not None:
            link.close()
        return link

    def broadcast(self, msg: tp.Message) -> None:
        for link in self._links.values():
            link.send(msg)

    def tell_interested(self, file_hash: bytes, msg: tp.Message) -> None:
        for link in self._links.values():
            if file_hash in link.interested:
                link.send(msg)

    def download_started(self, file_hash: bytes, count: int, have: int) -> None:
        self.broadcast(tp.Interested(file_hash))
        self.broadcast(bitfield(file_hash, count, have))

    def on_message(self, peer: EndpointId, msg: tp.Message) -> None:
        """A message from `peer`'s swarm link; TransferError if it contradicts the file."""
        file_hash: bytes = getattr(msg, "file_hash", b"")
        count = self._local.chunk_count_of(file_hash)
        link = self._links.get(peer)
        if count is None or link is None:
            return  # a file we know nothing about: nothing to do with it
        if isinstance(msg, tp.Interested):
            link.interested.add(file_hash)
            if (reply := self._local.our_state(file_hash)) is not None:
                link.send(reply)
            return
        if isinstance(msg, tp.HaveAll):
            self._book.have_all(file_hash, peer)
        elif isinstance(msg, tp.Bitfield):
            self._book.bitfield(file_hash, peer, count, msg)
        elif isinstance(msg, tp.Have):
            self._book.have(file_hash, peer, count, msg.index)
            if self._local.source_has(file_hash, peer, msg.index):
                return
        elif isinstance(msg, tp.DontHave):
            link.interested.discard(file_hash)
            self._book.dont_have(file_hash, peer)
        self._local.sync_source(file_hash, peer)

    def _snapshot(self, link: SwarmLink) -> list[tp.Message]:
        """Everything a (re)started link should say: our downloads, our state for its."""
        messages: list[tp.Message] = []
        downloading = set()
        for file_hash, count, have in self._local.downloads():
            downloading.add(file_hash)
            messages += [tp.Interested(file_hash), bitfield(file_hash, count, have)]
        for file_hash in link.interested - downloading:
            if (state := self._local.our_state(file_hash)) is not None:
                messages.append(state)
        return messages
