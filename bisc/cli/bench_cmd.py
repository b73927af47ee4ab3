"""`bisc bench`: operations per second of every loaded implementation of each
hot path, with ratios to pure Python measured in the same run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bisc.bench.hotpaths import BenchConfig, run, targets
from bisc.cli.output import print_json, table


def register(commands: Any) -> None:
    parser = commands.add_parser("bench", help="benchmark the hot paths")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--quick", action="store_true", help="short runs and a 64 MiB file")
    parser.add_argument("--file-size", type=int, metavar="MIB", help="size of the hashed file")
    parser.add_argument("--file", type=Path, help="hash this existing file instead")
    parser.set_defaults(run=run_bench)


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def run_bench(args: argparse.Namespace) -> int:
    cfg = BenchConfig()
    if args.quick:
        cfg.min_time, cfg.file_size, cfg.hash_repeats = 0.1, 64 << 20, 2
    if args.file_size:
        cfg.file_size = args.file_size << 20
    cfg.file_path = args.file
    rows = run(cfg)
    checks = targets(rows)
    if args.json:
        print_json(
            {
                "rows": [r.to_json() for r in rows],
                "targets": [
                    {"target": t.description, "value": t.value, "goal": t.goal, "met": t.met} for t in checks
                ],
            }
        )
        return 0
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
    return 0
