"""Gossip in the seeded simulator: 200 nodes under loss and churn, determinism, the bench entry."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bisc.bench import gossip as gossip_bench
from bisc.proto.gossip import GossipConfig
from bisc.proto.gossip_sim import NetworkConfig, Scenario, ScenarioConfig, run_scenario
from tests.test_gossip import assert_views_valid, connected

CONFIG = GossipConfig()
NO_LOSS = NetworkConfig(loss=0.0)

# --- simulation --------------------------------------------------------------------------------------

CHURN_SCENARIO = ScenarioConfig(nodes=200, seed=7, broadcasts=20, churn=0.2, network=NetworkConfig(loss=0.1))


@pytest.fixture(scope="module")
def churn_run() -> tuple[Scenario, object]:
    scenario = Scenario(CHURN_SCENARIO)
    return scenario, scenario.run()


def test_every_broadcast_reaches_every_node_live_for_its_window(churn_run) -> None:
    _, report = churn_run
    assert report.crashed == 40 and report.newcomers == 40
    assert len(report.broadcasts) == 20
    for broadcast in report.broadcasts:
        assert broadcast.eligible >= 150
        assert broadcast.delivered == broadcast.eligible, broadcast
        assert 1.0 <= broadcast.payload_redundancy <= broadcast.redundancy < 10.0
    assert report.delivery_ratio == 1.0
    assert report.duplicate_deliveries == 0
    assert report.isolated_nodes == 0
    assert 1.0 <= report.payload_redundancy < 3.0
    assert report.latency_p99_ms < CHURN_SCENARIO.window * 1000


def test_churned_overlay_stays_bounded_and_symmetric(churn_run) -> None:
    scenario, _ = churn_run
    sim = scenario.sim
    sim.run_until(sim.now + 15.0)  # let frames in flight land
    assert sim.asymmetric_links() == 0
    assert connected(sim)
    for peer in sim.live_peers():
        assert_views_valid(sim.gossip(peer))
        stats = sim.gossip(peer).stats()
        assert stats.malformed_frames == 0 and stats.id_mismatches == 0


def test_same_seed_same_report(churn_run) -> None:
    _, report = churn_run
    assert run_scenario(CHURN_SCENARIO) == report


def test_different_seed_different_run() -> None:
    small = ScenarioConfig(nodes=40, broadcasts=3, churn=0.2)
    assert run_scenario(small) != run_scenario(ScenarioConfig(nodes=40, broadcasts=3, churn=0.2, seed=2))


def test_determinism_does_not_depend_on_hash_randomisation() -> None:
    code = (
        "import hashlib; from bisc.proto.gossip_sim import run_scenario, ScenarioConfig;"
        "report = run_scenario(ScenarioConfig(nodes=40, broadcasts=3));"
        "print(hashlib.sha256(repr(report).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        digests.add(result.stdout.strip())
    assert len(digests) == 1


def test_bench_entry_reports_every_column() -> None:
    rows = gossip_bench.run(sizes=(30,), seed=3, broadcasts=3)
    assert len(rows) == 1
    row = rows[0]
    for key in (
        "nodes",
        "delivery_ratio",
        "mean_hops",
        "max_hops",
        "redundancy",
        "latency_p50_ms",
        "latency_p99_ms",
        "wall_seconds",
    ):
        assert key in row
    assert row["nodes"] == 30 and row["delivery_ratio"] == 1.0
    assert "delivery_ratio" in gossip_bench.format_table(rows)
