"""Shared helpers for the voice tests: the voice stream's constants, WAV reading and spectrum checks."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bisc.proto.media_control import StreamOffer

RATE = 48000
FRAME = 960
TONE_RMS = 0.3 * 32767 / np.sqrt(2)  # ToneSource's default level
FRAME_S = 0.02
U32 = 0xFFFFFFFF

VOICE = StreamOffer(0, "audio", "opus", 48000, 1, 20, True)


def read_wav(path: Path) -> npt.NDArray[np.float64]:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)


def band_rms(pcm: npt.NDArray[np.float64], hz: float, width: float = 20.0) -> float:
    """RMS of the part of `pcm` within `width` Hz of `hz` (Parseval on a Hann-windowed FFT)."""
    window = np.hanning(len(pcm))
    spectrum = np.fft.rfft(pcm * window)
    freqs = np.fft.rfftfreq(len(pcm), 1.0 / RATE)
    band = np.abs(freqs - hz) <= width
    power = 2.0 * np.sum(np.abs(spectrum[band]) ** 2) / (len(pcm) * np.sum(window**2))
    return float(np.sqrt(power))


def peak_hz(pcm: npt.NDArray[np.float64]) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * RATE / len(pcm))


def frame_rms(pcm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    frames = pcm[: len(pcm) // FRAME * FRAME].reshape(-1, FRAME)
    return np.asarray(np.sqrt(np.mean(frames**2, axis=1)), dtype=np.float64)


def longest_gap(pcm: npt.NDArray[np.float64], floor: float) -> int:
    """Longest run of 20 ms frames quieter than `floor`, after the first loud one."""
    rms = frame_rms(pcm)
    loud = np.nonzero(rms >= floor)[0]
    if len(loud) == 0:
        return len(rms)
    longest = run = 0
    for value in rms[loud[0] :]:
        run = run + 1 if value < floor else 0
        longest = max(longest, run)
    return longest
