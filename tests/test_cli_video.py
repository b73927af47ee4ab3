"""Video through the real `bisc` command: --video, --video-codec and --video-out."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from bisc.media.video_pattern import read_pattern_stamp
from tests.helpers import run_bisc
from tests.test_cli_channels import BiscProcess

pytestmark = pytest.mark.timeout(120)

COMMON = ("--bind", "127.0.0.1:0", "--json")


@pytest.fixture
def procs() -> Iterator[list[BiscProcess]]:
    started: list[BiscProcess] = []
    yield started
    for proc in started:
        proc.stop()


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_pattern_to_video_out(tmp_path: Path, procs: list[BiscProcess], codec: str) -> None:
    out = tmp_path / "out"
    alice = BiscProcess(
        "--data-dir", str(tmp_path / "a"), "create", "--name", "alice", *COMMON,
        "--video", "pattern:640x360", "--video-codec", codec,
    )  # fmt: skip
    procs.append(alice)
    ticket = alice.next_json()["ticket"]
    bob = BiscProcess(
        "--data-dir", str(tmp_path / "b"), "join", ticket, "--name", "bob", *COMMON, "--video-out", str(out)
    )
    procs.append(bob)
    stats = bob.wait_for(lambda r: r["event"] == "media_stats" and r.get("kind") == "video" and r["fps"] > 10)
    assert stats["name"] == "alice" and stats["stream"] == "camera"
    assert stats["width"] >= 320 and stats["decode_errors"] == 0 and 0 < stats["e2e_ms"] < 500
    pngs: list[Path] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # snapshots are written every 3 s
        pngs = list(out.glob("alice-*-camera.png"))
        if pngs and (out / "stats.jsonl").exists():
            break
        time.sleep(0.25)
    assert pngs, f"no snapshot in {out}: {list(out.iterdir())}"
    with av.open(str(pngs[0])) as container:
        picture = np.asarray(next(container.decode(video=0)).to_ndarray(format="rgb24"), dtype=np.uint8)
    assert read_pattern_stamp(picture, "rgb24") is not None  # the snapshot is the pattern, readable
    lines = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert lines and lines[-1]["stream"] == "camera" and lines[-1]["frames"] > 0


def test_bad_video_source_is_one_clear_error(tmp_path: Path) -> None:
    result = run_bisc(
        "--data-dir", str(tmp_path), "create", "--bind", "127.0.0.1:0", "--video", "nosuch.mkv",
        "--exit-after", "10", timeout=60,
    )  # fmt: skip
    everything = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in everything, everything
    assert "cannot start video" in everything and "unknown video source" in everything, everything
