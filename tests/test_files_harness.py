"""A small swarm of real aioquic endpoints on loopback, each with a FileService.

Not a test module itself: the file-sharing tests import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisc.files.events import FileEvent
from bisc.files.service import FileService
from bisc.identity import EndpointId, Identity
from bisc.net.quic import QuicEndpoint
from bisc.net.transport import Connection


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.01)


def make_file(path: Path, size: int, seed: int = 1) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rng.randbytes(size))
    return path


@dataclass
class Node:
    name: str
    root: Path
    identity: Identity
    endpoint: QuicEndpoint
    service: FileService
    service_cls: type[FileService]
    service_kw: dict[str, Any]
    events: list[FileEvent] = field(default_factory=list)
    conns: dict[EndpointId, Connection] = field(default_factory=dict)

    @property
    def id(self) -> EndpointId:
        return self.identity.endpoint_id

    def events_of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def new_service(self, cls: type[FileService] | None = None, **kw: Any) -> FileService:
        self.service_cls = cls or self.service_cls
        self.service_kw = {**self.service_kw, **kw}
        return self.service_cls(
            me=self.id,
            db_path=self.root / "files.sqlite",
            storage_dir=self.root / "storage",
            emit=self.events.append,
            **self.service_kw,
        )

    async def restart_service(self, cls: type[FileService] | None = None, **kw: Any) -> FileService:
        """Close the service and start a new one on the same database and storage."""
        await self.service.close()
        self.service = self.new_service(cls, **kw)
        await self.service.start()
        for conn in self.conns.values():
            if not conn.is_closed:
                self.service.attach(conn)
        return self.service


class Harness:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []

    async def add(
        self, name: str, cls: type[FileService] = FileService, seed: int | None = None, **kw: Any
    ) -> Node:
        identity = Identity.generate()
        endpoint = await QuicEndpoint.bind(identity, "127.0.0.1", 0)
        root = self.root / name
        root.mkdir(parents=True, exist_ok=True)
        kw.setdefault("rng", random.Random(seed if seed is not None else len(self.nodes)))
        node = Node(name, root, identity, endpoint, None, cls, kw)  # type: ignore[arg-type]
        node.service = node.new_service()
        await node.service.start()

        async def accepted(conn: Connection) -> None:
            node.conns[conn.remote_id] = conn
            node.service.attach(conn)

        endpoint.set_connection_handler(accepted)
        self.nodes.append(node)
        return node

    async def connect(self, a: Node, b: Node) -> None:
        conn = await a.endpoint.connect(b.endpoint.local_addr(), timeout=5)
        a.conns[b.id] = conn
        a.service.attach(conn)
        await until(lambda: a.id in b.conns, 5, "accepting the connection")

    async def connect_all(self) -> None:
        for i, a in enumerate(self.nodes):
            for b in self.nodes[i + 1 :]:
                await self.connect(a, b)

    async def share(self, node: Node, path: Path, to: list[Node] | None = None) -> bytes:
        """Share on `node` and announce to the others (what the channel would do)."""
        info = await node.service.share(path)
        for other in to if to is not None else self.nodes:
            if other is not node:
                other.service.learn(node.id, info.file_hash, info.name, info.size, info.chunk_count)
        return info.file_hash

    async def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                await node.service.close()
        for node in self.nodes:
            await node.endpoint.close()


def same_bytes(a: Path, b: Path) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True
