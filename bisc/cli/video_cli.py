"""Video for `bisc create|join`: --video, --screen and --video-out DIR."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

from bisc.app.channel import Channel
from bisc.app.video import VideoCall
from bisc.errors import BiscError
from bisc.media.video_codec import CODECS, VideoCodec
from bisc.media.video_endpoints import open_camera_source, open_screen_source
from bisc.media.video_snapshot import write_png
from bisc.media.video_types import VideoCodecError

SNAPSHOT_INTERVAL = 3.0


async def start_video(
    channel: Channel, video: str | None, screen: str | None, out: str | None, codec: str = "vp8"
) -> VideoCall:
    """Receive video, and send the camera/screen sources asked for. BiscError if one cannot start."""
    if codec not in CODECS:
        raise VideoCodecError(f"unknown video codec {codec!r}: use {', '.join(CODECS)}")
    chosen: VideoCodec = "h264" if codec == "h264" else "vp8"
    call = await channel.start_video(read_stamps=(video or "").startswith("pattern"))
    if video and video != "none":
        source, size = await asyncio.to_thread(open_camera_source, video)
        await channel.start_camera(source, size=size, codec=chosen)
    if screen and screen != "none":
        # Probe the size here, then open it again on the capture thread (screen grabbers are per-thread).
        probe, size = await asyncio.to_thread(open_screen_source, screen)
        probe.close()
        await channel.start_screen(lambda: open_screen_source(screen)[0], size=size, codec=chosen)
    if out and out != "none":
        Path(out).expanduser().mkdir(parents=True, exist_ok=True)
    return call


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "peer"


async def write_snapshots(channel: Channel, call: VideoCall, out_dir: str) -> None:
    """Every few seconds: the newest picture of each peer stream as PNG, and one stats line each."""
    directory = Path(out_dir).expanduser()
    written: dict[tuple[object, int], int] = {}
    stats_file = directory / "stats.jsonl"
    while True:
        await asyncio.sleep(SNAPSHOT_INTERVAL)
        stats = call.stats()
        lines = []
        for (peer, sid), (version, picture) in call.frames().items():
            member = channel.members.get(peer)
            name = member.name if member else peer.short()
            kind = "camera" if sid == 1 else "screen"
            if picture is not None and written.get((peer, sid)) != version:
                path = directory / f"{_safe(name)}-{peer.short()}-{kind}.png"
                try:
                    await asyncio.to_thread(write_png, picture, path)
                except (OSError, BiscError):
                    continue
                written[(peer, sid)] = version
            st = stats.get((peer, sid))
            if st is not None:
                lines.append(
                    json.dumps(
                        {"time": round(time.time(), 3), "peer": str(peer), "name": name, "stream": kind}
                        | st.__dict__
                    )
                )
        if lines:
            with stats_file.open("a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
