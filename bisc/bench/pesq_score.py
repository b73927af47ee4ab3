"""Wide-band PESQ (ITU-T P.862.2, MOS-LQO) of a received recording against what was sent.

PESQ copes with small time shifts and per-utterance realignment, but not with
a large leading transport delay, so the degraded signal is first shifted by
the lag of its cross-correlation peak and cut or padded to the reference length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from bisc.bench.speech import read_wav, resample

PESQ_RATE = 16000
# Delays searched for, in seconds: a call on loopback is well inside this.
MAX_DELAY = 3.0

Audio = str | Path | npt.NDArray[np.generic]
FloatArray = npt.NDArray[np.float64]


def _load(audio: Audio, rate: int) -> FloatArray:
    if isinstance(audio, str | Path):
        samples, src = read_wav(audio)
        return resample(samples, src, rate).astype(np.float64)
    return np.asarray(audio, dtype=np.float64)


def _lag(ref: FloatArray, deg: FloatArray, max_lag: int) -> int:
    """Samples by which deg lags ref (negative: deg leads), from the cross-correlation peak."""
    if len(ref) == 0 or len(deg) == 0:
        return 0
    n = 1 << int(np.ceil(np.log2(len(ref) + len(deg))))
    spec = np.fft.rfft(deg, n) * np.conj(np.fft.rfft(ref, n))
    corr = np.fft.irfft(spec, n)
    # corr[k] pairs deg[t + k] with ref[t]; negative k wrap to the end.
    pos = corr[: min(max_lag, len(deg)) + 1]
    neg = corr[n - min(max_lag, len(ref) - 1) :] if len(ref) > 1 else corr[:0]
    best_pos = int(np.argmax(pos))
    if len(neg) and float(np.max(neg)) > float(pos[best_pos]):
        return int(np.argmax(neg)) - len(neg)
    return best_pos


def delay_estimate(
    reference: Audio, degraded: Audio, rate: int = PESQ_RATE, max_delay: float = MAX_DELAY
) -> float:
    """Seconds by which `degraded` lags `reference`; arrays are taken to be at `rate` Hz."""
    ref, deg = _load(reference, rate), _load(degraded, rate)
    return _lag(ref, deg, int(max_delay * rate)) / rate


def align(ref: FloatArray, deg: FloatArray, lag: int) -> FloatArray:
    """deg shifted back by `lag` samples and cut or zero-padded to len(ref)."""
    shifted = deg[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag), deg])
    out = np.zeros(len(ref))
    out[: min(len(ref), len(shifted))] = shifted[: len(ref)]
    return out


def score(reference_wav: Audio, degraded_wav: Audio, rate: int = PESQ_RATE) -> float:
    """Wide-band MOS-LQO (about 1.0 to 4.64) of degraded against reference, after alignment."""
    from pesq import pesq  # type: ignore[import-untyped]  # bench extra (C extension), needed only here

    ref = _load(reference_wav, rate)
    deg = _load(degraded_wav, rate)
    if rate != PESQ_RATE:
        ref = resample(ref, rate, PESQ_RATE).astype(np.float64)
        deg = resample(deg, rate, PESQ_RATE).astype(np.float64)
    aligned = align(ref, deg, _lag(ref, deg, int(MAX_DELAY * PESQ_RATE)))
    # The pesq module wants float input; PESQ normalises the level itself.
    return float(pesq(PESQ_RATE, ref / 32768.0, aligned / 32768.0, "wb"))
