"""FileService: sharing and downloading files within one channel.

Transport-agnostic: it works with any bisc.net.transport.Connection the
channel admitted. Per connection it installs a stream handler (the server)
and opens one swarm link; each download opens one request stream per
source. State
that must survive a restart (what we share, downloads and their verified
chunks) lives in sqlite; who has what is learned again from announces and
swarm links.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bisc.codec import chunkhash
from bisc.codec.chunkhash import HASH_SIZE
from bisc.errors import BiscError
from bisc.files.catalog import COMPLETE, DOWNLOADING, SHARED, Catalog, CatalogError, FileRow
from bisc.files.download import CANCELLED, Download
from bisc.files.events import DownloadComplete, DownloadFailed, FileEvent, FileWithdrawn
from bisc.files.fetcher import Fetcher
from bisc.files.hashing import Progress
from bisc.files.link import SwarmLink
from bisc.files.links import SwarmLinks, bitfield
from bisc.files.names import sanitize_name
from bisc.files.partfile import PartFile
from bisc.files.server import ChunkServer, ServedFile, served_from_row
from bisc.files.sharing import FileTooLargeError, hash_for_sharing
from bisc.files.swarm import FileInfo, SwarmBook
from bisc.identity import EndpointId
from bisc.net.transport import Connection, Stream
from bisc.proto import transfer as tp

__all__ = ["CatalogEntry", "FileInfo", "FileService", "FileTooLargeError", "UnknownFileError"]

log = logging.getLogger(__name__)

DEFAULT_IN_FLIGHT = 8  # chunks requested from one peer at a time
MAX_IN_FLIGHT = 64
IO_THREADS = 4


class UnknownFileError(BiscError, KeyError):
    """No peer is known to have this file."""


@dataclass(frozen=True)
class CatalogEntry:
    file_hash: bytes
    name: str
    size: int
    chunk_count: int
    holders: frozenset[EndpointId]  # peers known to have the whole file
    state: str | None  # "shared" / "downloading" / "complete" / None (only announced)
    path: Path | None  # shared or complete: the file; downloading: its part file


class FileService:
    def __init__(
        self,
        *,
        me: EndpointId,
        db_path: Path,
        storage_dir: Path,
        emit: Callable[[FileEvent], None],
        hasher_threads: int = 0,
        rng: random.Random | None = None,
        max_in_flight: int = DEFAULT_IN_FLIGHT,
    ) -> None:
        self.me = me
        self.storage_dir = Path(storage_dir)
        self.hasher_threads = hasher_threads
        self.rng = rng or random.Random()
        self.max_in_flight = max(1, min(max_in_flight, MAX_IN_FLIGHT))
        self.served: Counter[EndpointId] = Counter()  # chunks served, per peer
        self._emit = emit
        self._catalog = Catalog(Path(db_path))
        self._rows: dict[bytes, FileRow] = {}
        self._book = SwarmBook()
        self._links = SwarmLinks(self._book, self)
        self._handles: dict[bytes, Download] = {}
        self._fetchers: dict[bytes, Fetcher] = {}
        self._server = ChunkServer(self)
        self._executor = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="bisc-files")
        self._tasks: set[asyncio.Task[None]] = set()
        self._state = "new"

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Open the catalog and resume unfinished downloads (they wait for sources)."""
        if self._state != "new":
            raise BiscError("a FileService starts once")
        self._catalog.open()
        self._rows = {row.file_hash: row for row in self._catalog.rows()}
        self._state = "running"
        for row in list(self._rows.values()):
            if row.state == DOWNLOADING and row.active:
                self._start_fetch(row)

    async def close(self) -> None:
        """Stop every transfer; verified chunks stay recorded for the next start."""
        if self._state != "running":
            self._state = "closed"
            return
        self._state = "closed"
        fetchers = list(self._fetchers.values())
        self._fetchers.clear()
        await asyncio.gather(*(f.stop() for f in fetchers), return_exceptions=True)
        for fetcher in fetchers:
            fetcher.handle._fail("the file service closed; the download resumes when it starts again")
        for peer in self._links:
            self.detach(peer)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        await asyncio.to_thread(self._executor.shutdown, True)
        self._catalog.close()

    # -- peers -----------------------------------------------------------------
    def attach(self, conn: Connection) -> None:
        """Serve `conn`'s peer and use it as a source; detaches itself when it closes."""
        self._check_running()
        peer = conn.remote_id
        if peer == self.me:
            return

        def handle(stream: Stream) -> Awaitable[None]:
            return self._server.handle(peer, stream)

        conn.set_stream_handler(handle)
        link = self._links.add(conn)
        self._spawn(self._watch(conn, link))
        for file_hash in self._fetchers:
            self.sync_source(file_hash, peer)

    def detach(self, peer: EndpointId) -> None:
        link = self._links.remove(peer)
        if link is None:
            return
        link.conn.set_stream_handler(None)  # a later service on this connection installs its own
        self._server.forget(peer)
        self._book.unlinked(peer)
        for fetcher in self._fetchers.values():
            fetcher.remove_source(peer)

    def learn(self, peer: EndpointId, file_hash: bytes, name: str, size: int, chunk_count: int) -> None:
        """`peer` announced the whole file (a FileAnnounce)."""
        if (
            len(file_hash) != HASH_SIZE
            or not 0 <= size <= tp.MAX_FILE_SIZE
            or chunk_count != chunkhash.chunk_count(size)
            or peer == self.me
        ):
            log.info("ignoring an inconsistent file announce from %s", peer.short())
            return
        if self._book.learn(FileInfo(file_hash, name, size, chunk_count), peer):
            self.sync_source(file_hash, peer)

    def forget_peer(self, peer: EndpointId) -> None:
        """`peer` left the channel."""
        self.detach(peer)
        self._book.forget_peer(peer)
        for fetcher in self._fetchers.values():
            fetcher.remove_source(peer)

    # -- sharing ---------------------------------------------------------------
    async def share(self, path: Path, progress: Progress | None = None) -> FileInfo:
        """Hash `path` (all cores, in a worker thread) and serve it; the caller announces it."""
        self._check_running()
        row = await hash_for_sharing(path, self.hasher_threads, progress)
        file_hash = row.file_hash
        fetcher = self._fetchers.pop(file_hash, None)
        if fetcher is not None:  # we were downloading what we now have whole
            await fetcher.stop()
            fetcher.part.remove()
            fetcher.handle._complete(Path(str(row.path)))
        self._catalog.put(row)
        self._rows[file_hash] = row
        self._links.tell_interested(file_hash, tp.HaveAll(file_hash))
        return FileInfo(file_hash, row.name, row.size, row.chunk_count)

    def unshare(self, file_hash: bytes) -> None:
        """Stop serving a shared (or downloaded) file; the file itself stays."""
        row = self._rows.get(file_hash)
        if row is None or row.state == DOWNLOADING:
            return
        del self._rows[file_hash]
        self._catalog.delete(file_hash)
        self._links.broadcast(tp.DontHave(file_hash))

    def withdraw(self, file_hash: bytes, reason: str) -> None:
        """A file we serve changed on disk: stop serving it, tell everyone."""
        row = self._rows.get(file_hash)
        if row is None or row.state == DOWNLOADING:
            return
        log.warning("withdrawing %s: %s", row.name, reason)
        self.unshare(file_hash)
        self._emit(FileWithdrawn(file_hash, row.name, reason))

    # -- downloading -------------------------------------------------------------
    def download(self, file_hash: bytes) -> Download:
        """Start (or resume, or return the running) download of a file."""
        self._check_running()
        handle = self._handles.get(file_hash)
        if handle is not None and not handle.finished:
            return handle
        row = self._rows.get(file_hash)
        if row is not None and row.state in (SHARED, COMPLETE):
            assert row.path is not None
            done = self._new_handle(file_hash, row.name, row.size)
            done._complete(Path(row.path))
            return done
        if row is None:
            info = self._book.known.get(file_hash)
            if info is None or not self._book.has_sources(file_hash):
                raise UnknownFileError(f"no peer is known to have file {file_hash.hex()[:16]}")
            name = sanitize_name(info.name)
            part = self._part_file(file_hash, name, info.size)
            row = FileRow(file_hash, name, info.size, info.chunk_count, DOWNLOADING, str(part.path))
            self._catalog.put(row)
        elif not row.active:
            self._catalog.set_active(file_hash, True)
            row = dataclasses.replace(row, active=True)
        self._rows[file_hash] = row
        return self._start_fetch(row)

    @property
    def files(self) -> dict[bytes, CatalogEntry]:
        entries: dict[bytes, CatalogEntry] = {}
        for file_hash in self._book.known.keys() | self._rows.keys():
            row = self._rows.get(file_hash)
            info = self._book.known.get(file_hash)
            meta = row or info
            assert meta is not None
            entries[file_hash] = CatalogEntry(
                file_hash,
                meta.name,
                meta.size,
                meta.chunk_count,
                self._book.holders(file_hash, meta.chunk_count),
                row.state if row else None,
                Path(row.path) if row and row.path else None,
            )
        return entries

    def _start_fetch(self, row: FileRow) -> Download:
        hashes = (
            row.hashes if row.hashes is not None and len(row.hashes) == HASH_SIZE * row.chunk_count else None
        )
        have = row.verified_mask() if hashes is not None else 0
        handle = self._new_handle(row.file_hash, row.name, row.size)
        part = self._part_file(row.file_hash, row.name, row.size)
        fetcher = Fetcher(self, handle, part, row.chunk_count, hashes, have)
        self._fetchers[row.file_hash] = fetcher
        for peer in self._links:
            self.sync_source(row.file_hash, peer)
        fetcher.start()
        self._links.download_started(row.file_hash, row.chunk_count, fetcher.have_mask)
        return handle

    def _new_handle(self, file_hash: bytes, name: str, size: int) -> Download:
        handle = Download(
            file_hash, name, size, on_cancel=self._cancel, clock=asyncio.get_running_loop().time
        )
        self._handles[file_hash] = handle
        return handle

    def _part_file(self, file_hash: bytes, name: str, size: int) -> PartFile:
        return PartFile(self.storage_dir / "bisc" / file_hash.hex(), sanitize_name(name), size)

    def _cancel(self, handle: Download, remove: bool) -> None:
        file_hash = handle.file_hash
        if handle.state == COMPLETE or self._state != "running" or self._handles.get(file_hash) is not handle:
            return  # an older handle is finished already: it owns nothing
        handle.state = CANCELLED
        fetcher = self._fetchers.pop(file_hash, None)

        async def stop() -> None:
            if fetcher is not None:
                await fetcher.stop()
            row = self._rows.get(file_hash)
            if row is not None and row.state == DOWNLOADING:
                if remove:
                    self._part_file(file_hash, row.name, row.size).remove()
                    del self._rows[file_hash]
                    self._catalog.delete(file_hash)
                    self._links.broadcast(tp.DontHave(file_hash))
                else:  # kept for a later download(), but not resumed at start-up
                    self._catalog.set_active(file_hash, False)
                    self._rows[file_hash] = dataclasses.replace(row, active=False)
            handle._fail("cancelled", cancelled=True)

        self._spawn(stop())

    # -- FetchContext: called by fetchers ---------------------------------------------
    @property
    def io_executor(self) -> Executor:
        return self._executor

    def connection(self, peer: EndpointId) -> Connection | None:
        return self._links.connection(peer)

    def emit(self, event: FileEvent) -> None:
        try:
            self._emit(event)
        except Exception:  # the owner's bug must not break a transfer
            log.exception("file event handler failed on %s", type(event).__name__)

    def record_have(self, file_hash: bytes, have: bytes) -> None:
        row = self._rows.get(file_hash)
        if row is None or row.state != DOWNLOADING:
            return
        self._rows[file_hash] = dataclasses.replace(row, have=have)
        try:
            self._catalog.set_have(file_hash, have)
        except CatalogError as exc:
            log.warning("%s", exc)

    def record_hashes(self, file_hash: bytes, hashes: bytes) -> None:
        row = self._rows.get(file_hash)
        if row is not None and row.state == DOWNLOADING:
            row = self._rows[file_hash] = dataclasses.replace(row, hashes=hashes)
            self._catalog.put(row)

    def broadcast_have(self, file_hash: bytes, index: int) -> None:
        self._links.tell_interested(file_hash, tp.Have(file_hash, index))

    def peer_dropped_file(self, file_hash: bytes, peer: EndpointId) -> None:
        self._book.dont_have(file_hash, peer)
        self.sync_source(file_hash, peer)

    def fetch_finished(self, fetcher: Fetcher, result: Path | str) -> None:
        file_hash, handle = fetcher.file_hash, fetcher.handle
        if self._fetchers.get(file_hash) is fetcher:
            del self._fetchers[file_hash]
        if isinstance(result, str):
            log.warning("download of %s failed: %s", handle.name, result)
            handle._fail(result)
            self.emit(DownloadFailed(file_hash, handle.name, result))
            return
        row = self._rows.get(file_hash)
        if row is not None:
            try:
                st = os.stat(result)
            except OSError as exc:
                return self.fetch_finished(fetcher, f"{result} vanished: {exc.strerror}")
            row = dataclasses.replace(
                row,
                state=COMPLETE,
                path=str(result),
                mtime_ns=st.st_mtime_ns,
                have=None,
                hashes=fetcher.hashes,
            )
            self._rows[file_hash] = row
            try:
                self._catalog.put(row)
            except CatalogError as exc:
                log.warning("%s", exc)
        handle._complete(result)
        self.emit(DownloadComplete(file_hash, handle.name, result))
        self._links.tell_interested(file_hash, tp.HaveAll(file_hash))

    # -- ServerOwner: called by the server ------------------------------------------------
    def served_file(self, file_hash: bytes) -> ServedFile | None:
        row = self._rows.get(file_hash)
        return None if row is None else served_from_row(row, self._fetchers.get(file_hash))

    async def outgoing_chunk(self, peer: EndpointId, file_hash: bytes, index: int, data: bytes) -> bytes:
        """Hook: the chunk about to be sent (tests override it to delay or corrupt)."""
        return data

    def on_swarm_message(self, peer: EndpointId, msg: tp.Message) -> None:
        self._links.on_message(peer, msg)

    # -- LocalView: called by the swarm links ---------------------------------------------
    def chunk_count_of(self, file_hash: bytes) -> int | None:
        meta = self._rows.get(file_hash) or self._book.known.get(file_hash)
        return None if meta is None else meta.chunk_count

    def our_state(self, file_hash: bytes) -> tp.Message | None:
        row = self._rows.get(file_hash)
        if row is None:
            return None
        if row.state != DOWNLOADING:
            return tp.HaveAll(file_hash)
        fetcher = self._fetchers.get(file_hash)
        have = fetcher.have_mask if fetcher is not None else row.verified_mask()
        return bitfield(file_hash, row.chunk_count, have)

    def downloads(self) -> list[tuple[bytes, int, int]]:
        return [(h, f.count, f.have_mask) for h, f in self._fetchers.items()]

    def sync_source(self, file_hash: bytes, peer: EndpointId) -> None:
        fetcher = self._fetchers.get(file_hash)
        if fetcher is None:
            return
        has_any, bits = self._book.source_bits(file_hash, peer)
        if has_any and self._links.connection(peer) is not None:
            fetcher.set_source(peer, bits)
        else:
            fetcher.remove_source(peer)

    def source_has(self, file_hash: bytes, peer: EndpointId, index: int) -> bool:
        fetcher = self._fetchers.get(file_hash)
        if fetcher is None or not fetcher.knows_source(peer):
            return False
        fetcher.peer_has(peer, index)
        return True

    # -- helpers ---------------------------------------------------------------------
    def _check_running(self) -> None:
        if self._state != "running":
            raise BiscError(f"the file service is {self._state}, not running")

    async def _watch(self, conn: Connection, link: SwarmLink) -> None:
        await conn.wait_closed()
        if self._links.get(link.peer) is link:
            self.detach(link.peer)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.error("file service task failed", exc_info=exc)

        task.add_done_callback(done)
