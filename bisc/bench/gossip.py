"""Gossip at scale: the simulated churn experiment (bisc.proto.gossip_sim) for several network sizes.

    python -m bisc.bench.gossip [--sizes 200 1000] [--seed 1] [--broadcasts 20] [--loss 0.1] [--churn 0.2]

Columns:
- delivery_ratio: deliveries / (broadcasts x nodes live and settled for the broadcast's whole window)
- mean_hops, max_hops: links a payload travelled to reach those nodes
- redundancy: frames about a message received per node that delivered it: payload copies + IHave
  entries + Graft requests (a perfect tree with no lazy announcements would be 1.0)
- payload_redundancy: payload copies received per delivery (duplicates the eager tree still carries)
- latency_p50_ms, latency_p99_ms: from broadcast to delivery, over all those deliveries
- wall_seconds: real time the simulation took
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from bisc.proto.gossip_sim import NetworkConfig, ScenarioConfig, run_scenario

COLUMNS = (
    ("nodes", "{:d}"),
    ("delivery_ratio", "{:.4f}"),
    ("mean_hops", "{:.2f}"),
    ("max_hops", "{:d}"),
    ("redundancy", "{:.2f}"),
    ("payload_redundancy", "{:.2f}"),
    ("latency_p50_ms", "{:.0f}"),
    ("latency_p99_ms", "{:.0f}"),
    ("wall_seconds", "{:.1f}"),
)


def run(
    sizes: Sequence[int] = (200, 1000),
    seed: int = 1,
    broadcasts: int = 20,
    loss: float = 0.1,
    churn: float = 0.2,
) -> list[dict[str, Any]]:
    """One row per network size; see the module docstring for what each key means."""
    rows: list[dict[str, Any]] = []
    for nodes in sizes:
        config = ScenarioConfig(
            nodes=nodes, seed=seed, broadcasts=broadcasts, churn=churn, network=NetworkConfig(loss=loss)
        )
        start = time.perf_counter()
        report = run_scenario(config)
        wall = time.perf_counter() - start
        rows.append(
            {
                "nodes": nodes,
                "delivery_ratio": report.delivery_ratio,
                "min_delivery_ratio": min((b.delivery_ratio for b in report.broadcasts), default=1.0),
                "mean_hops": report.mean_hops,
                "max_hops": report.max_hops,
                "redundancy": report.redundancy,
                "payload_redundancy": report.payload_redundancy,
                "latency_p50_ms": report.latency_p50_ms,
                "latency_p99_ms": report.latency_p99_ms,
                "crashed": report.crashed,
                "newcomers": report.newcomers,
                "frames_delivered": report.frames_delivered,
                "wall_seconds": wall,
            }
        )
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = [name for name, _ in COLUMNS]
    cells = [[fmt.format(row[name]) for name, fmt in COLUMNS] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Simulated gossip under loss and churn.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--loss", type=float, default=0.1)
    parser.add_argument("--churn", type=float, default=0.2)
    args = parser.parse_args(argv)
    rows = run(args.sizes, args.seed, args.broadcasts, args.loss, args.churn)
    print(
        f"gossip simulation: seed {args.seed}, {args.broadcasts} broadcasts, "
        f"loss {args.loss:.0%} (as QUIC retransmission delay), churn {args.churn:.0%} of nodes replaced"
    )
    print(format_table(rows))


if __name__ == "__main__":
    main()
