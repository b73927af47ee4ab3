"""`bisc bench --suite gui`: how the Kivy call screen keeps up with live video, on this machine.

The app runs in its own process (`bisc.bench.gui_runner`) in a real window: on DISPLAY if set,
else on a private Xvfb started here. It creates a channel through the app; `peers` nodes join it,
one process each (`bisc.bench.gui_sender`), and send the test pattern at `size`, 30 fps, VP8, with
the sender's target pinned as in the video bench (`pin_target`), so the stream is at that size
from the start. The senders take no one's video (only the UI decodes), and by default replay a
loop of the pattern that the bench encoded once (`ReplayEncoder`; `replay=False`: live encoders,
which at 720p need about a core each): the machine's CPU goes to the UI under test. Once every
remote tile shows video at `size` (or `live_timeout` passed), after `warmup`, for `seconds`:

- redraws/s: window flips (Kivy flips only when something changed), beside clock frames/s;
- per tile: textures uploaded/s (distinct pictures shown) beside pictures decoded/s, and the
  receiver's loss (last report interval) and keyframe requests (since the stream started);
- decoded -> uploaded delay (DecodedFrame.decoded_at to the end of PeerTile.show_frame's
  blit_buffer), p50/p95, and the upload's own cost (tobytes + blit_buffer) per frame;
- buffer swaps: how long each took (with software GL the frame is drawn there, and the main
  thread, which also runs the app's network loop, waits);
- CPU in % of one core: the UI process (all threads, os.times) and its main thread (Kivy and
  asyncio), each sender, and the private Xvfb if the bench started one; per sender also the share
  of its datagrams to the UI dropped before sending (late: the UI's slow ACKs hold the
  congestion window) and its RTT to the UI.

Figures are as noisy as the machine: other work on it takes the same cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import itertools
import json
import math
import os
import pickle
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bisc.bench.gui_sender import encode_loop
from bisc.bench.peer_process import STEP_TIMEOUT, PeerProcess, spawn_module, step
from bisc.bench.video import PIN_360P_BPS, PIN_720P_BPS
from bisc.bench.video_call import MESH_TIMEOUT
from bisc.bench.voice import quantile

TILE_HEADERS = (
    "tile",
    "size",
    "uploads/s",
    "decoded/s",
    "delay p50 ms",
    "delay p95 ms",
    "loss %",
    "kf asked",
)
SENDER_HEADERS = (
    "sender",
    "sent size",
    "rung",
    "encoded fps",
    "sent fps",
    "kb/s",
    "dropped %",
    "rtt ms",
    "CPU %",
)
STARTUP_TIMEOUT = 60.0  # s: Kivy's first window on a busy machine
KIVY_ENV = {
    "SDL_AUDIODRIVER": "dummy",
    "KIVY_NO_ARGS": "1",
    "KIVY_LOG_MODE": "PYTHON",
    "KIVY_NO_FILELOG": "1",
    "KIVY_NO_CONSOLELOG": "1",
}


@dataclass(frozen=True)
class GuiBenchConfig:
    peers: int = 4
    size: tuple[int, int] = (1280, 720)
    pin_bps: int = PIN_720P_BPS
    fps: float = 30.0
    warmup: float = 3.0
    seconds: float = 15.0
    window: tuple[int, int] = (1280, 800)
    live_timeout: float = 30.0
    replay: bool = True  # senders replay a pre-encoded loop (see ReplayEncoder); False: live VP8

    @classmethod
    def quick(cls) -> GuiBenchConfig:
        return cls(peers=2, size=(640, 360), pin_bps=PIN_360P_BPS, warmup=1.5, seconds=4.0, live_timeout=20.0)


# ---------------------------------------------------------------- parent side


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: Xvfb ends with the bench, never outlives it


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds another process has used so far (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, in ticks


@contextlib.contextmanager
def display() -> Iterator[tuple[str, int | None]]:
    """DISPLAY if set (and no server pid), else a private Xvfb for the duration: its name and pid."""
    current = os.environ.get("DISPLAY")
    if current:
        yield current, None
        return
    if shutil.which("Xvfb") is None:
        raise RuntimeError("no DISPLAY, and Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1400x1000x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number.isdigit():
            raise RuntimeError("Xvfb did not start")
        yield f":{number}", proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


async def _spawn(
    args: Sequence[str], name: str, root: Path, env: dict[str, str] | None = None
) -> PeerProcess:
    return await spawn_module(args[0], args[1:], name, log=root / f"{name}.log", env=env)


async def run_gui_call_async(
    cfg: GuiBenchConfig, screen: str, server: int | None = None, workdir: Path | None = None
) -> dict[str, Any]:
    """One measured call on display `screen`: the UI runner's raw result, each peer's report and,
    given the X server's pid, its CPU over the same window (% of one core). Logs and data dirs go
    to `workdir` if given (kept), else to a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="bisc-gui-bench-") as tmp:
        root = Path(workdir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        ui_env = {**os.environ, **KIVY_ENV, "DISPLAY": screen, "KIVY_HOME": str(root / "kivy")}
        ui_cfg = dataclasses.asdict(cfg) | {"data_dir": str(root)}
        procs: list[PeerProcess] = []
        try:
            ui = await _spawn(["bisc.bench.gui_runner", json.dumps(ui_cfg)], "ui", root, ui_env)
            procs.append(ui)
            # Encoded here, once, while the UI starts: in a peer it would starve its loop (and links).
            replay_task = (
                asyncio.ensure_future(asyncio.to_thread(encode_loop, cfg.size, cfg.fps, cfg.pin_bps))
                if cfg.replay
                else None
            )
            ticket = (await ui.expect("ticket", STARTUP_TIMEOUT))["ticket"]
            replay_file = root / "replay.pickle"
            if replay_task is not None:
                replay_file.write_bytes(pickle.dumps(await replay_task))
            peers: list[PeerProcess] = []
            for i in range(1, cfg.peers + 1):
                peer_cfg = dataclasses.asdict(cfg) | {
                    "name": f"P{i}",
                    "ticket": ticket,
                    "data_dir": str(root / f"p{i}"),
                    "replay_file": str(replay_file) if cfg.replay else None,
                }
                peers.append(await _spawn(["bisc.bench.gui_sender", json.dumps(peer_cfg)], f"P{i}", root))
            procs += peers
            await step(peers, None, "ready", MESH_TIMEOUT + STEP_TIMEOUT)
            await step(peers, "send", "sending")
            await ui.expect("live", cfg.live_timeout + STEP_TIMEOUT)
            await ui.expect("measuring", cfg.warmup + STEP_TIMEOUT)
            await step(peers, "mark", None)
            server0, t0 = process_cpu_s(server), time.monotonic()
            result = await ui.expect("result", cfg.seconds + STEP_TIMEOUT)
            server1, t1 = process_cpu_s(server), time.monotonic()
            reports = await step(peers, "report", "done")
            await step(peers, "quit", None)
        finally:
            for proc in procs:
                await proc.finish()
    server_pct = None if server0 is None or server1 is None else 100.0 * (server1 - server0) / (t1 - t0)
    return {"ui": result, "peers": reports, "server_cpu_pct": server_pct}


# ---------------------------------------------------------------- figures (pure)


def _ms(samples: Sequence[float], q: float) -> float | None:
    return 1000.0 * quantile(samples, q) if samples else None


def figures(call: dict[str, Any], cfg: GuiBenchConfig) -> dict[str, Any]:
    """The suite's figures from one call's raw results (see run_gui_call_async)."""
    ui = call["ui"]
    wall = float(ui["wall_s"])
    flips = sorted(ui["flips"])
    gaps = [b - a for a, b in itertools.pairwise(flips)]
    tiles = []
    for t in ui["tiles"]:
        tiles.append(
            {
                "name": t["name"],
                "size": f"{t['size'][0]}x{t['size'][1]}",
                "uploads": t["uploads"],
                "upload_fps": t["uploads"] / wall,
                "decoded_fps": t["decoded"] / wall,
                "delay_p50_ms": _ms(t["delays_s"], 0.50),
                "delay_p95_ms": _ms(t["delays_s"], 0.95),
                "loss_pct": (t.get("stats") or {}).get("loss_pct"),
                "keyframe_requests": (t.get("stats") or {}).get("keyframe_requests"),
            }
        )
    delays = [d for t in ui["tiles"] for d in t["delays_s"]]
    costs = [c for t in ui["tiles"] for c in t["upload_s"]]
    big = [c for t in ui["tiles"] if tuple(t["size"]) == tuple(cfg.size) for c in t["upload_s"]]
    return {
        "window_s": wall,
        "live_tiles": sum(1 for t in ui["tiles"] if tuple(t["size"]) == tuple(cfg.size)),
        "peers": cfg.peers,
        "size": f"{cfg.size[0]}x{cfg.size[1]}",
        "window": "x".join(str(v) for v in ui["window"]),
        "maxfps": ui["maxfps"],
        "renderer": ui["renderer"],
        "redraw_fps": len(flips) / wall,
        "clock_fps": ui["clock_frames"] / wall,
        "redraw_gap_p95_ms": _ms(gaps, 0.95),
        "redraw_gap_max_ms": 1000.0 * max(gaps) if gaps else None,
        "swap_ms_p50": _ms(ui["swaps_s"], 0.50),
        "swap_ms_p95": _ms(ui["swaps_s"], 0.95),
        "swap_share_pct": 100.0 * sum(ui["swaps_s"]) / wall,  # of the main thread's time
        "tiles": tiles,
        "upload_fps_total": sum(t["upload_fps"] for t in tiles),
        "delay_p50_ms": _ms(delays, 0.50),
        "delay_p95_ms": _ms(delays, 0.95),
        "upload_ms_p50": _ms(big, 0.50),
        "upload_ms_p95": _ms(big, 0.95),
        "upload_ms_mean": 1000.0 * statistics.fmean(big) if big else None,
        "upload_ms_all_p50": _ms(costs, 0.50),
        "ui_cpu_pct": 100.0 * ui["cpu_s"] / wall,
        "ui_main_thread_cpu_pct": 100.0 * ui["main_thread_cpu_s"] / wall,
        "senders": call["peers"],
        "sender_cpu_pct_total": sum(p["cpu_pct"] for p in call["peers"]),
        "xvfb_cpu_pct": call.get("server_cpu_pct"),
        "cores": os.cpu_count() or 1,
    }


# ---------------------------------------------------------------- the suite


def run(quick: bool = False, config: GuiBenchConfig | None = None) -> dict[str, Any]:
    cfg = config or (GuiBenchConfig.quick() if quick else GuiBenchConfig())
    report: dict[str, Any] = {"config": dataclasses.asdict(cfg)}
    load = os.getloadavg()[0]  # how busy the machine was: the figures depend on it
    try:
        with display() as (screen, server):
            report |= figures(asyncio.run(run_gui_call_async(cfg, screen, server)), cfg)
    except Exception as exc:  # reported like the other suites' failures, not raised
        report["error"] = f"{type(exc).__name__}: {str(exc).strip()[:600]}"
    report["load_1min"] = [load, os.getloadavg()[0]]
    return report


def _f(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def format_report(report: dict[str, Any]) -> str:
    from bisc.cli.output import table

    cfg = report["config"]
    w, h = cfg["size"]
    lines = [
        f"\nCall screen under a real window: {cfg['peers']} peers (one process each) sending the "
        f"{w}x{h} VP8 test pattern at {cfg['fps']:g} fps "
        f"({'a pre-encoded loop' if cfg['replay'] else 'live encoders'}) to the Kivy app (its own process), "
        f"{cfg['seconds']:g} s after {cfg['warmup']:g} s warm-up (figures are noisy: other work on "
        "this machine shares its cores):"
    ]
    if "error" in report:
        lines.append(f"  failed: {report['error']}")
        return "\n".join(lines)
    r = report
    lines.append(
        f"  redraws: {r['redraw_fps']:.1f}/s (window flips; clock {r['clock_fps']:.1f} frames/s, maxfps "
        f"{r['maxfps']}; gap between redraws p95 {_f(r['redraw_gap_p95_ms'], '.0f')} ms, max "
        f"{_f(r['redraw_gap_max_ms'], '.0f')} ms), window {r['window']}, {r['live_tiles']}/{r['peers']} "
        f"tiles live at {r['size']}"
    )
    lines.append(
        f"  buffer swap (where software GL draws; the main thread, network loop included, waits): p50 "
        f"{_f(r['swap_ms_p50'])} ms, p95 {_f(r['swap_ms_p95'])} ms, {r['swap_share_pct']:.0f}% of the window"
    )
    lines.append(
        f"  decoded -> uploaded: p50 {_f(r['delay_p50_ms'])} ms, p95 {_f(r['delay_p95_ms'])} ms; upload "
        f"(tobytes + blit_buffer) per {r['size']} frame: p50 {_f(r['upload_ms_p50'], '.2f')} ms, p95 "
        f"{_f(r['upload_ms_p95'], '.2f')} ms, mean {_f(r['upload_ms_mean'], '.2f')} ms"
    )
    lines.append(
        f"  CPU (% of one core, {r['cores']} cores): UI process {r['ui_cpu_pct']:.0f} (main thread "
        f"{r['ui_main_thread_cpu_pct']:.0f}), senders {r['sender_cpu_pct_total']:.0f} in all, "
        + ("X server not measured" if r["xvfb_cpu_pct"] is None else f"private Xvfb {r['xvfb_cpu_pct']:.1f}")
    )
    load = r.get("load_1min", [math.nan, math.nan])
    lines.append(
        f"  machine: load average {load[0]:.1f} -> {load[1]:.1f} (1 min); GL renderer {r['renderer']}"
    )
    lines.append(
        table(
            TILE_HEADERS,
            [
                [
                    t["name"],
                    t["size"],
                    f"{t['upload_fps']:.1f}",
                    f"{t['decoded_fps']:.1f}",
                    _f(t["delay_p50_ms"]),
                    _f(t["delay_p95_ms"]),
                    _f(t["loss_pct"]),
                    "-" if t["keyframe_requests"] is None else str(t["keyframe_requests"]),
                ]
                for t in r["tiles"]
            ],
        )
    )
    lines.append(
        table(
            SENDER_HEADERS,
            [
                [
                    p["name"],
                    f"{p['size'][0]}x{p['size'][1]}",
                    str(p["rung"]),
                    f"{p['encoded_fps']:.1f}",
                    f"{p['sent_fps']:.1f}",
                    f"{p['bitrate'] / 1000:.0f}",
                    _f(
                        100.0 * p["datagrams_dropped"] / p["datagrams_to_ui"]
                        if p["datagrams_to_ui"]
                        else None
                    ),
                    _f(p["rtt_ms"]),
                    f"{p['cpu_pct']:.0f}",
                ]
                for p in r["senders"]
            ],
        )
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bisc.bench.gui", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(quick=args.quick)
    print(json.dumps(report, indent=1) if args.json else format_report(report))


if __name__ == "__main__":
    main()
