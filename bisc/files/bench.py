"""File transfer throughput on loopback, against the ceiling of one aioquic stream.

Both ends run in this process on one event loop, as in the tests, so the
numbers are CPU-bound by aioquic's pure-Python packet handling; they are
comparable with each other, not with a transfer between two machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bisc.codec.chunkhash import CHUNK_SIZE
from bisc.files.events import FileEvent
from bisc.files.hashing import hash_file
from bisc.files.service import FileService
from bisc.identity import Identity
from bisc.net.quic import QuicEndpoint
from bisc.net.transport import Connection, Stream

MIB = 1024 * 1024


async def _pair() -> tuple[QuicEndpoint, QuicEndpoint, Connection, asyncio.Queue[Connection]]:
    """Endpoints a (dialer) and b, a's connection to b, and b's accepted connections."""
    a = await QuicEndpoint.bind(Identity.generate(), "127.0.0.1", 0)
    b = await QuicEndpoint.bind(Identity.generate(), "127.0.0.1", 0)
    accepted: asyncio.Queue[Connection] = asyncio.Queue()

    async def on_connection(conn: Connection) -> None:
        await accepted.put(conn)

    b.set_connection_handler(on_connection)
    conn = await a.connect(b.local_addr())
    return a, b, conn, accepted


async def raw_stream_ceiling(size_mib: int = 512) -> dict[str, Any]:
    """MB/s of `size_mib` MiB written over one aioquic stream and read on the other end."""
    a, b, conn, accepted = await _pair()
    received: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def sink(stream: Stream) -> None:
        total = 0
        while data := await stream.read(MIB):
            total += len(data)
        received.set_result(time.perf_counter() if total == size_mib * MIB else -1.0)

    try:
        (await accepted.get()).set_stream_handler(sink)
        stream = await conn.open_stream()
        block = random.Random(0).randbytes(CHUNK_SIZE)
        start = time.perf_counter()
        for _ in range(size_mib * MIB // CHUNK_SIZE):
            stream.write(block)
            await stream.drain()
        stream.finish()
        end = await received
        if end < 0:
            raise RuntimeError("the raw stream lost data")
    finally:
        await a.close()
        await b.close()
    seconds = end - start
    return {"size_mib": size_mib, "seconds": seconds, "mb_per_s": size_mib * MIB / seconds / 1e6}


def _write_random(path: Path, size: int) -> None:
    rng = random.Random(size)
    with open(path, "wb") as f:
        for offset in range(0, size, 16 * MIB):
            f.write(rng.randbytes(min(16 * MIB, size - offset)))


async def throughput(size_mib: int = 512, sources: int = 1) -> dict[str, Any]:
    """MB/s of one download of `size_mib` MiB from `sources` peers that share it.

    The time runs from download() until the file is verified and in place
    (so it includes the final re-hash and fsync)."""
    with tempfile.TemporaryDirectory(prefix="bisc-bench-") as tmp:
        root = Path(tmp)
        source_file = root / "payload.bin"
        await asyncio.to_thread(_write_random, source_file, size_mib * MIB)
        events: list[FileEvent] = []
        endpoints: list[QuicEndpoint] = []
        services: list[FileService] = []
        try:
            for i in range(sources + 1):
                identity = Identity.generate()
                endpoint = await QuicEndpoint.bind(identity, "127.0.0.1", 0)
                service = FileService(
                    me=identity.endpoint_id,
                    db_path=root / f"node{i}" / "files.sqlite",
                    storage_dir=root / f"node{i}",
                    emit=events.append,
                    rng=random.Random(i),
                )
                await service.start()
                endpoint.set_connection_handler(_attacher(service))
                endpoints.append(endpoint)
                services.append(service)
            downloader, seeders = services[0], services[1:]
            hash_start = time.perf_counter()
            infos = [await seeder.share(source_file) for seeder in seeders]
            hash_seconds = (time.perf_counter() - hash_start) / sources
            for endpoint, seeder, info in zip(endpoints[1:], seeders, infos, strict=True):
                downloader.attach(await endpoints[0].connect(endpoint.local_addr()))
                downloader.learn(seeder.me, info.file_hash, info.name, info.size, info.chunk_count)
            start = time.perf_counter()
            path = await downloader.download(infos[0].file_hash).wait()
            seconds = time.perf_counter() - start
            verify_start = time.perf_counter()
            await asyncio.to_thread(hash_file, path)
            verify_seconds = time.perf_counter() - verify_start
        finally:
            for service in services:
                with contextlib.suppress(Exception):
                    await service.close()
            for endpoint in endpoints:
                await endpoint.close()
    return {
        "size_mib": size_mib,
        "sources": sources,
        "seconds": seconds,
        "mb_per_s": size_mib * MIB / seconds / 1e6,
        "hash_seconds": hash_seconds,
        "verify_seconds": verify_seconds,
        "chunks_served": [sum(s.served.values()) for s in seeders],
    }


def _attacher(service: FileService) -> Any:
    async def attach(conn: Connection) -> None:
        service.attach(conn)

    return attach


if __name__ == "__main__":  # python -m bisc.files.bench [MiB]
    import json
    import sys

    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    print(json.dumps(asyncio.run(raw_stream_ceiling(mib))))
    for n in (1, 3):
        print(json.dumps(asyncio.run(throughput(mib, n))))
