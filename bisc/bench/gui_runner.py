"""The UI process of `bisc bench --suite gui`: the Kivy app in a window, in a call, measured.

Started by bisc.bench.gui as `python -m bisc.bench.gui_runner CONFIG_JSON`, with DISPLAY, KIVY_HOME,
KIVY_NO_ARGS and SDL_AUDIODRIVER set. It creates a channel through the app (the Create button's
call), prints the ticket, waits for `peers` remote tiles showing video at the expected size, lets
`warmup` seconds pass, then measures for `seconds`: window flips (real redraws) and how long each
buffer swap took, clock frames, each tile's uploads (PeerTile.show_frame's upload log: decoded ->
uploaded delay and the upload's own cost), the pictures each stream decoded, and this process's
CPU. JSON lines on stdout, in order: ticket, live, measuring, result; then it leaves and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bisc.bench.gui_sender import run_reporting
from bisc.bench.peer_process import emit

NAME = "Bench UI"
DRAIN_EVERY = 0.25  # s: the tiles' upload logs hold 256 entries, far more than 4 tiles fill in this


def _private_stdout() -> None:
    """Keep stdout for the JSON lines: whatever SDL, GL drivers or Kivy print goes to stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(fd, "w", buffering=1)


async def _until(condition: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _remote_tiles(app: Any) -> list[Any]:
    call = app._screens.get("call")
    return [] if call is None else [t for t in call.tiles.values() if not t.me]


def _live(tile: Any, size: tuple[int, int]) -> bool:
    return tile.texture is not None and tuple(tile.texture.size) == size


def _drain(tiles: list[Any], into: dict[str, list[tuple[float, float, float]]] | None) -> None:
    """Move each tile's upload log entries into `into[key]` (or drop them: warm-up)."""
    for tile in tiles:
        log = getattr(tile, "upload_log", None)
        while log:
            entry = log.popleft()
            if into is not None:
                into.setdefault(tile.key, []).append(entry)


def _receivers(app: Any) -> dict[str, Any]:
    """Each peer's camera receiver, keyed like the tiles."""
    from bisc.proto.media_control import CAMERA_STREAM

    video = app.channel.video if app.channel is not None else None
    if video is None:
        return {}
    return {str(peer): r for (peer, sid), r in video.receivers().items() if sid == CAMERA_STREAM}


def _decoded(app: Any) -> dict[str, int]:
    """Pictures decoded so far per peer's camera."""
    return {key: r.latest()[0] for key, r in _receivers(app).items()}


def _time_swaps(window: Any) -> list[tuple[float, float]]:
    """(start, duration) of every buffer swap from now on: under software GL the frame is drawn
    there, and the main thread (the app's network loop too) waits for it."""
    swaps: list[tuple[float, float]] = []
    flip = window.flip

    def timed_flip() -> None:
        start = time.monotonic()
        flip()
        swaps.append((start, time.monotonic() - start))

    window.flip = timed_flip  # the window's on_flip calls self.flip()
    return swaps


async def _measure(app: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    from kivy.clock import Clock
    from kivy.config import Config
    from kivy.core.window import Window
    from kivy.graphics.opengl import GL_RENDERER, glGetString

    size = (int(cfg["size"][0]), int(cfg["size"][1]))
    peers = int(cfg["peers"])
    live = await _until(
        lambda: sum(_live(t, size) for t in _remote_tiles(app)) >= peers, float(cfg["live_timeout"])
    )
    emit({"type": "live", "complete": live})
    await asyncio.sleep(float(cfg["warmup"]))
    tiles = _remote_tiles(app)
    _drain(tiles, None)
    flips: list[float] = []
    Window.bind(on_flip=lambda *_: flips.append(time.monotonic()))
    swaps = _time_swaps(Window)
    samples: dict[str, list[tuple[float, float, float]]] = {}
    emit({"type": "measuring"})
    decoded0, frames0 = _decoded(app), Clock.frames
    cpu0, main0, t0 = os.times(), time.thread_time(), time.monotonic()
    end = t0 + float(cfg["seconds"])
    while time.monotonic() < end:
        await asyncio.sleep(DRAIN_EVERY)
        _drain(tiles, samples)
    cpu1, main1, t1 = os.times(), time.thread_time(), time.monotonic()
    decoded1, frames1 = _decoded(app), Clock.frames
    _drain(tiles, samples)
    receivers = _receivers(app)
    tile_rows = []
    for tile in tiles:
        receiver = receivers.get(tile.key)
        kept = [s for s in samples.get(tile.key, []) if t0 <= s[0] <= t1]
        tile_rows.append(
            {
                "name": tile.name,
                "size": list(tile.texture.size) if tile.texture is not None else [0, 0],
                "uploads": len(kept),
                "decoded": decoded1.get(tile.key, 0) - decoded0.get(tile.key, 0),
                "delays_s": [s[1] for s in kept],
                "upload_s": [s[2] for s in kept],
                "stats": None if receiver is None else dataclasses.asdict(receiver.stats(time.monotonic())),
            }
        )
    return {
        "type": "result",
        "wall_s": t1 - t0,
        "flips": [t for t in flips if t0 <= t <= t1],
        "swaps_s": [d for t, d in swaps if t0 <= t <= t1],
        "clock_frames": frames1 - frames0,
        "cpu_s": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "main_thread_cpu_s": main1 - main0,
        "live": live,
        "tiles": tile_rows,
        "window": list(Window.size),
        "maxfps": Config.getint("graphics", "maxfps"),
        "renderer": glGetString(GL_RENDERER).decode(errors="replace"),  # llvmpipe under Xvfb: software GL
    }


async def _run(cfg: dict[str, Any]) -> None:
    from kivy.config import Config

    Config.set("graphics", "width", str(cfg["window"][0]))
    Config.set("graphics", "height", str(cfg["window"][1]))
    from kivy_app.app import BiscApp, GuiOptions  # opens the window: after the Config above

    root = Path(cfg["data_dir"])
    options = GuiOptions(
        data_dir=str(root / "ui"),
        name=NAME,
        bind="127.0.0.1:0",
        audio_in="none",
        audio_out="none",
        video_source="pattern:320x180",
        storage_dir=str(root / "ui-storage"),
    )
    app = BiscApp(options)
    run = asyncio.ensure_future(app.async_run(async_lib="asyncio"))
    try:
        started = await _until(lambda: run.done() or (app.sm is not None and app.sm.current == "home"), 30)
        if run.done():
            run.result()  # the app failed to start: say why
        if not started:
            raise TimeoutError("the app did not show Home in 30 s")
        channel = await app.create_channel(NAME)
        emit({"type": "ticket", "ticket": channel.ticket().to_text()})
        emit(await _measure(app, cfg))
    finally:
        app.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 10)
        await app.shutdown()


def main() -> None:
    _private_stdout()
    run_reporting(_run(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
