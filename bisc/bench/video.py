"""`bisc bench --suite video`: delay, CPU and mesh capacity of bisc video calls on loopback.

Four measurements, with real nodes, real aioquic and real VP8 (libvpx through
PyAV), every peer in its own process (so its CPU time is its own):

- glass-to-glass delay: two peers, one sending the stamped test pattern
  (`PatternSource`, 1280x720 at 30 fps), the other receiving with
  `read_stamps=True`, so each decoded picture's delay is the wall clock at
  decode minus the capture time drawn into its pixels. The sender's target is
  pinned (see `pin_target`): the receiver's estimate starts low and climbs
  ~8%/s, so the ladder would sit at 360p for most of a short run; the bench
  feeds the ladder a fixed estimate instead (2.5 Mb/s for 720p: that rung's
  ceiling) and lets it climb at once, past the ladder's hold time. The
  received resolution is reported. The first `warmup` seconds after the
  stream starts are left out.
- CPU per frame of encode, decode and colour conversion at 360p/720p/1080p
  (`bisc.media.video_bench.run_video_bench`), VP8 and H.264.
- the largest full mesh that holds 360p: N peers, one process each, each
  sending the pattern at 640x360 (target pinned at 600 kb/s, the sender's
  start rate, so the encoder is never reopened) and receiving the N-1 others;
  per size: received fps per stream (min/mean over the window), freezes (gaps
  between pictures, the longest one), CPU per process. A size holds when every
  stream gets >= 20 fps and no gap exceeds 1 s.
- the same 720p30 pattern through aiortc (`bisc.bench.aiortc_video`): delay,
  CPU per process and PSNR of received pictures against the regenerated source
  frame, beside bisc's figures from the first measurement.

Targets are reported beside the figures (met or MISS); nothing here fails on a miss.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bisc.bench.voice import quantile

STEP_TIMEOUT = 30.0
MESH_TIMEOUT = 30.0
POLL = 0.02  # s between looks at the receivers' newest picture (gap measurement)
PSNR_EVERY = 0.5  # s between pictures kept for PSNR
PSNR_MAX = 12  # pictures kept for PSNR per stream

DELAY_TARGET_P50_MS = 80.0
HOLD_FPS = 20.0
HOLD_GAP_S = 1.0
PIN_720P_BPS = 2_500_000
PIN_360P_BPS = 600_000  # the sender's start rate: the encoder is not reopened for it


@dataclass(frozen=True)
class VideoBenchConfig:
    delay_seconds: float = 10.0
    warmup: float = 2.0
    mesh_sizes: tuple[int, ...] = (3, 4, 6)
    mesh_seconds: float = 8.0
    codec_frames: int = 60
    aiortc: bool = True

    @classmethod
    def quick(cls) -> VideoBenchConfig:
        return cls(delay_seconds=5.0, warmup=1.5, mesh_sizes=(3, 4), mesh_seconds=5.0, codec_frames=15)


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


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


async def _read() -> dict[str, Any]:
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise RuntimeError("parent closed the pipe")
    msg: dict[str, Any] = json.loads(line)
    return msg


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
            _emit({"type": "ticket", "ticket": channel.ticket().to_text()})
        else:
            channel = await node.join(BiscTicket.parse(cfg["ticket"]))
        deadline = time.monotonic() + MESH_TIMEOUT
        while len(channel.members) < expected or channel.connected_peers != set(channel.members):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no full mesh of {expected + 1} peers in {MESH_TIMEOUT} s")
            await asyncio.sleep(0.02)
        _emit({"type": "ready"})
        await _read()  # "go": everyone takes video before anyone offers it
        video: Any = await channel.start_video(read_stamps=bool(cfg["read_stamps"]))
        _emit({"type": "video_on"})
        await _read()  # "send"
        sender = None
        if cfg["index"] in senders:
            await channel.start_camera(
                PatternSource(width, height, float(cfg["fps"])), size=(width, height), fps=float(cfg["fps"])
            )
            sender = video.sender(CAMERA_STREAM)
            pin_target(sender, int(cfg["pin_bps"]))
        _emit({"type": "media"})
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
        _emit(result)
        await _read()  # "quit": keep sending until every peer has measured
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


def _peer_main(cfg: dict[str, Any]) -> None:
    import traceback

    try:
        asyncio.run(_peer(cfg))
    except Exception as exc:
        _emit({"type": "error", "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})


# ---------------------------------------------------------------- parent side


class _Proc:
    def __init__(self, proc: asyncio.subprocess.Process, name: str, log: Path) -> None:
        self.proc, self.name, self.log = proc, name, log

    async def read(self, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            code = await self.proc.wait()
            err = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
            raise RuntimeError(f"video peer {self.name} exited ({code}): {err}")
        msg: dict[str, Any] = json.loads(line)
        if msg["type"] == "error":
            raise RuntimeError(f"video peer {self.name} failed: {msg['error']}\n{msg['trace']}")
        return msg

    async def expect(self, kind: str, timeout: float = STEP_TIMEOUT) -> dict[str, Any]:
        msg = await self.read(timeout)
        if msg["type"] != kind:
            raise RuntimeError(f"video peer {self.name}: expected {kind}, got {msg['type']}")
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


async def _spawn(cfg: dict[str, Any], root: Path) -> _Proc:
    log = root / f"p{cfg['index']}.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bisc.bench.video",
            "--peer",
            json.dumps(cfg),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            limit=1 << 24,
        )
    return _Proc(proc, f"p{cfg['index']}", log)


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
        procs: list[_Proc] = []

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
            for proc in procs:
                await proc.expect("ready", MESH_TIMEOUT + STEP_TIMEOUT)
            for proc in procs:
                proc.send({"type": "go"})
            for proc in procs:
                await proc.expect("video_on")
            for proc in procs:
                proc.send({"type": "send"})
            for proc in procs:
                await proc.expect("media")
            results = [await proc.expect("done", 2 * STEP_TIMEOUT + warmup + seconds) for proc in procs]
            for proc in procs:
                proc.send({"type": "quit"})
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


# ---------------------------------------------------------------- figures


def delay_figures(call: dict[str, Any]) -> dict[str, Any]:
    """Glass-to-glass figures of a one-sender call (peer 0 sends, the others receive)."""
    streams = [s for p in call["peers"] for s in p["streams"]]
    delays = [d for s in streams for d in s["e2e"]]
    if not delays:
        raise RuntimeError("no glass-to-glass samples in the steady window")
    sender = call["peers"][0]["sender"] or {}
    sizes = sorted({f"{s['width']}x{s['height']}" for s in streams})
    psnrs = [s["psnr_db"] for s in streams if s.get("psnr_db") is not None]
    return {
        "p50_ms": 1000.0 * quantile(delays, 0.50),
        "p95_ms": 1000.0 * quantile(delays, 0.95),
        "max_ms": 1000.0 * max(delays),
        "samples": len(delays),
        "fps": statistics.fmean(s["fps"] for s in streams),
        "freezes": sum(s["freezes"] for s in streams),
        "received_size": ", ".join(sizes),
        "sent_rung": sender.get("rung"),
        "sent_bitrate": sender.get("bitrate"),
        "cpu_send_pct": call["peers"][0]["cpu_pct"],
        "cpu_recv_pct": statistics.fmean(p["cpu_pct"] for p in call["peers"][1:]),
        "psnr_db": statistics.fmean(psnrs) if psnrs else None,
        "psnr_min_db": min(
            (s["psnr_min_db"] for s in streams if s.get("psnr_min_db") is not None), default=None
        ),
        "psnr_pictures": sum(s.get("psnr_pictures", 0) for s in streams),
    }


def mesh_figures(call: dict[str, Any], peers: int) -> dict[str, Any]:
    streams = [s for p in call["peers"] for s in p["streams"]]
    missing = sum(p["missing_streams"] for p in call["peers"])
    fps = [s["fps"] for s in streams] + [0.0] * missing
    gaps = [s["max_gap_s"] for s in streams]
    cpu = [p["cpu_pct"] for p in call["peers"]]
    expected = peers * (peers - 1)
    holds = (
        len(streams) >= expected
        and missing == 0
        and min(fps, default=0.0) >= HOLD_FPS
        and max(gaps, default=0.0) <= HOLD_GAP_S
    )
    return {
        "peers": peers,
        "streams": len(streams),
        "streams_expected": expected,
        "fps_min": min(fps, default=0.0),
        "fps_mean": statistics.fmean(fps) if fps else 0.0,
        "freezes": sum(s["freezes"] for s in streams),  # gaps > 0.5 s, the receiver's own count
        "max_gap_s": max(gaps, default=0.0),
        "sizes": sorted({f"{s['width']}x{s['height']}" for s in streams}),
        "cpu_pct": cpu,
        "cpu_pct_mean": statistics.fmean(cpu),
        "cpu_pct_total": sum(cpu),
        "sent_kbps": sorted({p["sender"]["bitrate"] / 1000 for p in call["peers"] if p.get("sender")}),
        "holds": holds,
    }


def codec_figures(frames: int) -> list[dict[str, Any]]:
    from bisc.media.video_bench import run_video_bench

    return [dataclasses.asdict(r) for r in run_video_bench(frames=frames)]


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    delay = report.get("delay", {})
    if "p50_ms" in delay:
        out.append(
            {
                "target": f"glass-to-glass p50 ms, {delay['received_size']} VP8 loopback",
                "value": delay["p50_ms"],
                "goal": DELAY_TARGET_P50_MS,
                "met": delay["p50_ms"] <= DELAY_TARGET_P50_MS,
            }
        )
    return out


# ---------------------------------------------------------------- the suite


def run(quick: bool = False, config: VideoBenchConfig | None = None) -> dict[str, Any]:
    cfg = config or (VideoBenchConfig.quick() if quick else VideoBenchConfig())
    report: dict[str, Any] = {"config": dataclasses.asdict(cfg)}

    def attempt(fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # one failed measurement is reported, the others still run
            return {"error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}

    report["delay"] = attempt(
        lambda: delay_figures(
            run_video_call(
                2,
                cfg.delay_seconds,
                size=(1280, 720),
                pin_bps=PIN_720P_BPS,
                senders=[0],
                warmup=cfg.warmup,
                read_stamps=True,
                keep_pictures=True,
            )
        )
    )
    report["codec"] = attempt(lambda: codec_figures(cfg.codec_frames))
    mesh = []
    for n in cfg.mesh_sizes:
        row = attempt(
            lambda n=n: mesh_figures(
                run_video_call(n, cfg.mesh_seconds, size=(640, 360), pin_bps=PIN_360P_BPS, warmup=cfg.warmup),
                n,
            )
        )
        mesh.append({"peers": n} | row)
    report["mesh"] = mesh
    held = [m["peers"] for m in mesh if m.get("holds")]
    report["mesh_largest_held"] = max(held) if held else None
    if cfg.aiortc:
        from bisc.bench.aiortc_video import run_aiortc_video

        report["aiortc"] = attempt(
            lambda: run_aiortc_video(
                seconds=cfg.delay_seconds, warmup=cfg.warmup, size=(1280, 720), bitrate=PIN_720P_BPS
            )
        )
    report["targets"] = targets(report)
    return report


# ---------------------------------------------------------------- report


def _f(value: Any, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def format_report(report: dict[str, Any]) -> str:
    from bisc.cli.output import table

    cfg = report["config"]
    lines: list[str] = []
    d = report.get("delay", {})
    lines.append(
        f"\nVideo glass-to-glass delay, 2 peers on loopback (one process each), 1280x720 VP8 test "
        f"pattern at 30 fps, target pinned at {PIN_720P_BPS / 1e6:g} Mb/s (ladder climbed at once), "
        f"{cfg['delay_seconds']:g} s after {cfg['warmup']:g} s warm-up (capture stamp in the pixels to "
        "decoded picture):"
    )
    if "error" in d:
        lines.append(f"  failed: {d['error']}")
    else:
        verdict = "met" if d["p50_ms"] <= DELAY_TARGET_P50_MS else "MISS"
        lines.append(f"  p50: {d['p50_ms']:6.1f} ms  target <= {DELAY_TARGET_P50_MS:g}  {verdict}")
        lines.append(f"  p95: {d['p95_ms']:6.1f} ms")
        lines.append(
            f"  max {d['max_ms']:.1f} ms over {d['samples']} pictures; received {d['received_size']} "
            f"(sent rung {d['sent_rung']}, {_f(d['sent_bitrate'] and d['sent_bitrate'] / 1000, '.0f')} kb/s) "
            f"at {d['fps']:.1f} fps, {d['freezes']} freezes"
        )

    lines.append(
        f"\nCPU per stream (ms of CPU per frame, one process, all its threads; {cfg['codec_frames']} frames; "
        "x3 = % of a core at 30 fps):"
    )
    codec = report.get("codec", [])
    if isinstance(codec, dict):
        lines.append(f"  failed: {codec['error']}")
    else:
        sizes = [s for s in ("360p", "720p", "1080p") if any(r["size"] == s for r in codec)]
        keys: list[tuple[str, str]] = []
        for r in codec:
            if (r["stage"], r["codec"]) not in keys:
                keys.append((r["stage"], r["codec"]))
        cells = {(r["stage"], r["codec"], r["size"]): r for r in codec}
        rows = []
        for stage, c in keys:
            row = [stage, c or "-"]
            for s in sizes:
                r = cells.get((stage, c, s))
                row.append("-" if r is None else f"{r['cpu_ms']:.2f}")
            rows.append(row)
        lines.append(table(["stage", "codec", *sizes], rows))

    lines.append(
        f"\nFull mesh at 360p: one process per peer, each sending the pattern at 640x360 30 fps (target "
        f"pinned at {PIN_360P_BPS / 1000:g} kb/s) and receiving all others, {cfg['mesh_seconds']:g} s "
        f"after warm-up; holds = every stream >= {HOLD_FPS:g} fps and no gap > {HOLD_GAP_S:g} s:"
    )
    mesh_rows = []
    for m in report.get("mesh", []):
        if "error" in m:
            mesh_rows.append([str(m["peers"]), "failed: " + m["error"][:60], "", "", "", "", "", "", ""])
            continue
        mesh_rows.append(
            [
                str(m["peers"]),
                f"{m['streams']}/{m['streams_expected']}",
                f"{m['fps_min']:.1f} / {m['fps_mean']:.1f}",
                str(m["freezes"]),
                f"{m['max_gap_s']:.2f}",
                " ".join(f"{v:.0f}" for v in m["cpu_pct"]),
                f"{m['cpu_pct_total']:.0f}",
                "/".join(f"{v:.0f}" for v in m.get("sent_kbps", [])),
                "yes" if m["holds"] else "NO",
            ]
        )
    lines.append(
        table(
            [
                "peers",
                "streams",
                "fps min / mean",
                "freezes >0.5s",
                "longest gap s",
                "CPU % per process",
                "CPU % total",
                "sent kb/s",
                "holds",
            ],
            mesh_rows,
        )
    )
    held = report.get("mesh_largest_held")
    tried = ", ".join(str(n) for n in cfg["mesh_sizes"])
    lines.append(
        f"  largest full mesh held on this {_cores()}-core machine, of {tried} peers tried: "
        + (f"{held} peers" if held else "none")
    )

    lines.append(
        f"\nbisc vs aiortc, 1280x720 VP8 test pattern at 30 fps, one sender and one receiver process, "
        f"both pinned at {PIN_720P_BPS / 1e6:g} Mb/s, same window (aiortc: host candidates on 127.0.0.1, "
        "no STUN; delay at the receiving track's recv(), pictures to RGB):"
    )
    cmp_rows = []
    a = report.get("aiortc")
    for name, fig in (("bisc", d), ("aiortc", a)):
        if fig is None:
            continue
        if "error" in fig:
            cmp_rows.append([name, "failed: " + fig["error"][:70], "", "", "", "", "", ""])
            continue
        cmp_rows.append(
            [
                name,
                f"{fig['p50_ms']:.1f}",
                f"{fig['p95_ms']:.1f}",
                f"{fig['fps']:.1f}",
                f"{_f(fig['psnr_db'], '.2f')} (min {_f(fig['psnr_min_db'], '.2f')}, "
                f"n={fig['psnr_pictures']})",
                f"{fig['cpu_send_pct']:.1f}",
                f"{fig['cpu_recv_pct']:.1f}",
                str(fig["received_size"]),
            ]
        )
    lines.append(
        table(
            ["stack", "p50 ms", "p95 ms", "fps", "PSNR dB", "CPU % send", "CPU % recv", "received"],
            cmp_rows,
        )
    )
    lines.append("\nVideo targets:")
    for t in report.get("targets", []):
        lines.append(
            f"  {'met ' if t['met'] else 'MISS'}  {t['target']}: {t['value']:.1f} (goal {t['goal']:g})"
        )
    return "\n".join(lines)


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bisc.bench.video", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # internal: one peer process
    args = parser.parse_args(argv)
    if args.peer:
        _peer_main(json.loads(args.peer))
        return
    report = run(quick=args.quick)
    print(json.dumps(report, indent=1, default=str) if args.json else format_report(report))


if __name__ == "__main__":
    main()
