"""The `bisc` command as a user runs it: doctor, bench and the selector."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bisc._native.select import HOT_PATHS
from tests.helpers import run_bisc

REQUIRED = os.environ.get("BISC_REQUIRE_NATIVE", "") not in ("", "0")


def test_doctor_json(tmp_path: Path) -> None:
    result = run_bisc("--data-dir", str(tmp_path), "doctor", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert set(info["hot_paths"]) == set(HOT_PATHS)
    for entry in info["hot_paths"].values():
        assert entry["selected"] in entry["loaded"]
    if REQUIRED:
        assert info["hot_paths"]["packet"]["loaded"] == ["cython", "python", "rust"]
        assert info["hot_paths"]["fragment"]["selected"] == "cython"
        assert info["hot_paths"]["chunkhash"]["selected"] == "rust"
    assert {"opus", "vp8", "h264"} <= set(info["codecs"]) or info["codec_error"]
    assert info["paths"]["data_dir"] == str(tmp_path.resolve())


def test_doctor_text(tmp_path: Path) -> None:
    result = run_bisc("--data-dir", str(tmp_path), "doctor")
    assert result.returncode == 0, result.stderr
    assert "Hot paths" in result.stdout and "packet" in result.stdout


def test_doctor_with_pure_python(tmp_path: Path) -> None:
    result = run_bisc("--data-dir", str(tmp_path), "doctor", "--json", env={"BISC_IMPL": "python"})
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert all(e["selected"] == "python" and e["loaded"] == ["python"] for e in info["hot_paths"].values())


@pytest.mark.skipif(not REQUIRED, reason="native modules not required")
def test_forcing_one_implementation(tmp_path: Path) -> None:
    result = run_bisc("--data-dir", str(tmp_path), "doctor", "--json", env={"BISC_IMPL": "cython"})
    info = json.loads(result.stdout)
    chosen = {k: v["selected"] for k, v in info["hot_paths"].items()}
    assert chosen == {
        "packet": "cython",
        "fragment": "cython",
        "chunkhash": "python",
        "jitter": "cython",
        "bwe": "cython",
    }


def test_bad_impl_setting_is_a_clear_error() -> None:
    result = run_bisc("doctor", env={"BISC_IMPL": "fortran"})
    assert result.returncode != 0
    assert "BISC_IMPL='fortran' is not one of" in result.stderr


@pytest.mark.slow
def test_bench_quick_json() -> None:
    result = run_bisc("bench", "--quick", "--file-size", "16", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    full = json.loads(result.stdout)
    assert [r["nodes"] for r in full["join"]] == [2, 5]
    assert all(r["full_mesh_ms"] > 0 for r in full["join"])
    assert [r["nodes"] for r in full["gossip"]] == [200]
    assert full["gossip"][0]["delivery_ratio"] == 1.0
    files = full["files"]
    assert files["one_source"]["mb_per_s"] > 0 and files["three_sources"]["mb_per_s"] > 0
    assert {r["impl"] for r in files["share_hashing"]} >= {"hashlib"}
    report = full["hotpaths"]
    cases = {(r["hot_path"], r["case"], r["impl"]) for r in report["rows"]}
    assert ("packet", "encode 160 B", "construct") in cases
    assert ("packet", "decode 1185 B", "python") in cases
    assert any(hp == "chunkhash" and impl == "hashlib x2" for hp, _, impl in cases)
    if REQUIRED:
        assert ("packet", "decode 160 B", "rust") in cases
        assert ("packet", "encode 1185 B", "cython") in cases
        assert any(t["target"].startswith("reassemble") for t in report["targets"])
    for row in report["rows"]:
        assert row["rate"] > 0


def test_devices_lists_or_explains() -> None:
    result = run_bisc("devices", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    # Either devices are listed or a reason is given: never an empty silence.
    assert info["audio_devices"] or info["audio_error"]
    assert info["cameras"] or info["camera_error"]
    for device in info["audio_devices"]:
        assert {"index", "name", "max_input_channels", "max_output_channels"} <= set(device)
    text = run_bisc("devices")
    assert text.returncode == 0 and "Audio devices:" in text.stdout and "Cameras:" in text.stdout
