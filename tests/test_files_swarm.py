"""Swarm downloads over real aioquic on loopback: several sources, failover, bad peers."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bisc.codec.chunkhash import CHUNK_SIZE
from bisc.files.events import ChunkRejected, DownloadComplete, DownloadProgress, FileWithdrawn
from bisc.files.server import ServedFile
from bisc.files.service import FileService, UnknownFileError
from bisc.identity import EndpointId
from tests.test_files_harness import Harness, make_file, same_bytes, until

pytestmark = pytest.mark.timeout(60)


class Hooked(FileService):
    """A FileService whose served chunks can be delayed, counted or corrupted."""

    delay = 0.0
    corrupt = False

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.requests: Counter[tuple[EndpointId, int]] = Counter()

    async def outgoing_chunk(self, peer: EndpointId, file_hash: bytes, index: int, data: bytes) -> bytes:
        self.requests[(peer, index)] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    await h.close()


async def test_two_downloaders_fetch_from_the_seeder_and_each_other(harness: Harness, tmp_path: Path) -> None:
    a = await harness.add("a", Hooked)
    b = await harness.add("b", max_in_flight=2)
    c = await harness.add("c", max_in_flight=2)
    assert isinstance(a.service, Hooked)
    a.service.delay = 0.05  # a slow seeder: B and C get chunks from each other faster
    await harness.connect_all()
    source = make_file(tmp_path / "movie.bin", 16 * CHUNK_SIZE + 1234)
    file_hash = await harness.share(a, source)
    entry = b.service.files[file_hash]
    assert entry.holders == {a.id} and entry.state is None and entry.chunk_count == 17

    db, dc = b.service.download(file_hash), c.service.download(file_hash)
    assert b.service.download(file_hash) is db  # the running handle
    pb, pc = await asyncio.wait_for(asyncio.gather(db.wait(), dc.wait()), 30)
    assert same_bytes(source, pb) and same_bytes(source, pc)
    assert pb == b.root / "storage" / "bisc" / file_hash.hex() / "movie.bin"
    assert db.state == "complete" and db.bytes_done == db.size and db.path == pb
    # Chunks went both ways between the two downloaders, not only from A.
    assert b.service.served[c.id] + c.service.served[b.id] > 0
    assert sum(a.service.served.values()) < 2 * 17
    assert b.service.files[file_hash].state == "complete"
    assert [e.path for e in b.events_of(DownloadComplete)] == [pb]
    progress = b.events_of(DownloadProgress)
    assert progress and progress[-1].bytes_done == db.size
    assert all(p.size == db.size and p.name == "movie.bin" for p in progress)
    # A finished file is served like a shared one, and download() of it is done at once.
    again = b.service.download(file_hash)
    assert again.state == "complete" and await again.wait() == pb


async def test_download_survives_the_seeder_leaving(harness: Harness, tmp_path: Path) -> None:
    a = await harness.add("a", Hooked)
    c = await harness.add("c", Hooked)
    b = await harness.add("b", max_in_flight=2)
    await harness.connect_all()
    source = make_file(tmp_path / "talk.bin", 16 * CHUNK_SIZE)
    file_hash = await harness.share(a, source, to=[b, c])
    await c.service.download(file_hash).wait()  # C now has it whole; B learns that over the swarm
    assert isinstance(a.service, Hooked) and isinstance(c.service, Hooked)
    a.service.delay = c.service.delay = 0.03
    served_before = sum(a.service.served.values())

    download = b.service.download(file_hash)
    await until(lambda: download.bytes_done >= 4 * CHUNK_SIZE, 20, "a quarter of the file")
    await a.endpoint.close()  # A goes away mid-download
    path = await asyncio.wait_for(download.wait(), 30)
    assert same_bytes(source, path)
    assert a.service.served[b.id] > 0 and c.service.served[b.id] > 0
    assert sum(a.service.served.values()) > served_before


async def test_corrupt_chunks_are_rejected_and_fetched_elsewhere(harness: Harness, tmp_path: Path) -> None:
    liar = await harness.add("liar", Hooked)
    honest = await harness.add("honest")
    b = await harness.add("b")
    assert isinstance(liar.service, Hooked)
    liar.service.corrupt = True
    await harness.connect_all()
    content = make_file(tmp_path / "x" / "data.bin", 10 * CHUNK_SIZE + 5)
    copy = make_file(tmp_path / "y" / "data.bin", 10 * CHUNK_SIZE + 5)  # same seed: same bytes
    file_hash = await harness.share(liar, content, to=[b])
    assert await harness.share(honest, copy, to=[b]) == file_hash

    path = await asyncio.wait_for(b.service.download(file_hash).wait(), 30)
    assert same_bytes(content, path)
    rejected = b.events_of(ChunkRejected)
    assert rejected and all(e.peer == liar.id and e.file_hash == file_hash for e in rejected)
    assert honest.service.served[b.id] >= 10 - len(rejected)
    # After the first bad chunk the liar is not asked again: at most one pipeline's worth.
    assert liar.service.served[b.id] <= b.service.max_in_flight


async def test_a_changed_shared_file_is_withdrawn_and_downloads_fail_over(
    harness: Harness, tmp_path: Path
) -> None:
    a = await harness.add("a")
    c = await harness.add("c")
    b = await harness.add("b")
    await harness.connect_all()
    mine = make_file(tmp_path / "a" / "doc.bin", 6 * CHUNK_SIZE)
    theirs = make_file(tmp_path / "c" / "doc.bin", 6 * CHUNK_SIZE)
    file_hash = await harness.share(a, mine, to=[b])
    await harness.share(c, theirs, to=[b])
    with open(mine, "ab") as f:  # edited after sharing
        f.write(b"more")

    path = await asyncio.wait_for(b.service.download(file_hash).wait(), 30)
    assert same_bytes(theirs, path)
    withdrawn = a.events_of(FileWithdrawn)
    assert [(e.file_hash, e.name) for e in withdrawn] == [(file_hash, "doc.bin")]
    assert "changed" in withdrawn[0].reason
    assert a.service.files.get(file_hash) is None  # no longer served
    await until(lambda: a.id not in b.service.files[file_hash].holders, 5, "A's DONT_HAVE")
    assert c.service.served[b.id] > 0


async def test_unknown_files_and_unshare(harness: Harness, tmp_path: Path) -> None:
    a = await harness.add("a")
    b = await harness.add("b")
    await harness.connect_all()
    with pytest.raises(UnknownFileError):
        b.service.download(b"\x01" * 32)
    file_hash = await harness.share(a, make_file(tmp_path / "f.bin", 3 * CHUNK_SIZE), to=[b])
    assert a.service.files[file_hash].state == "shared"
    a.service.unshare(file_hash)
    assert file_hash not in a.service.files
    await until(lambda: not b.service.files[file_hash].holders, 5, "A's DONT_HAVE")
    with pytest.raises(UnknownFileError):
        b.service.download(file_hash)


class LyingHashes(FileService):
    """Serves a hash list that does not belong to the file."""

    def served_file(self, file_hash: bytes) -> ServedFile | None:
        served = super().served_file(file_hash)
        if served is None or served.hashes is None:
            return served
        return dataclasses.replace(served, hashes=bytes(len(served.hashes)))


async def test_a_false_hash_list_is_never_trusted(harness: Harness, tmp_path: Path) -> None:
    liar = await harness.add("liar", LyingHashes)
    honest = await harness.add("honest")
    b = await harness.add("b")
    await harness.connect_all()
    source = make_file(tmp_path / "x" / "f.bin", 5 * CHUNK_SIZE)
    file_hash = await harness.share(liar, source, to=[b])  # at first only the liar is known
    download = b.service.download(file_hash)
    await asyncio.sleep(0.5)
    assert download.state == "queued" and download.bytes_done == 0
    await harness.share(honest, make_file(tmp_path / "y" / "f.bin", 5 * CHUNK_SIZE), to=[b])
    path = await asyncio.wait_for(download.wait(), 20)
    assert same_bytes(source, path)
    assert liar.service.served[b.id] == 0  # no chunk was asked from a peer that lied about hashes
