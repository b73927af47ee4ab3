"""The GUI bench: its figures from raw results, and one quick run end to end in a real window.

The end-to-end run is skipped only when Xvfb (with no DISPLAY) or Kivy is missing and CI is not set,
the same rule as the GUI tests (tests/gui_support.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import os
import shutil
import time
from typing import Any

import pytest

from bisc.bench import gui as gb
from bisc.bench import gui_sender as gs
from bisc.cli.bench_cmd import DEFAULT_SUITES, SUITES
from bisc.media.video_types import DecodedFrame
from tests.gui_support import _no_window


def test_gui_suite_is_opt_in() -> None:
    assert "gui" in SUITES and "gui" not in DEFAULT_SUITES


def test_decoded_frames_carry_their_decode_time() -> None:
    import numpy as np

    before = time.monotonic()
    frame = DecodedFrame(np.zeros((2, 2, 3), np.uint8), "rgb24", 2, 2, None, False)
    assert before <= frame.decoded_at <= time.monotonic()
    later = DecodedFrame(frame.data, "rgb24", 2, 2, None, False)
    assert later == frame  # the time is not part of a picture's identity


def _raw(wall: float = 2.0) -> dict[str, Any]:
    flips = [0.1 * i for i in range(21)]  # 21 redraws 100 ms apart
    flips[10] += 0.05  # one late redraw: a 150 ms gap
    tiles = [
        {"name": "P1", "size": [640, 360], "uploads": 40, "decoded": 50,
         "delays_s": [0.010] * 30 + [0.050] * 10, "upload_s": [0.001] * 40},
        {"name": "P2", "size": [320, 180], "uploads": 20, "decoded": 60,
         "delays_s": [0.020] * 20, "upload_s": [0.0005] * 20},
    ]  # fmt: skip
    return {
        "ui": {
            "wall_s": wall, "flips": flips, "swaps_s": [0.05] * 10, "clock_frames": 120, "cpu_s": 1.5,
            "main_thread_cpu_s": 0.5,
            "live": False, "tiles": tiles, "window": [1280, 800], "maxfps": 60, "renderer": "llvmpipe",
        },
        "peers": [{"name": "P1", "cpu_pct": 30.0, "encoded_fps": 30.0, "sent_fps": 29.0, "rung": "360p",
                   "size": [640, 360], "bitrate": 600_000,
                   "datagrams_to_ui": 1000, "datagrams_dropped": 10, "rtt_ms": 2.0}],
        "server_cpu_pct": 12.5,
    }  # fmt: skip


def test_figures_from_raw_results() -> None:
    cfg = gb.GuiBenchConfig(peers=2, size=(640, 360))
    fig = gb.figures(_raw(), cfg)
    assert fig["redraw_fps"] == pytest.approx(10.5) and fig["clock_fps"] == pytest.approx(60.0)
    assert fig["redraw_gap_max_ms"] == pytest.approx(150.0)
    assert fig["swap_ms_p95"] == pytest.approx(50.0) and fig["swap_share_pct"] == pytest.approx(25.0)
    assert fig["live_tiles"] == 1  # only P1 is at the configured size
    p1, p2 = fig["tiles"]
    assert p1["upload_fps"] == pytest.approx(20.0) and p1["decoded_fps"] == pytest.approx(25.0)
    assert p1["delay_p50_ms"] == pytest.approx(10.0) and p1["delay_p95_ms"] == pytest.approx(50.0)
    assert p2["upload_fps"] == pytest.approx(10.0) and fig["upload_fps_total"] == pytest.approx(30.0)
    assert fig["delay_p50_ms"] == pytest.approx(20.0) and fig["delay_p95_ms"] == pytest.approx(50.0)  # pooled
    assert fig["upload_ms_p50"] == pytest.approx(1.0)  # the upload cost counts frames at `size` only
    assert fig["upload_ms_all_p50"] == pytest.approx(1.0)
    assert fig["ui_cpu_pct"] == pytest.approx(75.0) and fig["ui_main_thread_cpu_pct"] == pytest.approx(25.0)
    assert fig["sender_cpu_pct_total"] == pytest.approx(30.0) and fig["xvfb_cpu_pct"] == 12.5
    text = gb.format_report({"config": dataclasses.asdict(cfg)} | fig)
    assert "redraws: 10.5/s" in text and "P2" in text and "360p" in text and "llvmpipe" in text


def test_figures_without_uploads_and_a_failed_run_render() -> None:
    raw = _raw()
    for tile in raw["ui"]["tiles"]:
        tile.update(uploads=0, delays_s=[], upload_s=[])
    raw["ui"]["flips"] = raw["ui"]["swaps_s"] = []
    cfg = gb.GuiBenchConfig(peers=2, size=(640, 360))
    fig = gb.figures(raw, cfg)
    assert fig["redraw_fps"] == 0.0 and fig["redraw_gap_p95_ms"] is None and fig["swap_ms_p50"] is None
    assert fig["delay_p50_ms"] is None and fig["upload_ms_mean"] is None
    assert "p50 - ms" in gb.format_report({"config": dataclasses.asdict(cfg)} | fig)
    failed = gb.format_report({"config": dataclasses.asdict(cfg), "error": "RuntimeError: boom"})
    assert "failed: RuntimeError: boom" in failed


def test_process_cpu_of_this_process() -> None:
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc on this platform")
    spent = gb.process_cpu_s(os.getpid())
    assert spent is not None and spent >= 0.0
    assert gb.process_cpu_s(None) is None


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_run_measures_a_live_call_screen() -> None:
    if importlib.util.find_spec("kivy") is None:
        _no_window("kivy is not installed (pip install -e '.[gui]')")
    if not os.environ.get("DISPLAY") and shutil.which("Xvfb") is None:
        _no_window("no DISPLAY and Xvfb is not installed (apt-get install xvfb)")
    started = time.monotonic()
    report = gb.run(quick=True)
    assert "error" not in report, report.get("error")
    assert time.monotonic() - started < 90.0
    cfg = gb.GuiBenchConfig.quick()
    assert report["live_tiles"] == cfg.peers and len(report["tiles"]) == cfg.peers
    assert report["redraw_fps"] > 0.0 and report["clock_fps"] > 0.0
    assert (
        0.0 <= report["swap_ms_p50"] <= report["swap_ms_p95"] < 5000.0 and report["swap_share_pct"] <= 100.0
    )
    for tile in report["tiles"]:
        assert tile["uploads"] > 0 and tile["size"] == "640x360"
        assert 0.0 < tile["upload_fps"] <= tile["decoded_fps"] + 1.0  # a tile shows only decoded pictures
        assert 0.0 <= tile["delay_p50_ms"] <= tile["delay_p95_ms"] < 5000.0
    for key in ("delay_p50_ms", "delay_p95_ms", "upload_ms_p50", "upload_ms_p95"):
        assert math.isfinite(report[key]) and report[key] >= 0.0, key
    assert 0.0 < report["ui_cpu_pct"] <= 200.0 and 0.0 < report["ui_main_thread_cpu_pct"] <= 100.0
    assert len(report["senders"]) == cfg.peers
    for sender in report["senders"]:
        assert 0.0 < sender["cpu_pct"] <= 200.0 and sender["rung"] == "360p" and sender["sent_fps"] > 10.0
    text = gb.format_report(report)
    assert "redraws:" in text and "decoded -> uploaded" in text


def test_replay_encoder_loops_a_decodable_stream() -> None:
    from bisc.media.video_codec import VideoDecoder
    from bisc.media.video_pattern import PatternSource

    loop = gs.encode_loop((320, 180), 30.0, 200_000, seconds=0.3, settle=0.2)
    assert len(loop) == 9 and loop[0].keyframe and not any(f.keyframe for f in loop[1:])
    replay, decoder, source = (
        gs.ReplayEncoder(loop),
        VideoDecoder("vp8", "rgb24"),
        PatternSource(320, 180, 30.0),
    )
    out = [e for i in range(25) for e in replay.encode(source.read_frame(), force_keyframe=i == 13)]
    assert [f.data for f in out[:9]] == [f.data for f in loop]  # the loop, then again from its start
    assert out[9].data == loop[0].data and out[13].keyframe and out[12].data == loop[3].data
    assert all(b.pts > a.pts for a, b in itertools.pairwise(out))  # fresh, increasing timestamps
    assert sum(len(decoder.decode(f.data)) for f in out) == len(out)
    with pytest.raises(ValueError):
        gs.ReplayEncoder(loop[1:])
