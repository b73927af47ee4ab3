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

The calls themselves (peer processes and the parent that steps them) are in
`bisc.bench.video_call`. Targets are reported beside the figures (met or MISS); nothing here
fails on a miss.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bisc.bench.video_call import run_video_call, run_video_peer
from bisc.bench.voice import quantile

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
        run_video_peer(json.loads(args.peer))
        return
    report = run(quick=args.quick)
    print(json.dumps(report, indent=1, default=str) if args.json else format_report(report))


if __name__ == "__main__":
    main()
