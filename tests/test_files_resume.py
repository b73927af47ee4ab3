"""Resume after a restart, disk full, unwritable storage, cancel and remove."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bisc.codec.chunkhash import CHUNK_SIZE
from bisc.files.download import DownloadCancelled, DownloadError
from bisc.files.events import DownloadFailed
from bisc.files.partfile import PartFile
from bisc.proto import transfer as tp
from tests.test_files_harness import Harness, make_file, same_bytes, until
from tests.test_files_swarm import Hooked

pytestmark = pytest.mark.timeout(60)
CHUNKS = 24


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    yield h
    await h.close()


def recorded(db: Path, file_hash: bytes) -> tuple[str, set[int], bool]:
    """(state, verified chunks, active) as stored in a service's sqlite catalog."""
    with sqlite3.connect(db) as conn:
        state, have, active = conn.execute(
            "SELECT state, have, active FROM files WHERE file_hash = ?", (file_hash,)
        ).fetchone()
    mask = tp.bits_to_mask(have) if have else 0
    return state, {i for i in range(CHUNKS) if mask >> i & 1}, bool(active)


async def seeded(harness: Harness, tmp_path: Path, delay: float = 0.02) -> tuple[Hooked, Path, bytes]:
    a = await harness.add("a", Hooked)
    b = await harness.add("b", max_in_flight=2)
    await harness.connect_all()
    assert isinstance(a.service, Hooked)
    a.service.delay = delay
    source = make_file(tmp_path / "big.bin", CHUNKS * CHUNK_SIZE - 100)
    file_hash = await harness.share(a, source, to=[b])
    return a.service, source, file_hash


async def test_resume_after_restart_never_refetches_verified_chunks(harness: Harness, tmp_path: Path) -> None:
    seeder, source, file_hash = await seeded(harness, tmp_path)
    b = harness.nodes[1]
    download = b.service.download(file_hash)
    await until(lambda: download.bytes_done >= 8 * CHUNK_SIZE, 20, "a third of the file")
    await b.restart_service()  # as after a crash: a new service on the same database and storage
    state, verified, active = recorded(b.root / "files.sqlite", file_hash)
    assert state == "downloading" and active and len(verified) >= 8
    part = b.root / "storage" / "bisc" / file_hash.hex() / ".big.bin.part"
    assert part.exists()

    resumed = b.service.download(file_hash)  # resumed by start(): the running handle
    assert resumed is not download and resumed.bytes_done >= 8 * CHUNK_SIZE - 100
    path = await asyncio.wait_for(resumed.wait(), 30)
    assert same_bytes(source, path) and not part.exists()
    for index in verified:
        assert seeder.requests[(b.id, index)] == 1, f"chunk {index} was fetched again"
    assert recorded(b.root / "files.sqlite", file_hash)[0] == "complete"


async def test_disk_full_fails_readably_and_stays_resumable(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeder, source, file_hash = await seeded(harness, tmp_path, delay=0)
    b = harness.nodes[1]
    real_write = PartFile.write_at
    writes = 0

    def write_until_full(self: PartFile, offset: int, data: bytes) -> None:
        nonlocal writes
        if writes >= 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        writes += 1
        real_write(self, offset, data)

    monkeypatch.setattr(PartFile, "write_at", write_until_full)
    download = b.service.download(file_hash)
    with pytest.raises(DownloadError, match="disk full"):
        await asyncio.wait_for(download.wait(), 20)
    assert download.state == "failed" and download.error is not None
    failed = b.events_of(DownloadFailed)
    assert len(failed) == 1 and "disk full" in failed[0].reason and failed[0].file_hash == file_hash
    state, verified, active = recorded(b.root / "files.sqlite", file_hash)
    assert state == "downloading" and active and len(verified) == 5

    monkeypatch.setattr(PartFile, "write_at", real_write)  # space freed: try again
    path = await asyncio.wait_for(b.service.download(file_hash).wait(), 20)
    assert same_bytes(source, path)
    for index in verified:
        assert seeder.requests[(b.id, index)] == 1


async def test_unwritable_storage_fails_with_a_reason(harness: Harness, tmp_path: Path) -> None:
    _, _, file_hash = await seeded(harness, tmp_path, delay=0)
    b = harness.nodes[1]
    (b.root / "storage").write_text("not a directory")
    with pytest.raises(DownloadError, match="cannot write"):
        await asyncio.wait_for(b.service.download(file_hash).wait(), 20)
    assert "storage" in b.events_of(DownloadFailed)[0].reason


async def test_cancel_keeps_or_removes_partial_data(harness: Harness, tmp_path: Path) -> None:
    _, source, file_hash = await seeded(harness, tmp_path)
    b = harness.nodes[1]
    directory = b.root / "storage" / "bisc" / file_hash.hex()
    download = b.service.download(file_hash)
    await until(lambda: download.bytes_done >= 4 * CHUNK_SIZE, 20, "some chunks")
    download.cancel()
    assert download.state == "cancelled"
    with pytest.raises(DownloadCancelled):
        await download.wait()
    state, verified, active = recorded(b.root / "files.sqlite", file_hash)
    assert state == "downloading" and not active and len(verified) >= 4
    assert b.service.files[file_hash].state == "downloading"

    await b.restart_service()  # a cancelled download does not come back by itself
    a = harness.nodes[0]
    info = a.service.files[file_hash]
    b.service.learn(a.id, file_hash, info.name, info.size, info.chunk_count)  # announces heard again
    await asyncio.sleep(0.3)
    assert recorded(b.root / "files.sqlite", file_hash)[1] == verified

    again = b.service.download(file_hash)
    await until(lambda: again.bytes_done > len(verified) * CHUNK_SIZE, 20, "progress after resuming")
    again.cancel(remove=True)
    with pytest.raises(DownloadCancelled):
        await again.wait()
    assert not (directory / ".big.bin.part").exists()
    assert b.service.files[file_hash].state is None
    with sqlite3.connect(b.root / "files.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 0

    path = await asyncio.wait_for(b.service.download(file_hash).wait(), 30)  # from scratch
    assert same_bytes(source, path)
