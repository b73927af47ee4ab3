"""The real device path: PyAudio out to a PulseAudio null sink, and back in
from its monitor, as a call's speaker and microphone would run."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from bisc.errors import BiscError
from bisc.media.audio_io import AudioInput, AudioOutput, find_device
from bisc.media.devices import list_audio_devices
from bisc.media.sources import ToneSource

NEED_PULSE = os.environ.get("BISC_REQUIRE_AUDIO", "") not in ("", "0")


@pytest.fixture(scope="module")
def pulse_null_sink() -> str:
    """A null sink as default output and its monitor as default input."""
    if shutil.which("pactl") is None or subprocess.run(["pactl", "info"], capture_output=True).returncode:
        if NEED_PULSE:
            pytest.fail("PulseAudio is required (BISC_REQUIRE_AUDIO) but not running")
        pytest.skip("no PulseAudio server")
    sinks = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True).stdout
    if "bisc_null" not in sinks:
        subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=bisc_null"], check=True)
    subprocess.run(["pactl", "set-default-sink", "bisc_null"], check=True)
    subprocess.run(["pactl", "set-default-source", "bisc_null.monitor"], check=True)
    return "bisc_null"


def test_tone_played_to_the_null_sink_is_captured_from_its_monitor(pulse_null_sink: str) -> None:
    tone = ToneSource(880.0, level=0.5)
    captured: list[np.ndarray] = []
    lock = threading.Lock()

    def keep(pcm: np.ndarray) -> None:
        with lock:
            captured.append(pcm)

    with AudioInput(keep, device="pulse"), AudioOutput(tone.read_frame, device="pulse"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                if sum(len(c) for c in captured) >= 48000 * 2:
                    break
            time.sleep(0.05)
    with lock:
        pcm = np.concatenate(captured)[-48000:].astype(np.float64)
    assert len(pcm) == 48000, "not enough audio captured from the monitor"
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    peak_hz = np.argmax(spectrum) * 48000 / len(pcm)
    assert abs(peak_hz - 880.0) < 5, peak_hz
    rms = np.sqrt(np.mean(pcm**2)) / 32767
    assert 0.5 / np.sqrt(2) * 0.5 < rms < 0.5 / np.sqrt(2) * 1.5, rms  # about the level played


def test_device_lookup_errors_name_the_choices(pulse_null_sink: str) -> None:
    with pytest.raises(BiscError, match="available"):
        find_device("no such device", output=True)
    devices, _ = list_audio_devices()
    assert find_device(devices[0].name, output=devices[0].max_output_channels > 0) == devices[0].index
