"""Mixing several peers' 48 kHz mono int16 frames into one, plus level metering and speech detection."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from bisc.media.opus import AudioError, Pcm

FULL_SCALE = 32768.0
# Below this fraction of full scale the mix is passed through linearly; above it a tanh knee
# compresses smoothly towards (but never reaches) full scale.
LIMIT_KNEE = 0.8
# level_dbfs() of digital silence (instead of -inf).
SILENCE_DBFS = -120.0


def soft_limit(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Map samples normalised to full scale (any magnitude) into (-1, 1), keeping sign and order.

    Identity for ``|x| <= LIMIT_KNEE``; above that ``knee + (1 - knee) * tanh((|x| - knee) / (1 - knee))``,
    which is continuous with slope 1 at the knee and strictly below 1 for any input.
    """
    mag = np.abs(x)
    head = 1.0 - LIMIT_KNEE
    over = mag > LIMIT_KNEE
    limited = np.where(over, LIMIT_KNEE + head * np.tanh((mag - LIMIT_KNEE) / head), mag)
    out: npt.NDArray[np.float64] = np.sign(x) * limited
    return out


def mix(frames: Sequence[Pcm], gains: Sequence[float] | None = None) -> Pcm:
    """Sum int16 frames (one per peer, equal length) with per-peer linear ``gains``, soft-limited.

    The sum is taken in float64, so it never wraps around; loud sums are compressed by
    :func:`soft_limit` and always stay inside the int16 range with their sign intact.
    An empty ``frames`` is an error (the caller knows the frame length it wants silence for).
    """
    if not frames:
        raise AudioError("mix() needs at least one frame")
    if gains is not None and len(gains) != len(frames):
        raise AudioError(f"{len(gains)} gains given for {len(frames)} frames")
    length = None
    acc: npt.NDArray[np.float64] | None = None
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
            raise AudioError("mix() takes one-dimensional int16 arrays")
        if length is None:
            length = frame.shape[0]
            acc = np.zeros(length, dtype=np.float64)
        elif frame.shape[0] != length:
            raise AudioError(f"frame {i} has {frame.shape[0]} samples, expected {length}")
        gain = 1.0 if gains is None else float(gains[i])
        if not math.isfinite(gain) or gain < 0.0:
            raise AudioError(f"gain {gains[i] if gains is not None else gain} is not a finite value >= 0")
        assert acc is not None
        acc += frame.astype(np.float64) * gain
    assert acc is not None
    limited = soft_limit(acc / FULL_SCALE) * FULL_SCALE
    return np.clip(np.round(limited), -32767, 32767).astype(np.int16)


def level_dbfs(pcm: Pcm) -> float:
    """RMS level relative to full scale in dB (a full-scale square wave is 0 dBFS, a full-scale sine
    about -3 dBFS); digital silence or an empty frame gives ``SILENCE_DBFS``."""
    if pcm.size == 0:
        return SILENCE_DBFS
    rms = math.sqrt(float(np.mean(np.square(pcm.astype(np.float64)))))
    if rms <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * math.log10(rms / FULL_SCALE))


class SpeakingDetector:
    """Says whether a peer is speaking: level above ``threshold_dbfs``, held for ``hang_frames`` more
    frames after it drops (so short pauses between words do not flicker the indicator)."""

    def __init__(self, threshold_dbfs: float = -45.0, hang_frames: int = 10) -> None:
        if hang_frames < 0:
            raise AudioError(f"hang_frames must be >= 0, got {hang_frames}")
        self.threshold_dbfs = threshold_dbfs
        self.hang_frames = hang_frames
        self._hang = 0
        self.speaking = False

    def update(self, pcm: Pcm) -> bool:
        if level_dbfs(pcm) >= self.threshold_dbfs:
            self._hang = self.hang_frames
            self.speaking = True
        elif self._hang > 0:
            self._hang -= 1
            self.speaking = True
        else:
            self.speaking = False
        return self.speaking
