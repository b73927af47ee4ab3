"""The aiortc side of the video comparison: two RTCPeerConnections, one process each.

The sender's `VideoStreamTrack` produces the stamped test pattern
(`PatternSource`, paced at its frame rate, stamped with the capture time);
aiortc encodes it with its VP8 encoder (libvpx through PyAV, its own realtime
settings). Its bitrate follows the receiver's REMB between 0.25 and 1.5 Mb/s;
here it is pinned (aiortc's module limits and start value set to one figure)
so both stacks send the same rate. The receiver converts every picture
`track.recv()` returns to RGB (as a renderer would), reads the stamp for the
glass-to-glass delay (capture to the picture reaching the application) and
keeps a picture every PSNR_EVERY seconds for the PSNR, computed after the
measured window.

Signalling goes through the parent (each peer's stdin/stdout, one JSON object
per line); both peers gather loopback host candidates only, with no STUN
(`aiortc_voice._peer_connection`). CPU is time.process_time over each peer's
own window: `warmup` seconds after its first frame, then `seconds`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from fractions import Fraction
from typing import Any

from bisc.bench.aiortc_voice import _peer_connection
from bisc.bench.peer_process import STEP_TIMEOUT, PeerProcess, emit, read_parent, spawn_module
from bisc.bench.video_call import PSNR_EVERY, PSNR_MAX, psnr_figures
from bisc.bench.voice import quantile

VIDEO_CLOCK = 90_000


def _pin_bitrate(bitrate: int) -> None:
    from aiortc.codecs import vpx

    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = bitrate


class _Window:
    """`warmup` s after start(), `seconds` long: CPU and wall over it."""

    def __init__(self, warmup: float, seconds: float) -> None:
        self.warmup, self.seconds = warmup, seconds
        self.t0: float | None = None
        self.cpu0 = 0.0
        self.cpu = self.wall = 0.0
        self.closed = asyncio.Event()
        self._start: float | None = None

    def tick(self, now: float) -> bool:
        """Whether `now` is inside the window (opens and closes it as time passes)."""
        if self._start is None:
            self._start = now
        if self.closed.is_set():
            return False
        if self.t0 is None:
            if now - self._start < self.warmup:
                return False
            self.t0, self.cpu0 = now, time.process_time()
        if now - self.t0 >= self.seconds:
            self.cpu, self.wall = time.process_time() - self.cpu0, now - self.t0
            self.closed.set()
            return False
        return True


async def _sender(width: int, height: int, fps: float, bitrate: int, warmup: float, seconds: float) -> None:
    import av
    from aiortc import RTCSessionDescription, VideoStreamTrack

    from bisc.media.video_pattern import PatternSource

    _pin_bitrate(bitrate)
    window = _Window(warmup, seconds)
    source = PatternSource(width, height, fps)
    counts = {"frames": 0}

    class PatternTrack(VideoStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.t0: float | None = None

        async def recv(self) -> Any:
            if self.t0 is None:
                self.t0 = time.monotonic()
            delay = self.t0 + self.index / fps - time.monotonic()  # real-time pacing
            if delay > 0:
                await asyncio.sleep(delay)
            window.tick(time.monotonic())
            pattern = source.read_frame()
            frame = av.VideoFrame.from_ndarray(pattern.data, format="yuv420p")
            frame.pts = round(self.index * VIDEO_CLOCK / fps)
            frame.time_base = Fraction(1, VIDEO_CLOCK)
            self.index += 1
            counts["frames"] += 1
            return frame

    pc = _peer_connection()
    pc.addTrack(PatternTrack())
    await pc.setLocalDescription(await pc.createOffer())
    emit({"type": "offer", "sdp": pc.localDescription.sdp})
    answer = await read_parent()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    await asyncio.wait_for(window.closed.wait(), STEP_TIMEOUT + warmup + seconds)
    emit({"type": "done", "cpu": window.cpu, "wall": window.wall, "frames": counts["frames"]})
    await read_parent()  # "quit": keep sending until the receiver has measured
    await pc.close()


async def _receiver(width: int, height: int, warmup: float, seconds: float) -> None:
    from aiortc import MediaStreamError, RTCSessionDescription

    from bisc.media.video_pattern import read_pattern_stamp

    window = _Window(warmup, seconds)
    delays: list[float] = []
    kept: list[Any] = []
    state = {"pictures": 0, "unstamped": 0, "next_keep": 0.0, "last": 0.0, "max_gap": 0.0}
    sizes: set[str] = set()

    async def consume(track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            rgb = frame.to_ndarray(format="rgb24")
            stamp = read_pattern_stamp(rgb, "rgb24")
            wall, now = time.time(), time.monotonic()
            if not window.tick(now):
                continue
            if state["last"]:
                state["max_gap"] = max(state["max_gap"], now - state["last"])
            state["last"] = now
            state["pictures"] += 1
            sizes.add(f"{frame.width}x{frame.height}")
            if stamp is None:
                state["unstamped"] += 1
                continue
            delays.append(wall - stamp[1] / 1000.0)
            if now >= state["next_keep"] and len(kept) < PSNR_MAX:
                kept.append(rgb)
                state["next_keep"] = now + PSNR_EVERY

    tasks: list[asyncio.Task[None]] = []
    pc = _peer_connection()
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    offer = await read_parent()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    emit({"type": "answer", "sdp": pc.localDescription.sdp})
    await asyncio.wait_for(window.closed.wait(), STEP_TIMEOUT + warmup + seconds)
    emit(
        {
            "type": "done",
            "cpu": window.cpu,
            "wall": window.wall,
            "pictures": state["pictures"],
            "unstamped": state["unstamped"],
            "max_gap_s": state["max_gap"],
            "sizes": sorted(sizes),
            "e2e": delays,
        }
        | psnr_figures(kept, (width, height))
    )
    await read_parent()  # "quit"
    await pc.close()
    for task in tasks:
        task.cancel()


# ---------------------------------------------------------------- parent side


async def _spawn(python: str, *args: str) -> PeerProcess:
    return await spawn_module("bisc.bench.aiortc_video", args, f"aiortc {args[0]} peer", python=python)


async def run_aiortc_video_async(
    seconds: float = 5.0,
    warmup: float = 2.0,
    size: tuple[int, int] = (1280, 720),
    fps: float = 30.0,
    bitrate: int = 2_500_000,
    python: str = sys.executable,
) -> dict[str, Any]:
    """Send the pattern from one aiortc peer to another on loopback; the figures of `delay_figures`."""
    dims = [str(size[0]), str(size[1])]
    timing = [str(warmup), str(seconds)]
    sender = await _spawn(python, "send", *dims, str(fps), str(bitrate), *timing)
    receiver = await _spawn(python, "recv", *dims, *timing)
    try:
        offer = await sender.read()
        receiver.send({"type": "offer", "sdp": offer["sdp"]})
        answer = await receiver.read()
        sender.send({"type": "answer", "sdp": answer["sdp"]})
        limit = 2 * STEP_TIMEOUT + warmup + seconds
        sent = await sender.read(limit)
        got = await receiver.read(limit)
        for peer in (sender, receiver):
            peer.send({"type": "quit"})
    finally:
        for peer in (sender, receiver):
            await peer.finish()
    delays = got["e2e"]
    if not delays:
        raise RuntimeError(f"aiortc: no stamped pictures in the window ({got['pictures']} pictures)")
    return {
        "p50_ms": 1000.0 * quantile(delays, 0.50),
        "p95_ms": 1000.0 * quantile(delays, 0.95),
        "max_ms": 1000.0 * max(delays),
        "samples": len(delays),
        "fps": got["pictures"] / got["wall"] if got["wall"] else 0.0,
        "max_gap_s": got["max_gap_s"],
        "unstamped": got["unstamped"],
        "received_size": ", ".join(got["sizes"]),
        "sent_bitrate": bitrate,
        "cpu_send_pct": 100.0 * sent["cpu"] / sent["wall"] if sent["wall"] else 0.0,
        "cpu_recv_pct": 100.0 * got["cpu"] / got["wall"] if got["wall"] else 0.0,
        "psnr_db": got["psnr_db"],
        "psnr_min_db": got["psnr_min_db"],
        "psnr_pictures": got["psnr_pictures"],
    }


def run_aiortc_video(**kwargs: Any) -> dict[str, Any]:
    return asyncio.run(run_aiortc_video_async(**kwargs))


def main(argv: list[str]) -> None:
    role, width, height, *rest = argv
    if role == "send":
        fps, bitrate, warmup, seconds = rest
        asyncio.run(_sender(int(width), int(height), float(fps), int(bitrate), float(warmup), float(seconds)))
    else:
        warmup, seconds = rest
        asyncio.run(_receiver(int(width), int(height), float(warmup), float(seconds)))


if __name__ == "__main__":
    main(sys.argv[1:])
