"""The voice-quality harness: impairment relay, speech sample, PESQ scoring, an aiortc call."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bisc.bench.impair import ImpairedRelay, ImpairmentModel, Verdict
from bisc.bench.speech import RATE, SpeechError, espeak_available, read_wav, speech_wav, write_wav

IN_CI = os.environ.get("CI", "").lower() == "true"


def _need_espeak() -> None:
    if not espeak_available():
        # CI installs espeak-ng through ci/setup, so there a missing one is a failure.
        if IN_CI:
            pytest.fail("espeak-ng is missing in CI: ci/setup should install it")
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_espeak()
    return speech_wav(tmp_path_factory.mktemp("speech"))


# ---------------------------------------------------------------- pure model


def test_model_loss_rate_within_tolerance() -> None:
    model = ImpairmentModel(loss=0.05, jitter_ms=30.0, seed=7)
    verdicts = [model.decide(0)[0] for _ in range(10_000)]
    dropped = verdicts.count(Verdict.DROP_LOSS) / len(verdicts)
    assert 0.04 < dropped < 0.06


def test_model_delays_within_bounds_and_reorder() -> None:
    model = ImpairmentModel(loss=0.0, jitter_ms=30.0, delay_ms=10.0, seed=3)
    delays = [model.decide(0)[1] for _ in range(10_000)]
    assert min(delays) >= 0.010 and max(delays) <= 0.040
    assert np.std(delays) > 0.005
    # Packets 20 ms apart arrive in another order when jitter exceeds the spacing.
    arrivals = [i * 0.020 + d for i, d in enumerate(delays)]
    assert any(b < a for a, b in itertools.pairwise(arrivals))


def test_model_is_deterministic_and_counts_full() -> None:
    a = ImpairmentModel(loss=0.3, jitter_ms=5.0, seed=11)
    b = ImpairmentModel(loss=0.3, jitter_ms=5.0, seed=11)
    assert [a.decide(0) for _ in range(100)] == [b.decide(0) for _ in range(100)]
    full = ImpairmentModel(loss=0.0, capacity=4)
    assert full.decide(4)[0] is Verdict.DROP_FULL and full.decide(3)[0] is Verdict.FORWARD
    with pytest.raises(ValueError):
        full.set(1.5, 0.0, 0.0)


# ---------------------------------------------------------------- relay over UDP


class _Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, addr))


async def _endpoint() -> tuple[asyncio.DatagramTransport, _Collect]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Collect, local_addr=("127.0.0.1", 0))
    return transport, proto


async def _wait(cond: object, timeout: float = 3.0) -> None:
    assert callable(cond)
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)


async def test_relay_forwards_both_ways() -> None:
    server_t, server = await _endpoint()
    client_t, client = await _endpoint()
    target = server_t.get_extra_info("sockname")[:2]
    async with ImpairedRelay(target, loss=0.0, jitter_ms=10.0, seed=2) as relay:
        for i in range(50):
            client_t.sendto(b"up%d" % i, relay.addr)
        await _wait(lambda: len(server.got) == 50)
        assert sorted(d for d, _ in server.got) == sorted(b"up%d" % i for i in range(50))
        upstream = server.got[0][1]
        assert upstream != relay.addr and upstream != client_t.get_extra_info("sockname")[:2]
        for i in range(50):
            server_t.sendto(b"down%d" % i, upstream)
        await _wait(lambda: len(client.got) == 50)
        assert {a for _, a in client.got} == {relay.addr}
        assert relay.counters()["up"]["forwarded"] == 50 and relay.counters()["down"]["forwarded"] == 50
    server_t.close()
    client_t.close()


async def test_relay_drops_everything_at_full_loss() -> None:
    server_t, server = await _endpoint()
    client_t, _ = await _endpoint()
    async with ImpairedRelay(server_t.get_extra_info("sockname")[:2], loss=1.0, jitter_ms=0.0) as relay:
        for _ in range(100):
            client_t.sendto(b"x", relay.addr)
        await _wait(lambda: relay.counters()["up"]["dropped_loss"] == 100)
        await asyncio.sleep(0.05)
        assert server.got == [] and relay.counters()["up"]["forwarded"] == 0
        relay.set_impairment(loss=0.0)
        client_t.sendto(b"y", relay.addr)
        await _wait(lambda: len(server.got) == 1)
        assert server.got[0][0] == b"y"
    server_t.close()
    client_t.close()


def test_relay_binds_loopback_only() -> None:
    async def run() -> tuple[str, int]:
        async with ImpairedRelay(("127.0.0.1", 9)) as relay:
            return relay.addr

    host, port = asyncio.run(run())
    assert host == "127.0.0.1" and port > 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # released on close


# ---------------------------------------------------------------- speech and PESQ


def test_speech_sample(speech: Path, tmp_path: Path) -> None:
    samples, rate = read_wav(speech)
    assert rate == RATE and samples.dtype == np.int16
    assert 8.0 <= len(samples) / rate <= 11.0
    assert np.abs(samples).max() > 5000
    assert speech_wav(speech.parent) == speech  # cached


def test_speech_error_without_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(SpeechError, match="espeak-ng is not installed"):
        speech_wav(tmp_path)


def test_pesq_sanity(speech: Path, tmp_path: Path) -> None:
    from bisc.bench.pesq_score import delay_estimate, score

    assert score(speech, speech) > 4.4
    samples, rate = read_wav(speech)
    zeroed = samples.copy()
    frames = len(samples) // 960
    for i in np.random.default_rng(1).choice(frames, frames // 10, replace=False):
        zeroed[i * 960 : (i + 1) * 960] = 0
    write_wav(tmp_path / "zeroed.wav", zeroed, rate)
    assert score(speech, tmp_path / "zeroed.wav") < 3.0
    # A large leading delay is estimated and removed before scoring.
    late = np.concatenate([np.zeros(int(0.4 * rate), np.int16), samples])
    write_wav(tmp_path / "late.wav", late, rate)
    assert delay_estimate(speech, tmp_path / "late.wav") == pytest.approx(0.4, abs=0.001)
    assert score(speech, tmp_path / "late.wav") > 4.4


# ---------------------------------------------------------------- aiortc end to end


def test_place_frames_fills_gaps_with_silence() -> None:
    from bisc.bench.aiortc_voice import place_frames

    chunks = [np.full(960, i + 1, np.int16) for i in range(4)]
    pts = np.array([1000, 1960, 3880, 4840], np.int64)  # the third frame was lost
    arrivals = 10.0 + np.array([0, 1, 3, 4]) * 0.02 + 0.05
    out, playout, late = place_frames(arrivals, pts, chunks, t0=10.0)
    assert late == 0 and playout == pytest.approx(0.055)
    base = round(playout * RATE)
    assert out[base] == 1 and out[base + 960] == 2 and out[base + 1920] == 0 and out[base + 2880] == 3


def test_aiortc_call_through_relay(speech: Path, tmp_path: Path) -> None:
    pytest.importorskip("aiortc")
    from bisc.bench.aiortc_voice import run_aiortc_once

    samples, rate = read_wav(speech)
    short = tmp_path / "short.wav"
    write_wav(short, samples[: 4 * rate], rate)
    result = asyncio.run(run_aiortc_once(short, tmp_path / "out.wav", loss=0.0, jitter_ms=30.0))
    assert result["pesq"] >= 3.0
    assert 0 < result["delay_ms"] < 500
    assert 0 < result["cpu_pct"] < 200
    assert sum(c["up"]["forwarded"] + c["down"]["forwarded"] for c in result["relays"]) > 150


def test_format_table() -> None:
    from bisc.bench.voice_quality import format_table

    rows = [
        {"stack": "aiortc", "loss": 0.05, "jitter_ms": 30.0, "pesq": 2.5, "delay_ms": 120.0, "cpu_pct": 8.0},
        {
            "stack": "bisc",
            "loss": 0.0,
            "jitter_ms": 30.0,
            "pesq": None,
            "delay_ms": None,
            "cpu_pct": None,
            "error": "not yet",
        },
    ]
    text = format_table(rows)
    assert "aiortc" in text and "2.50" in text and "not yet" in text


def test_bisc_call_through_relay(speech: Path, tmp_path: Path) -> None:
    from bisc.bench.voice_quality import run_voice_quality

    rows = run_voice_quality(stacks=("bisc",), losses=(0.0,), jitter_ms=30.0, seconds=4.0, workdir=tmp_path)
    (row,) = rows
    assert "error" not in row, row.get("error")
    # Loose bound: a 4 s call is too short for PESQ to settle (the bench's own runs are longer).
    assert row["pesq"] >= 1.5
    assert 0 < row["delay_ms"] < 500
    assert all(c["up"]["forwarded"] > 100 for c in row["relays"])


# ---------------------------------------------------------------- bisc bench --suite voice


def test_voice_targets_and_quantiles() -> None:
    from bisc.bench.voice import quantile, steady_delays, targets

    assert quantile([0.3, 0.1, 0.2], 0.5) == 0.2
    assert quantile([0.1] * 19 + [1.0], 0.95) == 0.1 and quantile([0.1, 1.0], 0.95) == 1.0
    call = {"peers": [{"e2e": {"x": [9.0] * 100 + [0.05] * 10}}, {"e2e": {"y": [0.06] * 5}}]}
    assert steady_delays(call) == [0.05] * 10  # each stream's first 2 s (100 frames) dropped
    report = {
        "delay_loopback": {"p50_ms": 30.0, "p95_ms": 70.0},
        "delay_impaired": {"p95_ms": 120.0, "loss": 0.05, "jitter_ms": 30.0},
        "quality": [
            {"stack": "bisc", "loss": 0.1, "jitter_ms": 30.0, "pesq": 3.2},
            {"stack": "bisc", "loss": 0.0, "jitter_ms": 30.0, "pesq": None, "error": "x"},
            {"stack": "aiortc", "loss": 0.0, "jitter_ms": 30.0, "pesq": 4.5},
        ],
    }
    met = {t["target"]: t["met"] for t in targets(report)}
    assert met == {
        "loopback e2e p50 ms": True,
        "loopback e2e p95 ms": False,
        "e2e p95 ms, 30 ms jitter + 5% loss": True,
        "bisc PESQ-WB, 30 ms jitter + 10% loss": True,
        "bisc PESQ-WB, 30 ms jitter + 0% loss": False,
    }


def test_voice_e2e_delay_on_loopback() -> None:
    from bisc.bench.voice import delay_figures, run_call

    call = run_call(2, 4.0)
    fig = delay_figures(call)
    assert 0 < fig["p50_ms"] < 200 and fig["p50_ms"] <= fig["p95_ms"] <= fig["max_ms"]
    assert fig["streams"] == 2 and fig["frames"] > 20
    assert all(0 < kbps < 100 for kbps in fig["payload_kbps"])


def test_voice_delay_of_speech(speech: Path) -> None:
    from bisc.bench.voice import delay_figures, run_call

    fig = delay_figures(run_call(2, 3.5, audio_in=str(speech)))
    assert fig["streams"] == 2 and 0 < fig["p50_ms"] <= fig["p95_ms"] < 200


def test_voice_cpu_three_peers() -> None:
    from bisc.bench.voice import cpu_figures, run_call

    fig = cpu_figures(run_call(3, 3.0))
    assert fig["peers"] == 3 and fig["streams_received"] == [2, 2, 2]
    assert all(0 < pct < 100 for pct in fig["cpu_pct"])
    assert fig["cpu_pct_total"] == pytest.approx(sum(fig["cpu_pct"]))
    assert 2.9 < fig["wall_s"] < 5.0


def test_voice_delay_through_relay() -> None:
    from bisc.bench.voice import delay_figures, run_call

    call = run_call(2, 4.0, impairment=(0.05, 30.0))
    (counters,) = call["relays"]
    assert counters["up"]["forwarded_bytes"] > 10_000 and counters["down"]["dropped_loss"] > 0
    assert 0 < delay_figures(call)["p95_ms"] < 1000


def _delay_figures(p50: float, p95: float, most: float) -> dict[str, Any]:
    return {
        "p50_ms": p50,
        "p95_ms": p95,
        "max_ms": most,
        "frames": 200,
        "streams": 2,
        "concealed": 0,
        "cpu_pct": [5.0, 6.0],
        "payload_kbps": [30.0, 31.0],
    }


def test_voice_report_format() -> None:
    from bisc.bench.voice import VoiceBenchConfig, format_report, targets

    report: dict[str, object] = {
        "config": dataclasses.asdict(VoiceBenchConfig.quick()),
        "delay_loopback": _delay_figures(45.0, 41.0, 50.0),
        "delay_source": "speech",
        "delay_loopback_tone": _delay_figures(70.0, 90.0, 95.0),
        "delay_impaired": {"error": "RuntimeError: boom"},
        "quality": [{"stack": "bisc", "loss": 0.05, "jitter_ms": 30.0, "pesq": 3.9, "payload_kbps": 29.5}],
        "cpu": {
            "peers": 3,
            "cpu_pct": [9.0, 9.5, 10.0],
            "cpu_pct_mean": 9.5,
            "cpu_pct_total": 28.5,
            "wall_s": 4.0,
            "streams_received": [2, 2, 2],
            "payload_kbps": [30.0, 30.0, 30.0],
        },
    }
    report["targets"] = targets(report)
    text = format_report(report)
    assert "p50:   45.0 ms  target <= 40  MISS" in text and "p95:   41.0 ms  target <= 60  met" in text
    assert "failed: RuntimeError: boom" in text and "total 28.5%" in text and "29.5" in text
    assert "each sending speech" in text and "The same with tones" in text and "p95:   90.0 ms\n" in text
    assert [t["target"] for t in targets(report)].count("loopback e2e p95 ms") == 1  # tones: no target


def test_aiortc_matched_bitrate(speech: Path, tmp_path: Path) -> None:
    pytest.importorskip("aiortc")
    from bisc.bench.aiortc_voice import run_aiortc_once

    samples, rate = read_wav(speech)
    short = tmp_path / "short.wav"
    write_wav(short, samples[: 3 * rate], rate)
    result = asyncio.run(run_aiortc_once(short, tmp_path / "out.wav", 0.0, 0.0, bitrate=32000))
    # VBR around the nominal rate, far below aiortc's default 96 kb/s.
    assert 15 < result["payload_kbps"] < 45 and result["wire_kbps"] > result["payload_kbps"]


def test_relay_bottleneck_queues_then_drops() -> None:
    from bisc.bench.impair import ImpairmentModel, Verdict

    model = ImpairmentModel(rate_bps=800_000, max_queue_ms=100.0)  # 1000-byte packets take 10 ms each
    verdicts = [model.decide(0, 1000, now=i * 0.001) for i in range(40)]  # offered at 8 Mb/s
    delays = [d for v, d in verdicts if v is Verdict.FORWARD]
    assert delays[:3] == pytest.approx([0.010, 0.019, 0.028])  # each waits for the ones before it
    assert max(delays) <= 0.100 + 0.010 + 1e-9  # the queue never holds more than max_queue_ms
    assert sum(v is Verdict.DROP_FULL for v, _ in verdicts) > 20
    model.set_rate(None)
    assert model.decide(0, 1000, now=10.0) == (Verdict.FORWARD, 0.0)
    with pytest.raises(ValueError):
        model.set_rate(0)


def test_repeated_calls_are_averaged() -> None:
    from bisc.bench.voice_quality import _mean_of, format_table

    runs: list[dict[str, Any]] = [
        {"pesq": 3.0, "delay_ms": 40.0, "cpu_pct": 10.0, "relays": [1]},
        {"pesq": 3.6, "delay_ms": 60.0, "cpu_pct": 12.0, "relays": [2]},
        {"pesq": None, "delay_ms": None, "cpu_pct": None, "error": "RuntimeError: peer died"},
    ]
    row = _mean_of(runs)
    assert row["pesq"] == pytest.approx(3.3) and row["pesq_min"] == 3.0 and row["pesq_runs"] == [3.0, 3.6]
    assert row["delay_ms"] == pytest.approx(50.0) and row["cpu_pct"] == pytest.approx(11.0)
    assert row["error"] == "1 of 3 calls failed: RuntimeError: peer died"
    assert _mean_of(runs[:1]) == runs[0]  # one call: as it was
    table = format_table([{"stack": "bisc", "loss": 0.05, "jitter_ms": 30.0} | row])
    assert "3.30" in table and "PESQ of 2 calls: 3.00 3.60" in table
