"""The video bench's measurement code returns sane numbers (not the targets: those are the bench's)."""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from typing import Any

import numpy as np
import pytest

from bisc.bench import video as vb
from bisc.bench import video_call as vc
from bisc.cli.bench_cmd import DEFAULT_SUITES, SUITES
from bisc.media.video_codec import VideoDecoder, VideoEncoder
from bisc.media.video_pattern import PatternSource
from bisc.media.video_sender import VideoSender


def test_video_suite_is_opt_in() -> None:
    assert "video" in SUITES and "video" not in DEFAULT_SUITES


def test_pin_target_climbs_at_once_and_ignores_reports() -> None:
    sender = VideoSender(1, source_size=(1280, 720), fps=30.0)
    assert sender.target.height < 720  # the ladder starts low
    vc.pin_target(sender, vb.PIN_720P_BPS)
    assert (sender.target.width, sender.target.height) == (1280, 720)
    assert sender.encoder.bitrate == vb.PIN_720P_BPS
    sender.set_estimate(100_000, time.monotonic())  # a receiver's low estimate: ignored
    assert sender.target.height == 720
    small = VideoSender(1, source_size=(640, 360), fps=30.0)
    vc.pin_target(small, vb.PIN_360P_BPS)
    assert small.target.height == 360 and small.encoder.bitrate == vb.PIN_360P_BPS


def test_psnr_against_the_regenerated_pattern() -> None:
    source = PatternSource(1280, 720, 30.0, start=41)
    enc = VideoEncoder("vp8", 640, 360, 30.0, 800_000)  # scales the 720p source down, as the ladder does
    dec = VideoDecoder("vp8", "rgb24")
    pictures: list[Any] = []
    for _ in range(5):
        for packet in enc.encode(source.read_frame()):
            pictures.extend(p.data for p in dec.decode(packet.data))
    assert pictures and pictures[-1].shape == (360, 640, 3)
    fig = vc.psnr_figures(pictures, (1280, 720))
    assert fig["psnr_pictures"] == len(pictures)
    assert 25.0 < fig["psnr_min_db"] <= fig["psnr_db"] < 99.0
    wrong = vc.psnr_figures(pictures, (640, 360))  # the wrong source size: a different picture
    assert wrong["psnr_db"] < fig["psnr_db"]
    blank = vc.psnr_figures([np.zeros((360, 640, 3), np.uint8)], (640, 360))  # unstamped: skipped
    assert blank == {"psnr_db": None, "psnr_min_db": None, "psnr_pictures": 0}


def _stream(fps: float, gap: float, e2e: list[float] | None = None) -> dict[str, Any]:
    return {"fps": fps, "max_gap_s": gap, "freezes": int(gap > 0.5), "width": 640, "height": 360,
            "e2e": e2e or [], "psnr_db": 40.0, "psnr_min_db": 39.0, "psnr_pictures": 2}  # fmt: skip


def _peer(streams: list[dict[str, Any]], missing: int = 0) -> dict[str, Any]:
    return {"cpu_pct": 20.0, "streams": streams, "missing_streams": missing, "sender": None}


def test_mesh_figures_hold_rule() -> None:
    ok = {"peers": [_peer([_stream(29.0, 0.1), _stream(25.0, 0.2)]) for _ in range(3)]}
    fig = vb.mesh_figures(ok, 3)
    assert fig["holds"] and fig["fps_min"] == 25.0 and fig["streams"] == 6 and fig["cpu_pct_total"] == 60.0
    slow = {"peers": [_peer([_stream(29.0, 0.1), _stream(19.0, 0.2)]) for _ in range(3)]}
    assert not vb.mesh_figures(slow, 3)["holds"]
    frozen = {"peers": [_peer([_stream(29.0, 0.1), _stream(29.0, 1.2)]) for _ in range(3)]}
    assert not vb.mesh_figures(frozen, 3)["holds"]
    short = {"peers": [_peer([_stream(29.0, 0.1)], missing=1) for _ in range(3)]}
    assert not vb.mesh_figures(short, 3)["holds"] and vb.mesh_figures(short, 3)["fps_min"] == 0.0


def test_delay_figures_and_report_render() -> None:
    call = {
        "peers": [
            _peer([]) | {"sender": {"rung": "720p", "bitrate": 2_500_000}},
            _peer([_stream(30.0, 0.05, [0.02 + i / 1000 for i in range(100)])]),
        ]
    }
    fig = vb.delay_figures(call)
    assert 60.0 < fig["p50_ms"] < 75.0 < fig["p95_ms"] <= fig["max_ms"] < 125.0
    assert fig["samples"] == 100 and fig["received_size"] == "640x360" and fig["psnr_db"] == 40.0
    with pytest.raises(RuntimeError):
        vb.delay_figures({"peers": [_peer([]), _peer([_stream(30.0, 0.05)])]})
    report: dict[str, Any] = {
        "config": dataclasses.asdict(vb.VideoBenchConfig.quick()),
        "delay": fig,
        "codec": [{"stage": "encode", "codec": "vp8", "size": "360p", "cpu_ms": 3.0}],
        "mesh": [
            vb.mesh_figures({"peers": [_peer([_stream(29.0, 0.1)]) for _ in range(2)]}, 2),
            {"peers": 3, "error": "RuntimeError: boom"},
        ],
        "mesh_largest_held": 2,
        "aiortc": {"error": "ModuleNotFoundError: aiortc"},
    }
    report["targets"] = vb.targets(report)
    assert report["targets"][0]["met"]
    text = vb.format_report(report)
    assert "p50:" in text and "target <= 80" in text and "largest full mesh held" in text
    assert "boom" in text and "aiortc" in text


def test_two_peer_call_gives_delay_fps_and_psnr() -> None:
    call = vc.run_video_call(
        2, 2.0, size=(640, 360), pin_bps=vb.PIN_360P_BPS, senders=[0], warmup=1.0,
        read_stamps=True, keep_pictures=True,
    )  # fmt: skip
    fig = vb.delay_figures(call)
    assert 0.0 < fig["p50_ms"] <= fig["p95_ms"] < 1000.0
    assert fig["samples"] > 10 and fig["fps"] > 10.0
    assert fig["received_size"] == "640x360" and fig["sent_rung"] == "360p"
    assert fig["psnr_db"] is not None and fig["psnr_db"] > 25.0
    assert 0.0 < fig["cpu_send_pct"] < 200.0 and 0.0 < fig["cpu_recv_pct"] < 200.0


def test_three_peer_mesh_measures_every_stream() -> None:
    fig = vb.mesh_figures(vc.run_video_call(3, 2.0, size=(320, 180), pin_bps=200_000, warmup=1.0), 3)
    assert fig["streams"] == fig["streams_expected"] == 6
    assert 0.0 < fig["fps_min"] <= fig["fps_mean"] < 40.0
    assert fig["max_gap_s"] > 0.0 and len(fig["cpu_pct"]) == 3 and all(c > 0 for c in fig["cpu_pct"])


@pytest.mark.skipif(importlib.util.find_spec("aiortc") is None, reason="aiortc (bench extra) not installed")
def test_aiortc_video_gives_delay_fps_and_psnr() -> None:
    from bisc.bench.aiortc_video import run_aiortc_video

    fig = run_aiortc_video(seconds=2.0, warmup=1.0, size=(640, 360), bitrate=700_000)
    assert 0.0 < fig["p50_ms"] <= fig["p95_ms"] < 1000.0
    assert fig["samples"] > 10 and fig["fps"] > 10.0 and fig["received_size"] == "640x360"
    assert fig["psnr_db"] is not None and fig["psnr_db"] > 25.0
    assert fig["cpu_send_pct"] > 0.0 and fig["cpu_recv_pct"] > 0.0
