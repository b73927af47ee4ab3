"""A sending peer of `bisc bench --suite gui`, one process each: `python -m bisc.bench.gui_sender CFG`.

It joins the UI's channel, waits for the full mesh, then sends the test pattern as its camera with
the target pinned (`pin_target`), taking no one's video; by default its encoder replays a loop the
bench encoded once (`ReplayEncoder`). JSON lines on stdout: ready, sending, done (CPU and sent
frames between the bench's "mark" and "report"), then it leaves on "quit".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bisc.bench.peer_process import emit, read_parent
from bisc.bench.video_call import MESH_TIMEOUT, pin_target

if TYPE_CHECKING:
    from bisc.media.video_types import EncodedFrame, VideoFrameIn


class ReplayEncoder:
    """Stands in for a sender's encoder: the pattern encoded once (at the pinned size and bitrate),
    replayed in a loop with fresh timestamps; a keyframe request restarts the loop (its first frame
    is one). The UI decodes the same VP8 either way, but 4 live 720p encoders need about 4 cores
    (31 ms of CPU per frame here), which a small machine would take from the UI under test."""

    def __init__(self, frames: Sequence[EncodedFrame]) -> None:
        if not frames or not frames[0].keyframe:
            raise ValueError("a replay loop starts with a keyframe")
        self.frames = list(frames)
        self._next = 0
        self._t0: float | None = None
        self._last_pts = -1

    def encode(self, frame: VideoFrameIn, force_keyframe: bool = False) -> list[EncodedFrame]:
        from bisc.media.video_codec import CLOCK_RATE

        if force_keyframe:
            self._next = 0
        base = self.frames[self._next]
        self._next = (self._next + 1) % len(self.frames)
        t = frame.capture_time
        if self._t0 is None:
            self._t0 = t
        pts = max(self._last_pts + 1, round((t - self._t0) * CLOCK_RATE))  # as VideoEncoder: increasing
        self._last_pts = pts
        return [dataclasses.replace(base, pts=pts, capture_time=t)]


def encode_loop(
    size: tuple[int, int], fps: float, bps: int, seconds: float = 2.0, settle: float = 1.0
) -> list[EncodedFrame]:
    """`seconds` of the test pattern in VP8 on a simulated clock (rate control sees real spacing),
    from a keyframe forced after `settle` seconds: a fresh encoder's first keyframe is ~40x larger
    than the ones it makes on request later, and the loop restarts at its keyframe on each request."""
    from bisc.media.video_codec import VideoEncoder
    from bisc.media.video_pattern import PatternSource

    now = 0.0

    def clock() -> float:
        return now

    source = PatternSource(size[0], size[1], fps)
    source.clock = clock
    encoder = VideoEncoder("vp8", size[0], size[1], fps, bps, keyframe_interval=None)
    first = round(settle * fps)
    out: list[EncodedFrame] = []
    for i in range(first + max(1, round(seconds * fps))):
        now = i / fps
        encoded = encoder.encode(source.read_frame(), force_keyframe=i == first)
        if i >= first:
            out += encoded
    return out


def _datagrams(conn: Any) -> tuple[int, int]:
    """Datagrams offered to a connection so far, and of those dropped (refused on a full queue, or
    still queued at their deadline: the stale ones also count as sent)."""
    if conn is None:
        return 0, 0
    stats = conn.stats
    return stats.datagrams_sent + stats.datagrams_dropped - stats.datagrams_stale, stats.datagrams_dropped


async def _peer(cfg: dict[str, Any]) -> None:
    """Join, wait for the mesh, send the pinned pattern (taking no one's video), report CPU."""
    from bisc.app import Node
    from bisc.media.video_pattern import PatternSource
    from bisc.proto.media_control import CAMERA_STREAM
    from bisc.ticket import BiscTicket

    ticket = BiscTicket.parse(cfg["ticket"])
    ui = ticket.bootstrap[0].endpoint_id  # the UI created the channel: its ticket names it
    size, fps, bps = (int(cfg["size"][0]), int(cfg["size"][1])), float(cfg["fps"]), int(cfg["pin_bps"])
    replay = cfg.get("replay_file")
    frames = pickle.loads(Path(replay).read_bytes()) if replay else None  # the bench's own file
    async with Node(data_dir=Path(cfg["data_dir"]), display_name=cfg["name"], bind="127.0.0.1:0") as node:
        channel = await node.join(ticket)
        deadline = time.monotonic() + MESH_TIMEOUT
        while len(channel.members) < int(cfg["peers"]) or channel.connected_peers != set(channel.members):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no full mesh of {cfg['peers'] + 1} nodes in {MESH_TIMEOUT} s")
            await asyncio.sleep(0.02)
        emit({"type": "ready"})
        await read_parent()  # "send"
        video: Any = await channel.start_video()
        for member in channel.members:
            if member != ui:
                video.subscribe(member, CAMERA_STREAM, False)
        pinned = threading.Event()

        def source() -> PatternSource:  # on the capture thread: its first frame waits for the pin
            pinned.wait(10)
            return PatternSource(size[0], size[1], fps)

        await channel.start_camera(source, size=size, fps=fps)
        sender = video.sender(CAMERA_STREAM)
        pin_target(sender, bps)
        if frames is not None:
            sender.encoder.encode = ReplayEncoder(frames).encode
        pinned.set()
        emit({"type": "sending"})
        await read_parent()  # "mark": the UI's window starts
        local = video._local[CAMERA_STREAM]  # its stale count: frames too late for the network
        cpu0, t0, frames0, stale0 = time.process_time(), time.monotonic(), sender.frames_encoded, local.stale
        link = channel._connections.get(ui)  # its datagram counters: is the UI's video lost here?
        offered0, dropped0 = _datagrams(link)
        await read_parent()  # "report": it ended
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        offered, dropped = _datagrams(link)
        emit(
            {
                "type": "done",
                "name": cfg["name"],
                "cpu_pct": 100.0 * cpu / wall,
                "encoded_fps": (sender.frames_encoded - frames0) / wall,
                "sent_fps": (sender.frames_encoded - frames0 - (local.stale - stale0)) / wall,
                "rung": sender.target.rung,
                "size": [sender.target.width, sender.target.height],
                "bitrate": sender.encoder.bitrate,
                "datagrams_to_ui": offered - offered0,
                "datagrams_dropped": dropped - dropped0,
                "rtt_ms": 1000.0 * link.stats.rtt if link and link.stats.rtt is not None else None,
            }
        )
        await read_parent()  # "quit"
        await channel.stop_video()


def run_reporting(main: Coroutine[Any, Any, None]) -> None:
    """Run a bench process's main coroutine; a failure becomes an "error" line for the bench."""
    try:
        asyncio.run(main)
    except Exception as exc:
        emit({"type": "error", "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})


def main() -> None:
    run_reporting(_peer(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
