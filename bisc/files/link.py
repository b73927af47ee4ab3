"""Our side of the swarm link to one peer: what we tell it about our chunks.

Each side opens its own swarm stream and only writes on it (the peer's
messages arrive on the stream the peer opened, handled by the server).
Messages queue in a bounded outbox; if a peer stops reading and the outbox
overflows, the queued HAVEs are dropped and replaced by a fresh snapshot
(our current bitfields), which says the same in fewer bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from bisc.identity import EndpointId
from bisc.net.transport import Connection, Stream, TransportError
from bisc.proto import transfer as tp

log = logging.getLogger(__name__)

MAX_OUTBOX = 4096  # messages; beyond this, resynchronise with a snapshot


class SwarmLink:
    def __init__(self, conn: Connection, snapshot: Callable[[], list[tp.Message]]) -> None:
        self.conn = conn
        self.peer: EndpointId = conn.remote_id
        self.interested: set[bytes] = set()  # files this peer is downloading
        self._snapshot = snapshot
        self._outbox: deque[tp.Message] = deque()
        self._wakeup = asyncio.Event()
        self._stream: Stream | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._outbox.extend(self._snapshot())
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"swarm link {self.peer.short()}"
        )

    def send(self, msg: tp.Message) -> None:
        if self._closed:
            return
        if len(self._outbox) >= MAX_OUTBOX:
            log.info("swarm link to %s: outbox full; resynchronising", self.peer.short())
            self._outbox.clear()
            self._outbox.extend(self._snapshot())
        self._outbox.append(msg)
        self._wakeup.set()

    async def _run(self) -> None:
        delay = 0.5
        while not self._closed and not self.conn.is_closed:
            try:
                await self._talk()
            except TransportError as exc:
                log.debug("swarm link to %s broke: %s", self.peer.short(), exc)
            if self._closed or self.conn.is_closed:
                return
            # The peer reset our stream (e.g. its file service restarted) but the
            # connection lives: open a new one and say everything again.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            self._outbox.clear()
            self._outbox.extend(self._snapshot())

    async def _talk(self) -> None:
        stream = self._stream = await self.conn.open_stream()
        broken = False

        async def watch() -> None:
            # The peer never writes here: any end of its side (a reset when its
            # service restarts) means the link is gone, even while we are idle.
            nonlocal broken
            with contextlib.suppress(TransportError):
                await stream.read(1)
            broken = True
            self._wakeup.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            stream.write(tp.encode(tp.Swarm()))
            while not self._closed:
                if broken:
                    raise TransportError("the peer closed its end of the swarm link")
                if not self._outbox:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                batch: list[bytes] = []
                while self._outbox and len(batch) < 256:
                    batch.append(tp.encode(self._outbox.popleft()))
                stream.write(b"".join(batch))
                await stream.drain()
        finally:
            watcher.cancel()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        if self._stream is not None:
            with contextlib.suppress(TransportError):
                self._stream.reset()
        if self._task is not None:
            self._task.cancel()
