"""One measured video call of the video bench: N bisc peers on loopback, one process each.

The parent (`run_video_call`) starts each peer as `python -m bisc.bench.video --peer CFG` and steps
them through JSON lines on their stdin and stdout: the first peer creates the channel and hands out
its ticket, the others join; once the mesh is full everyone takes video, then the senders send the
stamped test pattern with their target pinned (`pin_target`), and each peer measures what it
receives (fps, longest gap, freezes, glass-to-glass delays, its CPU; with keep_pictures the PSNR
against the regenerated pattern) and reports it (processes: `bisc.bench.peer_process`). `pin_target`
also serves the gui bench's senders, `psnr_figures` the aiortc comparison.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bisc.bench.peer_process import STEP_TIMEOUT, PeerProcess, emit, read_parent, run_peer, spawn_module, step

MESH_TIMEOUT = 30.0
POLL = 0.02  # s between looks at the receivers' newest picture (gap measurement)
PSNR_EVERY = 0.5  # s between pictures kept for PSNR
PSNR_MAX = 12  # pictures kept for PSNR per stream


# ---------------------------------------------------------------- helpers shared with aiortc_video


def reference_rgb(picture: Any, source_size: tuple[int, int]) -> Any:
    """The pattern frame a received RGB picture was made from (by its stamp), regenerated at the
    source size and scaled to the picture's size as an encoder's scaler would; None if unstamped."""
    import av

    from bisc.media.video_pattern import PatternSource, read_pattern_stamp

    stamp = read_pattern_stamp(picture, "rgb24")
    if stamp is None:
        return None
    source = PatternSource(source_size[0], source_size[1], 30.0, start=stamp[0])
    source.clock = lambda: stamp[1] / 1000.0
    frame = source.read_frame()
    yuv = av.VideoFrame.from_ndarray(frame.data, format="yuv420p")
    height, width = picture.shape[:2]
    return yuv.reformat(width=width, height=height, format="rgb24").to_ndarray()


def psnr_figures(pictures: Sequence[Any], source_size: tuple[int, int]) -> dict[str, Any]:
    """PSNR of each received RGB picture against its regenerated source frame (unstamped ones skipped)."""
    from bisc.media.video_codec import psnr

    values = []
    for picture in pictures:
        ref = reference_rgb(picture, source_size)
        if ref is not None:
            values.append(min(99.0, psnr(picture, ref)))
    if not values:
        return {"psnr_db": None, "psnr_min_db": None, "psnr_pictures": 0}
    return {
        "psnr_db": statistics.fmean(values),
        "psnr_min_db": min(values),
        "psnr_pictures": len(values),
    }


def pin_target(sender: Any, bps: int) -> None:
    """Make `sender` act on a fixed estimate of `bps` from now on, and climb the ladder to the rung
    that estimate allows at once (the ladder holds each step up for UP_HOLD seconds)."""
    from bisc.media.video_ladder import UP_HOLD

    original = sender.set_estimate

    def pinned(estimate_bps: int, now: float, reserve_bps: int = 0) -> Any:
        return original(bps, now, reserve_bps)

    sender.set_estimate = pinned
    step = UP_HOLD + 0.1
    base = time.monotonic() - 6 * step
    for i in range(5):  # each pair of calls UP_HOLD apart climbs one rung, as far as bps allows
        original(bps, base + i * step)
    original(bps, time.monotonic())


# ---------------------------------------------------------------- peer process


async def _peer(cfg: dict[str, Any]) -> None:
    """One node: join the call, wait for the mesh, send (maybe) and receive video, measure, report."""
    from bisc.app import Node
    from bisc.media.video_pattern import PatternSource
    from bisc.proto.media_control import CAMERA_STREAM
    from bisc.ticket import BiscTicket

    expected = int(cfg["peers"]) - 1
    senders: list[int] = cfg["senders"]
    width, height = cfg["size"]
    streams_expected = sum(1 for s in senders if s != cfg["index"])
    async with Node(
        data_dir=Path(cfg["data_dir"]), display_name=f"p{cfg['index']}", bind="127.0.0.1:0"
    ) as node:
        if cfg["ticket"] is None:
            channel: Any = await node.create_channel()
            emit({"type": "ticket", "ticket": channel.ticket().to_text()})
        else:
            channel = await node.join(BiscTicket.parse(cfg["ticket"]))
        deadline = time.monotonic() + MESH_TIMEOUT
        while len(channel.members) < expected or channel.connected_peers != set(channel.members):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no full mesh of {expected + 1} peers in {MESH_TIMEOUT} s")
            await asyncio.sleep(0.02)
        emit({"type": "ready"})
        await read_parent()  # "go": everyone takes video before anyone offers it
        video: Any = await channel.start_video(read_stamps=bool(cfg["read_stamps"]))
        emit({"type": "video_on"})
        await read_parent()  # "send"
        sender = None
        if cfg["index"] in senders:
            await channel.start_camera(
                PatternSource(width, height, float(cfg["fps"])), size=(width, height), fps=float(cfg["fps"])
            )
            sender = video.sender(CAMERA_STREAM)
            pin_target(sender, int(cfg["pin_bps"]))
        emit({"type": "media"})
        # Warm-up: every expected stream decoding, and `warmup` seconds of it.
        start = time.monotonic()
        deadline = start + float(cfg["warmup"]) + STEP_TIMEOUT
        while True:
            receivers = video.receivers()
            live = [r for r in receivers.values() if r.latest()[0] > 0]
            if len(live) >= streams_expected and time.monotonic() - start >= float(cfg["warmup"]):
                break
            if time.monotonic() > deadline:
                break  # measure what there is: the missing streams show as 0 fps
            await asyncio.sleep(POLL)
        result = await _measure(video, float(cfg["seconds"]), streams_expected, bool(cfg["keep_pictures"]))
        _finish_result(result, (width, height))  # PSNR after the measured window: the bench's work
        if sender is not None:
            result["sender"] = {
                "rung": sender.target.rung,
                "width": sender.target.width,
                "height": sender.target.height,
                "bitrate": sender.encoder.bitrate,
                "frames_encoded": sender.frames_encoded,
                "keyframes": sender.keyframes,
                "bytes_encoded": sender.bytes_encoded,
            }
        emit(result)
        await read_parent()  # "quit": keep sending until every peer has measured
        await channel.stop_video()


async def _measure(video: Any, seconds: float, streams_expected: int, keep_pictures: bool) -> dict[str, Any]:
    from bisc.media.video_receiver import DELAY_SAMPLES

    receivers = video.receivers()
    cpu0, t0 = time.process_time(), time.monotonic()
    start = {key: (r.latest()[0], len(r.e2e_samples()), r.freezes) for key, r in receivers.items()}
    last_version = {key: v for key, (v, _, _) in start.items()}
    last_change = dict.fromkeys(start, t0)
    max_gap = dict.fromkeys(start, 0.0)
    kept: dict[Any, list[Any]] = {key: [] for key in start}
    next_keep = t0
    end = t0 + seconds
    while (now := time.monotonic()) < end:
        for key, receiver in video.receivers().items():
            if key not in start:  # a stream that came during the window: counted from here
                start[key] = (0, 0, 0)
                last_version[key], last_change[key], max_gap[key], kept[key] = 0, t0, 0.0, []
            version, picture = receiver.latest()
            if version != last_version[key]:
                max_gap[key] = max(max_gap[key], now - last_change[key])
                last_version[key], last_change[key] = version, now
            if keep_pictures and now >= next_keep and picture is not None and len(kept[key]) < PSNR_MAX:
                kept[key].append(picture.data)  # a reference only: pictures are never mutated
        if keep_pictures and now >= next_keep:
            next_keep = now + PSNR_EVERY
        await asyncio.sleep(POLL)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    streams = []
    for key, receiver in video.receivers().items():
        v0, n0, f0 = start.get(key, (0, 0, 0))
        version, picture = receiver.latest()
        samples = receiver.e2e_samples()
        # The receiver keeps its last DELAY_SAMPLES delays: past that, the window is the newest ones.
        window = samples[n0:] if len(samples) < DELAY_SAMPLES else samples[-max(1, version - v0) :]
        gap = max(max_gap.get(key, 0.0), time.monotonic() - last_change.get(key, t0))
        stats = receiver.stats(time.monotonic())
        streams.append(
            {
                "from": str(key[0])[:8],
                "pictures": version - v0,
                "fps": (version - v0) / wall,
                "max_gap_s": gap,
                "freezes": receiver.freezes - f0,
                "width": picture.width if picture is not None else 0,
                "height": picture.height if picture is not None else 0,
                "e2e": window,
                "stats": dataclasses.asdict(stats),
                "pictures_kept": kept.get(key, []),
            }
        )
    missing = max(0, streams_expected - len(streams))
    return {"type": "done", "cpu": cpu, "wall": wall, "streams": streams, "missing_streams": missing}


def _finish_result(result: dict[str, Any], source_size: tuple[int, int]) -> dict[str, Any]:
    for stream in result["streams"]:
        pictures = stream.pop("pictures_kept")
        stream.update(psnr_figures(pictures, source_size) if pictures else {})
    return result


async def _spawn(cfg: dict[str, Any], root: Path) -> PeerProcess:
    index = cfg["index"]
    return await spawn_module(
        "bisc.bench.video", ["--peer", json.dumps(cfg)], f"video peer p{index}", log=root / f"p{index}.log"
    )


def run_video_peer(cfg: dict[str, Any]) -> None:
    """A video peer's process (`python -m bisc.bench.video --peer CFG`)."""
    run_peer(_peer, cfg)


async def run_video_call_async(
    peers: int,
    seconds: float,
    *,
    size: tuple[int, int],
    pin_bps: int,
    senders: Sequence[int] | None = None,
    fps: float = 30.0,
    warmup: float = 2.0,
    read_stamps: bool = False,
    keep_pictures: bool = False,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """A video call of `peers` processes; `senders` (default: all) send the pattern at `size`.

    Returns per peer: cpu and wall seconds of the measured window (after `warmup`), and per received
    stream its pictures, fps, longest gap, freezes, size, e2e samples (s) and stats; the sender's
    pinned target. With keep_pictures, each stream's PSNR against the regenerated source."""
    send = list(range(peers)) if senders is None else list(senders)
    with tempfile.TemporaryDirectory(prefix="bisc-video-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        procs: list[PeerProcess] = []

        def config(index: int, ticket: str | None) -> dict[str, Any]:
            return {
                "index": index,
                "peers": peers,
                "senders": send,
                "size": list(size),
                "fps": fps,
                "pin_bps": pin_bps,
                "warmup": warmup,
                "seconds": seconds,
                "read_stamps": read_stamps,
                "keep_pictures": keep_pictures,
                "ticket": ticket,
                "data_dir": str(root / f"node{index}"),
            }

        try:
            procs.append(await _spawn(config(0, None), root))
            ticket = (await procs[0].expect("ticket"))["ticket"]
            for i in range(1, peers):
                procs.append(await _spawn(config(i, ticket), root))
            await step(procs, None, "ready", MESH_TIMEOUT + STEP_TIMEOUT)
            await step(procs, "go", "video_on")
            await step(procs, "send", "media")
            results = await step(procs, None, "done", 2 * STEP_TIMEOUT + warmup + seconds)
            await step(procs, "quit", None)
        finally:
            for proc in procs:
                await proc.finish()
    return {
        "peers": [
            {
                "cpu_s": r["cpu"],
                "wall_s": r["wall"],
                "cpu_pct": 100.0 * r["cpu"] / r["wall"],
                "streams": r["streams"],
                "missing_streams": r["missing_streams"],
                "sender": r.get("sender"),
            }
            for r in results
        ]
    }


def run_video_call(peers: int, seconds: float, **kwargs: Any) -> dict[str, Any]:
    return asyncio.run(run_video_call_async(peers, seconds, **kwargs))
