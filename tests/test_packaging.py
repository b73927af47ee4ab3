"""`pip install .` builds one wheel holding both native parts, and bisc runs
from that wheel alone (not from this source tree)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_contains_cython_and_rust_and_runs(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = wheels.glob("bisc-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site")
    ext = (".so", ".pyd")
    assert any(n.startswith("bisc/_bisc_rs.") and n.endswith(ext) for n in names), names
    assert any(n.startswith("bisc/_native/_packet.") and n.endswith(ext) for n in names), names
    assert any(n.startswith("bisc/_native/_fragment.") and n.endswith(ext) for n in names), names
    assert "bisc/_bisc_rs.pyi" in names and "bisc/py.typed" in names

    # Run from the unpacked wheel, outside the source tree.
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"), BISC_REQUIRE_NATIVE="1")
    env.pop("BISC_IMPL", None)
    result = subprocess.run(
        [sys.executable, "-m", "bisc", "--data-dir", str(tmp_path / "data"), "doctor", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert {e["selected"] for e in info["hot_paths"].values()} <= {"cython", "rust"}
    check = subprocess.run(
        [sys.executable, "-c", "import bisc; print(bisc.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert check.stdout.strip().startswith(str(tmp_path / "site")), check.stdout
