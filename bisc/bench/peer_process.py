"""Benchmark peers in processes of their own (so each one's CPU time is its own), stepped by the
parent through one JSON object per line: `emit` and `read_parent` on the peer's side, `run_peer`
around its main coroutine, and `PeerProcess` / `spawn_module` on the parent's side."""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

STEP_TIMEOUT = 30.0  # seconds a peer may take for one step
LINE_LIMIT = 1 << 24  # a peer's result line (figures, kept pictures) can be long

# -- the peer's side ------------------------------------------------------------------


def emit(obj: dict[str, Any]) -> None:
    """One line to the parent."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


async def read_parent() -> dict[str, Any]:
    """The parent's next line (RuntimeError when it closed the pipe)."""
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise RuntimeError("parent closed the pipe")
    msg: dict[str, Any] = json.loads(line)
    return msg


def run_peer(main: Callable[[dict[str, Any]], Coroutine[Any, Any, None]], cfg: dict[str, Any]) -> None:
    """Run a peer; a failure goes to the parent as an "error" line with its traceback."""
    try:
        asyncio.run(main(cfg))
    except Exception as exc:
        emit({"type": "error", "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})


# -- the parent's side ----------------------------------------------------------------


class PeerProcess:
    """A running peer: read its lines, expect a step, send it one, wait for it to end.

    Its standard error goes to `log` when given (read back when it dies), else to a pipe."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, log: Path | None = None) -> None:
        self.proc, self.name, self.log = proc, name, log

    async def read(self, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            code = await self.proc.wait()
            raise RuntimeError(f"{self.name} exited ({code}): {await self._stderr_tail()}")
        msg: dict[str, Any] = json.loads(line)
        if msg.get("type") == "error":
            raise RuntimeError(f"{self.name} failed: {msg.get('error')}\n{msg.get('trace', '')}")
        return msg

    async def expect(self, kind: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        msg = await self.read(timeout)
        if msg["type"] != kind:
            raise RuntimeError(f"{self.name}: expected {kind}, got {msg['type']}")
        return msg

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    async def finish(self) -> None:
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def _stderr_tail(self) -> str:
        if self.log is not None:
            return self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
        if self.proc.stderr is None:
            return ""
        return (await self.proc.stderr.read()).decode(errors="replace")[-1500:]


async def step(
    procs: Sequence[PeerProcess], send: str | None, expect: str | None, timeout: float = STEP_TIMEOUT
) -> list[dict[str, Any]]:
    """Tell every process `send` (None: nothing), then wait for each one's `expect` line (None: none)."""
    for proc in procs:
        if send is not None:
            proc.send({"type": send})
    return [await proc.expect(expect, timeout) for proc in procs] if expect is not None else []


async def spawn_module(
    module: str,
    args: Sequence[str],
    name: str,
    *,
    log: Path | None = None,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> PeerProcess:
    """`python -m module args...` as a peer; standard error to `log` (or a pipe)."""
    if log is None:
        proc = await asyncio.create_subprocess_exec(
            python, "-m", module, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, limit=LINE_LIMIT,
        )  # fmt: skip
        return PeerProcess(proc, name)
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            python, "-m", module, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
            env=env, limit=LINE_LIMIT,
        )  # fmt: skip
    return PeerProcess(proc, name, log)
