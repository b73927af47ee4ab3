"""`bisc bench --suite files`: file transfer on loopback against the raw
ceiling of one aioquic stream, and share-time hashing, native against hashlib."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bisc import hotpaths
from bisc.cli.output import table
from bisc.files import bench as transfer_bench
from bisc.files.hashing import hash_file

MIB = 1 << 20


def _hashing_rows(size: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bisc-bench-") as tmp:
        path = Path(tmp) / "share.bin"
        block = os.urandom(16 * MIB)
        with open(path, "wb") as f:
            for offset in range(0, size, len(block)):
                f.write(block[: min(len(block), size - offset)])
        loaded = hotpaths.SELECTION.loaded("chunkhash")
        hash_file(path, hasher=loaded["python"], threads=1)  # warm the page cache
        cases = [("hashlib", loaded["python"], 1), ("hashlib", loaded["python"], 0)]
        cases += [(impl, module, t) for impl, module in loaded.items() if impl != "python" for t in (1, 0)]
        for name, module, threads in cases:
            start = time.perf_counter()
            hash_file(path, hasher=module, threads=threads)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "impl": name,
                    "threads": threads or os.cpu_count() or 1,
                    "mb_per_s": size / seconds / 1e6,
                }
            )
    base = rows[0]["mb_per_s"]
    for row in rows:
        row["x_hashlib_1"] = row["mb_per_s"] / base
    return rows


def run(quick: bool = False) -> dict[str, Any]:
    size_mib = 64 if quick else 512
    raw = asyncio.run(transfer_bench.raw_stream_ceiling(size_mib))
    one = asyncio.run(transfer_bench.throughput(size_mib, sources=1))
    three = asyncio.run(transfer_bench.throughput(size_mib, sources=3))
    for result in (one, three):
        result["x_ceiling"] = result["mb_per_s"] / raw["mb_per_s"]
    hashing = _hashing_rows((256 if quick else 2048) * MIB)
    return {"raw_stream": raw, "one_source": one, "three_sources": three, "share_hashing": hashing}


def format_report(report: dict[str, Any]) -> str:
    raw = report["raw_stream"]
    lines = [
        f"\nFile transfer on loopback, {raw['size_mib']} MiB (download() to verified file in place):",
        table(
            ["case", "MB/s", "x raw stream"],
            [
                ["raw aioquic stream", f"{raw['mb_per_s']:.1f}", "1.00"],
                [
                    "1 source",
                    f"{report['one_source']['mb_per_s']:.1f}",
                    f"{report['one_source']['x_ceiling']:.2f}",
                ],
                [
                    "3 sources",
                    f"{report['three_sources']['mb_per_s']:.1f}",
                    f"{report['three_sources']['x_ceiling']:.2f}",
                ],
            ],
        ),
        f"\nShare-time hashing (hash_file, {report['share_hashing'][0]['impl']} x1 = 1.00):",
        table(
            ["impl", "threads", "MB/s", "x hashlib x1"],
            [
                [r["impl"], str(r["threads"]), f"{r['mb_per_s']:.0f}", f"{r['x_hashlib_1']:.2f}"]
                for r in report["share_hashing"]
            ],
        ),
    ]
    return "\n".join(lines)
