"""`bisc bench`: operations per second of every loaded implementation of each
hot path, with ratios to pure Python measured in the same run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bisc.bench import files as files_bench
from bisc.bench import gossip as gossip_bench
from bisc.bench import gui as gui_bench
from bisc.bench import join as join_bench
from bisc.bench import video as video_bench
from bisc.bench import voice as voice_bench
from bisc.bench.hotpaths import BenchConfig, run, targets
from bisc.cli.output import print_json, table

SUITES = ("hotpaths", "join", "gossip", "files", "voice", "video", "gui")
# voice takes minutes in full (and needs the bench extra and espeak-ng for its quality table): opt-in;
# so does video (a few minutes in full, under a minute with --quick; aiortc from the bench extra),
# and gui (a Kivy window: the gui extra, and Xvfb when there is no DISPLAY).
DEFAULT_SUITES = ("hotpaths", "join", "gossip", "files")


def register(commands: Any) -> None:
    parser = commands.add_parser("bench", help="benchmark the hot paths")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--quick", action="store_true", help="short runs and a 64 MiB file")
    parser.add_argument("--file-size", type=int, metavar="MIB", help="size of the hashed file")
    parser.add_argument("--file", type=Path, help="hash this existing file instead")
    parser.add_argument(
        "--suite",
        default=",".join(DEFAULT_SUITES),
        help="comma-separated: hotpaths (native vs pure), join (loopback join time), "
        "gossip (simulated delivery under loss and churn), files (loopback transfer and share "
        "hashing), voice (call delay, PESQ against aiortc under loss, CPU of a 3-peer call; "
        "a few minutes, under a minute with --quick; needs the bench extra and espeak-ng for "
        "the PESQ table), video (glass-to-glass delay at 720p, codec CPU per stream, the largest 360p "
        "mesh this machine holds, bisc vs aiortc; a few minutes, under a minute with --quick), "
        "gui (the Kivy call screen in a window with 4 peers sending 720p: redraws/s, uploads/s per "
        "tile, decoded-to-uploaded delay, upload cost, CPU; about a minute, 2 peers at 360p with "
        "--quick; needs the gui extra and a DISPLAY or Xvfb); default: all but voice, video and gui",
    )
    parser.set_defaults(run=run_bench)


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def run_bench(args: argparse.Namespace) -> int:
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = set(suites) - set(SUITES)
    if unknown:
        print(f"bisc: unknown bench suite {', '.join(sorted(unknown))}; choose from {', '.join(SUITES)}")
        return 2
    report: dict[str, Any] = {}
    if "hotpaths" in suites:
        report["hotpaths"] = _hotpaths(args)
    if "join" in suites:
        report["join"] = join_bench.run((2, 5) if args.quick else (2, 5, 8), repeats=1 if args.quick else 3)
        if not args.json:
            print("\nJoin time on loopback (ticket to first member, and to full mesh), median of runs:")
            print(
                table(
                    ["nodes", "first member p50 ms", "first member max ms", "full mesh ms"],
                    [
                        [
                            str(r["nodes"]),
                            f"{r['first_member_ms_p50']:.0f}",
                            f"{r['first_member_ms_max']:.0f}",
                            f"{r['full_mesh_ms']:.0f}",
                        ]
                        for r in report["join"]
                    ],
                )
            )
    if "gossip" in suites:
        sizes = (200,) if args.quick else (200, 1000)
        report["gossip"] = gossip_bench.run(sizes, broadcasts=10 if args.quick else 20)
        if not args.json:
            print("\nGossip simulation (seeded; 10% loss as retransmission delay, 20% churn):")
            print(gossip_bench.format_table(report["gossip"]))
    if "files" in suites:
        report["files"] = files_bench.run(quick=args.quick)
        if not args.json:
            print(files_bench.format_report(report["files"]))
    if "voice" in suites:
        report["voice"] = voice_bench.run(quick=args.quick)
        if not args.json:
            print(voice_bench.format_report(report["voice"]))
    if "video" in suites:
        report["video"] = video_bench.run(quick=args.quick)
        if not args.json:
            print(video_bench.format_report(report["video"]))
    if "gui" in suites:
        report["gui"] = gui_bench.run(quick=args.quick)
        if not args.json:
            print(gui_bench.format_report(report["gui"]))
    if args.json:
        print_json(report)
    return 0


def _hotpaths(args: argparse.Namespace) -> dict[str, Any]:
    cfg = BenchConfig()
    if args.quick:
        cfg.min_time, cfg.file_size, cfg.hash_repeats = 0.1, 64 << 20, 2
    if args.file_size:
        cfg.file_size = args.file_size << 20
    cfg.file_path = args.file
    rows = run(cfg)
    checks = targets(rows)
    result = {
        "rows": [r.to_json() for r in rows],
        "targets": [
            {"target": t.description, "value": t.value, "goal": t.goal, "met": t.met} for t in checks
        ],
    }
    if args.json:
        return result
    print(
        table(
            ["hot path", "case", "impl", "rate", "unit", "x python", "x construct"],
            [
                [
                    r.hot_path,
                    r.case,
                    r.impl,
                    _rate(r.rate),
                    r.unit,
                    next((f"{v:.2f}" for k, v in r.ratios.items() if k in ("python", "hashlib x1")), ""),
                    f"{r.ratios['construct']:.1f}" if "construct" in r.ratios else "",
                ]
                for r in rows
            ],
        )
    )
    print("\nTargets:")
    for t in checks:
        print(f"  {'met ' if t.met else 'MISS'}  {t.description}: {t.value:.2f}x (goal {t.goal}x)")
    return result
