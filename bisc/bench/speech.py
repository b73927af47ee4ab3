"""A speech sample for voice-quality benchmarks, synthesised with espeak-ng, plus WAV helpers.

Synthetic speech is not a recorded talker, but it is speech-like enough for
PESQ (voiced/unvoiced segments, pauses) and needs no data set download: the
Debian package espeak-ng is all it takes. The result is cached by content.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bisc.errors import BiscError

RATE = 48000
# Four Harvard sentences at 165 words/minute: about 9.7 s.
SENTENCES = (
    "The birch canoe slid on the smooth planks. "
    "Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. "
    "These days a chicken leg is a rare dish."
)
VOICE = "en-us"
WORDS_PER_MINUTE = 165

Samples = npt.NDArray[np.int16]


class SpeechError(BiscError):
    """The speech sample could not be generated (e.g. espeak-ng is missing)."""


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speech_wav(cache_dir: str | Path, text: str = SENTENCES, rate: int = RATE) -> Path:
    """Path of a mono int16 WAV of `text` at `rate` Hz in cache_dir, generated on first use."""
    exe = shutil.which("espeak-ng")
    key = hashlib.sha256(f"{text}|{VOICE}|{WORDS_PER_MINUTE}|{rate}".encode()).hexdigest()[:16]
    out = Path(cache_dir) / f"speech-{key}-{rate}.wav"
    if out.exists():
        return out
    if exe is None:
        raise SpeechError(
            "espeak-ng is not installed (Debian: apt-get install espeak-ng); ci/setup installs it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        cmd = [exe, "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(raw), text]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0 or not raw.exists():
            raise SpeechError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
        samples, src_rate = read_wav(raw)
    # Write under a temporary name first so a concurrent reader never sees half a file.
    partial = out.with_suffix(".part")
    write_wav(partial, resample(samples, src_rate, rate), rate)
    partial.replace(out)
    return out


def read_wav(path: str | Path) -> tuple[Samples, int]:
    """Samples (mono int16; channels averaged) and sample rate of a 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise SpeechError(f"{path}: only 16-bit PCM WAV is supported")
        channels, rate = w.getnchannels(), w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data.astype(np.int16), rate


def write_wav(path: str | Path, samples: npt.NDArray[np.generic], rate: int) -> None:
    """Write mono 16-bit PCM; float input is taken as int16-scaled and clipped."""
    pcm = np.clip(np.asarray(samples, dtype=np.float64), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def resample(samples: npt.NDArray[np.generic], src_rate: int, dst_rate: int) -> Samples:
    """Band-limited resampling of mono int16 audio with PyAV's libswresample."""
    pcm = np.asarray(samples, dtype=np.int16)
    if src_rate == dst_rate or len(pcm) == 0:
        return pcm.copy()
    import av  # media extra; imported here so WAV helpers work without it

    resampler = av.AudioResampler(format="s16", layout="mono", rate=dst_rate)
    parts: list[npt.NDArray[np.generic]] = []
    step = 4800
    for start in range(0, len(pcm), step):
        frame = av.AudioFrame.from_ndarray(
            pcm[start : start + step].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = src_rate
        parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
    parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    return np.concatenate(parts).astype(np.int16) if parts else np.zeros(0, np.int16)
