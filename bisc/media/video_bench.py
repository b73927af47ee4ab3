"""Micro-benchmark of the video media layer: CPU seconds per frame for encode, decode and colour
conversion at 360p/720p/1080p, VP8 and H.264 (``python -m bisc.media.video_bench``; meant for
``bisc bench`` later).

CPU time is ``time.process_time`` (all threads of the process, so codec worker threads count); wall time
is reported alongside. The input is :class:`~bisc.media.video_pattern.PatternSource` with its sensor
noise, at a bitrate typical for the size (:data:`BITRATES`).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial

from bisc.media.video_codec import LADDER, VideoCodec, VideoDecoder, VideoEncoder
from bisc.media.video_color import from_yuv420p, rgb_to_yuv420p_np, to_yuv420p
from bisc.media.video_pattern import PatternSource
from bisc.media.video_types import Image, PixelFormat, VideoCodecError, VideoFrameIn

BITRATES = {"180p": 150_000, "360p": 600_000, "720p": 1_500_000, "1080p": 3_000_000}


@dataclass(frozen=True, slots=True)
class BenchRow:
    """One measurement: ``cpu_ms``/``wall_ms`` per frame of ``stage`` at ``size`` (codec "" for colour)."""

    stage: str
    codec: str
    size: str
    frames: int
    cpu_ms: float
    wall_ms: float
    kbps: float | None = None


def _timed(fn: Callable[[], object], frames: int) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(frames):
        fn()
    return (time.process_time() - c0) * 1000 / frames, (time.perf_counter() - w0) * 1000 / frames


def _pattern(size: str, frames: int, fps: float) -> list[VideoFrameIn]:
    w, h = LADDER[size]
    src = PatternSource(w, h, fps)
    out: list[VideoFrameIn] = []
    for i in range(frames):
        src.clock = partial(float, 1_000_000.0 + i / fps)
        out.append(src.read_frame())
    return out


def _colour_rows(size: str, yuv: Image, n: int) -> list[BenchRow]:
    rgb = from_yuv420p(yuv, "rgb24")
    rgb_in = VideoFrameIn(rgb, "rgb24", 0.0)
    return [
        BenchRow("rgb24->yuv420p swscale", "", size, n, *_timed(lambda: to_yuv420p(rgb_in), n)),
        BenchRow("rgb24->yuv420p numpy", "", size, n, *_timed(lambda: rgb_to_yuv420p_np(rgb), n)),
        BenchRow("yuv420p->rgb24 swscale", "", size, n, *_timed(lambda: from_yuv420p(yuv), n)),
    ]


def _codec_rows(codec: VideoCodec, size: str, inputs: list[VideoFrameIn], fps: float) -> list[BenchRow]:
    w, h = LADDER[size]
    enc = VideoEncoder(codec, w, h, fps, BITRATES[size])
    it = iter(inputs)
    packets: list[bytes] = []
    cpu, wall = _timed(lambda: packets.extend(p.data for p in enc.encode(next(it))), len(inputs))
    kbps = sum(map(len, packets)) * 8 * fps / max(1, len(packets)) / 1000
    rows = [BenchRow("encode", codec, size, len(inputs), cpu, wall, round(kbps))]
    outputs: tuple[PixelFormat, ...] = ("rgb24", "yuv420p")
    for output in outputs:
        dec = VideoDecoder(codec, output=output)
        pit = iter(packets)
        cpu, wall = _timed(lambda: dec.decode(next(pit)), len(packets))  # noqa: B023 (used at once)
        rows.append(BenchRow(f"decode->{output}", codec, size, len(packets), cpu, wall))
    return rows


def run_video_bench(
    sizes: Sequence[str] = ("360p", "720p", "1080p"),
    codecs: Sequence[VideoCodec] = ("vp8", "h264"),
    frames: int = 60,
    fps: float = 30.0,
) -> list[BenchRow]:
    """Measure every stage; ``frames`` frames per codec and size (the first, a keyframe, included)."""
    rows: list[BenchRow] = []
    for size in sizes:
        if size not in LADDER:
            raise VideoCodecError(f"unknown size {size!r}; use one of {sorted(LADDER)}")
        inputs = _pattern(size, frames, fps)
        rows.extend(_colour_rows(size, inputs[0].data, max(5, frames // 3)))
        for codec in codecs:
            rows.extend(_codec_rows(codec, size, inputs, fps))
    return rows


def format_table(rows: Sequence[BenchRow]) -> str:
    lines = [f"{'stage':<24} {'codec':<5} {'size':<6} {'cpu ms/frame':>12} {'wall ms/frame':>13} {'kb/s':>6}"]
    for r in rows:
        kbps = "" if r.kbps is None else f"{r.kbps:.0f}"
        lines.append(f"{r.stage:<24} {r.codec:<5} {r.size:<6} {r.cpu_ms:>12.2f} {r.wall_ms:>13.2f} {kbps:>6}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="bisc video media micro-benchmark")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--sizes", default="360p,720p,1080p")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = run_video_bench(sizes=[s for s in args.sizes.split(",") if s], frames=args.frames)
    print(json.dumps([asdict(r) for r in rows]) if args.json else format_table(rows))


if __name__ == "__main__":
    main()
