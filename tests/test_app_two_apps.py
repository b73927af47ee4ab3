"""Two bisc apps, in two processes with their own data dirs, in one channel, each driven by touch.

Ada is the session's app (tests/gui_support.py); Bob is tests/gui_remote.py in a subprocess on the
same X display. Each shows the other's tile with the test-pattern video, a mute shows the badge on
the other side, chat goes both ways, a file shared in one is downloaded in the other with a
progress bar, and Ada's app keeps running when Bob's process is killed mid-call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from tests.gui_remote import REPLY_TAG
from tests.gui_support import GuiEnv, tap, type_into, until

if TYPE_CHECKING:
    from kivy_app.app import BiscApp

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parent.parent


class RemoteApp:
    """Bob's app: one JSON command per line in, one reply per line out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.log: list[str] = []

    async def _reply(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise AssertionError("Bob's app exited:\n" + "".join(self.log[-40:]))
                line = raw.decode(errors="replace")
                if line.startswith(REPLY_TAG):
                    return dict(json.loads(line[len(REPLY_TAG) :]))
                self.log.append(line)

    async def ready(self) -> None:
        assert (await self._reply(60))["ready"]

    async def do(self, op: str, timeout: float = 60, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op} | args) + "\n").encode())
        await self.proc.stdin.drain()
        answer = await self._reply(timeout)
        assert answer["ok"], answer.get("trace") or answer
        return answer

    async def until(self, check: Any, timeout: float = 30, what: str = "") -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            st = await self.do("state")
            if check(st):
                return st
            if loop.time() > deadline:
                raise AssertionError(f"Bob's app: timed out waiting for {what}; last state {st}")
            await asyncio.sleep(0.2)


@pytest_asyncio.fixture(loop_scope="session")
async def bob_app(gui_env: GuiEnv, tmp_path: Path) -> AsyncIterator[RemoteApp]:
    options = {
        "data_dir": str(tmp_path / "bob"),
        "name": "Bob Builder",
        "bind": "127.0.0.1:0",
        "audio_in": "none",
        "audio_out": "none",
        "video_source": "pattern:320x180",
        "storage_dir": str(tmp_path / "bob-downloads"),
    }
    env = dict(os.environ) | gui_env.values | {"KIVY_HOME": str(tmp_path / "bob-kivy")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.gui_remote", json.dumps(options),
        cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    remote = RemoteApp(proc)
    try:
        await remote.ready()
        yield remote
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_two_apps_call_chat_mute_files_and_a_vanishing_peer(
    gui: BiscApp, kivy_window: Any, bob_app: RemoteApp, tmp_path: Path
) -> None:
    await tap(gui.view("home").ids.create_button)
    await until(lambda: gui.channel is not None and gui.in_call, what="Ada's channel")
    assert gui.channel is not None
    call = gui.view("call")
    ada = str(gui.channel.me)

    joined = await bob_app.do("join", ticket=gui.channel.ticket().to_text())
    assert joined["in_call"], joined
    st = await bob_app.until(lambda s: ada in s.get("tiles", {}), what="Ada's tile")
    bob = st["me"]
    await until(lambda: bob in call.tiles, timeout=20, what="Bob's tile at Ada")
    assert call.tiles[bob].name == "Bob Builder"

    # Video both ways: each taps Camera (the test pattern) and sees the other's picture.
    await bob_app.do("tap", widget="call.camera_button")
    await bob_app.until(lambda s: s["camera_on"] or s["message"], timeout=30, what="Bob's camera")
    await tap(call.ids.camera_button)
    await until(lambda: gui.camera_on or gui.message, timeout=30, what="Ada's camera")
    assert gui.camera_on, gui.message
    await until(lambda: call.tiles[bob].texture is not None, timeout=40, what="Bob's video at Ada")
    assert tuple(call.tiles[bob].texture.size) == (320, 180)
    await bob_app.until(
        lambda s: s["tiles"].get(ada, {}).get("texture") == [320, 180], timeout=40, what="Ada's video"
    )

    # Bob starts his mic and mutes it (two taps): Ada sees the badge on his tile, then it goes.
    await bob_app.do("tap", widget="call.mic_button")
    await bob_app.until(lambda s: s["voice_on"], what="Bob's mic on")
    await bob_app.do("tap", widget="call.mic_button")
    await until(lambda: call.tiles[bob].ids.mute_badge.opacity == 1, timeout=20, what="Bob's mute badge")
    await bob_app.do("tap", widget="call.mic_button")
    await until(lambda: call.tiles[bob].ids.mute_badge.opacity == 0, timeout=20, what="Bob unmuted")

    # Chat both ways.
    await bob_app.do("chat", text="hi Ada, it's Bob")
    await until(lambda: call.unread == 1, timeout=20, what="Bob's chat at Ada")
    await tap(call.ids.chat_button)
    panel = gui.view("chat")
    await type_into(panel.ids.input, "hello Bob")
    await tap(panel.ids.send_button)
    st = await bob_app.until(
        lambda s: [m["text"] for m in s["messages"]] == ["hi Ada, it's Bob", "hello Bob"],
        what="Ada's chat at Bob",
    )
    assert st["messages"][1]["name"] == "Ada Lovelace" and not st["messages"][1]["mine"]
    await tap(panel.ids.close_button)

    # A file Ada shares is downloaded by Bob through his Files panel, with a progress bar.
    shared = tmp_path / "holiday.bin"
    shared.write_bytes(os.urandom(6 * 1024 * 1024 + 123))
    await gui.channel.share(shared)
    await bob_app.do("download", name="holiday.bin")
    seen_progress = False

    def progressing(s: dict[str, Any]) -> bool:
        nonlocal seen_progress
        rows = [r for r in s.get("file_rows", []) if r["name"] == "holiday.bin"]
        seen_progress |= any(r["progress_visible"] and 0 < r["progress"] < 1 for r in rows)
        return any(r["state"] == "complete" for r in rows)

    st = await bob_app.until(progressing, timeout=90, what="the download to complete")
    path = Path(next(d["path"] for d in st["downloads"].values() if d.get("state") == "complete"))
    assert path.read_bytes() == shared.read_bytes()
    assert seen_progress, "the progress bar never showed a partial download"

    # Bob's process dies mid-call: Ada's app keeps running and drops his tile after the timeout.
    bob_app.proc.send_signal(signal.SIGKILL)
    await bob_app.proc.wait()
    await until(lambda: bob not in call.tiles, timeout=40, what="Bob's tile to go after he vanished")
    assert gui.in_call and gui.sm is not None and gui.sm.current == "call"
    await tap(call.ids.chat_button)  # still responsive
    await until(lambda: call.chat_open, what="the chat panel after Bob vanished")
    await tap(panel.ids.close_button)
