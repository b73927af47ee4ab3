"""A second bisc app in its own process, driven by touch from commands on standard input.

`python -m tests.gui_remote OPTIONS_JSON` opens the app (kivy_app.app.BiscApp) on $DISPLAY and reads
one JSON command per line; each gets one JSON reply line on standard output (prefixed with
REPLY_TAG, so Kivy's own output cannot be mistaken for it). Every command acts through the UI the
way a user would (taps and typing through Kivy's input dispatch, tests.gui_support), never by
calling the app's handlers: the test that drives it checks what each app shows.

Commands: {"op": "join", "ticket": T}, {"op": "tap", "widget": "call.camera_button"},
{"op": "chat", "text": T}, {"op": "state"}, {"op": "quit"}; files: {"op": "download", "name": N}.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import traceback
from typing import Any

REPLY_TAG = "@@gui-remote "

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


def reply(payload: dict[str, Any]) -> None:
    sys.stdout.write(REPLY_TAG + json.dumps(payload) + "\n")
    sys.stdout.flush()


async def read_lines(queue: asyncio.Queue[str | None]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        await queue.put(line or None)
        if not line:
            return


def widget(app: Any, path: str) -> Any:
    view, _, wid = path.partition(".")
    return app.view(view).ids[wid]


def state(app: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "screen": app.sm.current if app.sm else "",
        "in_call": app.in_call,
        "message": app.message,
    }
    if app.in_call:
        call = app.view("call")
        out["tiles"] = {
            key: {
                "name": tile.name,
                "texture": list(tile.texture.size) if tile.texture is not None else None,
                "muted_badge": tile.ids.mute_badge.opacity == 1,
                "video_badge": tile.ids.camera_badge.opacity == 1,
            }
            for key, tile in call.tiles.items()
        }
        out["me"] = str(app.channel.me) if app.channel else ""
        out["muted"], out["voice_on"], out["camera_on"] = app.muted, app.voice_on, app.camera_on
    if app.bridge is not None:
        out["messages"] = [dict(m) for m in app.bridge.messages]
        out["downloads"] = {k: dict(v) for k, v in app.bridge.downloads.items()}
    files = app._screens.get("files")
    if files is not None:  # what the Files panel shows of each file
        out["file_rows"] = [
            {
                "name": row.title,
                "state": row.state,
                "progress": row.fraction,
                "progress_visible": row.show_bar and row.ids.bar.opacity > 0 and row.ids.bar.height > 0,
                "progress_text": row.progress_text,
                "on_screen": row.get_root_window() is not None,
            }
            for row in files.rows.values()
        ]
    return out


async def run(options_json: str) -> None:
    from kivy_app.app import BiscApp, GuiOptions
    from tests import gui_support as ui

    app = BiscApp(GuiOptions(**json.loads(options_json)))
    task = asyncio.ensure_future(app.async_run(async_lib="asyncio"))
    await ui.until(lambda: task.done() or (app.sm is not None and app.sm.current == "home"), 30, "the app")
    if task.done():
        task.result()
    reply({"ok": True, "ready": True})
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    reader = asyncio.ensure_future(read_lines(queue))
    try:
        while (line := await queue.get()) is not None:
            try:
                command = json.loads(line)
                result = await execute(app, ui, command)
                reply({"ok": True} | result)
            except Exception as exc:
                reply({"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
                continue
            if command.get("op") == "quit":
                break
    finally:
        reader.cancel()
        app.stop()
        await asyncio.wait_for(task, 10)
        await app.shutdown()


async def execute(app: Any, ui: Any, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    if op == "join":
        home = app.view("home")
        await ui.type_into(home.ids.ticket_input, command["ticket"])
        await ui.tap(home.ids.join_button)
        await ui.until(lambda: app.in_call or home.error, 30, "joining")
        return {"in_call": app.in_call, "error": home.error}
    if op == "tap":
        await ui.tap(widget(app, command["widget"]))
        return {}
    if op == "chat":
        call = app.view("call")
        if not call.chat_open:
            await ui.tap(call.ids.chat_button)
        panel = app.view("chat")
        await ui.type_into(panel.ids.input, command["text"])
        await ui.tap(panel.ids.send_button)
        return {}
    if op == "download":
        return await download(app, ui, command["name"])
    if op == "state":
        return state(app)
    if op == "quit":
        return {}
    raise ValueError(f"unknown command {op!r}")


async def download(app: Any, ui: Any, name: str) -> dict[str, Any]:
    """Open the Files panel and tap Download on the row of the file called `name`."""
    call = app.view("call")
    await ui.tap(call.ids.files_button)
    panel = app.view("files")

    def row() -> Any:
        return next((r for r in panel.rows.values() if r.title == name and r.action == "download"), None)

    await ui.until(lambda: row() is not None and row().action_enabled, 30, f"{name} in the Files panel")
    await ui.tap(row().ids.action_button)
    return {}


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1]))
