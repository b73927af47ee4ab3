"""How people start the app: `bisc` with no command (and `bisc gui`) opens the window when there is a
display, and prints the help when there is none (ssh, CI)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gui_support import start_xvfb
from tests.helpers import run_bisc

pytestmark = pytest.mark.timeout(120)


def _windows(display: str) -> str:
    result = subprocess.run(
        ["xwininfo", "-root", "-tree", "-display", display], capture_output=True, text=True, timeout=10
    )
    return result.stdout


def test_headless_no_command_prints_help() -> None:
    result = run_bisc(env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    assert result.returncode == 0, result.stderr
    assert "doctor" in result.stdout and "gui" in result.stdout


@pytest.mark.parametrize("command", [[], ["gui", "--name", "Grace"]])
def test_the_app_window_opens_and_closes_cleanly(command: list[str], tmp_path: Path) -> None:
    if shutil.which("xwininfo") is None:
        pytest.skip("xwininfo is not installed (apt-get install x11-utils)")
    display, xvfb = start_xvfb("1280x800x24")
    env = {
        **os.environ,
        "DISPLAY": display,
        "KIVY_HOME": str(tmp_path / "kivy-home"),
        "KIVY_NO_ARGS": "1",
        "KIVY_NO_FILELOG": "1",
        "SDL_AUDIODRIVER": "dummy",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bisc", "--data-dir", str(tmp_path / "data"), *command],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while '"bisc"' not in _windows(display):
            assert proc.poll() is None, f"the app exited: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "no window titled bisc within 60 s"
            time.sleep(0.5)
        time.sleep(1.0)  # past start-up: Home is up and idle
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)  # Ctrl-C in the terminal that started it
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        xvfb.terminate()
    assert proc.returncode in (0, 130), err[-2000:]
    assert "Traceback" not in err, err[-3000:]
