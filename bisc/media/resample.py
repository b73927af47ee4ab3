"""Streaming sample-rate conversion and re-chunking for mono int16 PCM.

The voice pipeline runs at 48 kHz in 20 ms frames, but sound cards, WAV files
and some platform audio APIs do not: :class:`Resampler` converts a continuous
stream between rates (libswresample through PyAV), and :class:`FrameRechunker`
cuts whatever lengths come out back into exact frames.
"""

from __future__ import annotations

import av
import numpy as np

from bisc.media.opus import FRAME_SAMPLES, AudioError, Pcm

MIN_RATE = 8000
MAX_RATE = 192000

_EMPTY: Pcm = np.zeros(0, dtype=np.int16)


def check_rate(rate: object, what: str = "sample rate") -> int:
    """`rate` as an int if it is a whole number of Hz in [MIN_RATE, MAX_RATE]; AudioError otherwise."""
    # bool is an int subclass; True Hz is a bug, not a rate.
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
        raise AudioError(f"{what} must be an integer number of Hz, got {rate!r}")
    if not MIN_RATE <= int(rate) <= MAX_RATE:
        raise AudioError(f"{what} must be within {MIN_RATE}..{MAX_RATE} Hz, got {rate}")
    return int(rate)


def _as_pcm(pcm: Pcm) -> Pcm:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        kind = pcm.dtype if isinstance(pcm, np.ndarray) else type(pcm).__name__
        raise AudioError(f"PCM must be a numpy int16 array, got {kind}")
    if pcm.ndim != 1 and not (pcm.ndim == 2 and 1 in pcm.shape):
        raise AudioError(f"PCM must be mono (1-D), got shape {pcm.shape}")
    return np.ascontiguousarray(pcm.reshape(-1))


class Resampler:
    """Converts a continuous mono int16 stream from `in_rate` to `out_rate`.

    :meth:`process` takes any number of samples and returns whatever output is ready; the filter state is
    kept between calls, so chunk boundaries leave no trace in the output. libswresample holds back a few
    samples of filter delay; :meth:`flush` returns them at the end of the stream (and starts afresh).
    Equal rates pass samples through untouched.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = check_rate(in_rate, "input sample rate")
        self.out_rate = check_rate(out_rate, "output sample rate")
        self._resampler: av.AudioResampler | None = None
        self._pts = 0

    @property
    def identity(self) -> bool:
        return self.in_rate == self.out_rate

    def _convert(self, frame: av.AudioFrame | None) -> Pcm:
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.out_rate)
        outs = self._resampler.resample(frame)
        parts = [out.to_ndarray().reshape(-1).astype(np.int16, copy=False) for out in outs]
        if not parts:
            return _EMPTY.copy()
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def process(self, pcm: Pcm) -> Pcm:
        """Feed `pcm` (at `in_rate`); returns the output ready so far (at `out_rate`, possibly empty)."""
        mono = _as_pcm(pcm)
        if self.identity:
            return mono.copy()
        if mono.shape[0] == 0:
            return _EMPTY.copy()
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.in_rate
        # Contiguous timestamps tell the filter graph the chunks are one stream (no gap, no resync).
        frame.pts = self._pts
        self._pts += mono.shape[0]
        return self._convert(frame)

    def flush(self) -> Pcm:
        """The samples still held back by the filter; the next :meth:`process` starts a new stream."""
        if self.identity or self._resampler is None:
            return _EMPTY.copy()
        out = self._convert(None)
        # A drained PyAV resampler accepts nothing more, so begin again with a fresh one.
        self._resampler = None
        self._pts = 0
        return out


class FrameRechunker:
    """Collects samples of any length and hands them out in exact `frame_samples`-sized frames.

    Bounded: when more than `max_frames` frames' worth is waiting (the consumer fell behind), the oldest
    samples are dropped and counted in :attr:`dropped`, so latency cannot grow without limit.
    """

    def __init__(self, frame_samples: int = FRAME_SAMPLES, max_frames: int = 10) -> None:
        if frame_samples <= 0 or max_frames <= 0:
            raise AudioError(f"frame size and bound must be positive, got {frame_samples}, {max_frames}")
        self.frame_samples = frame_samples
        self.max_samples = frame_samples * max_frames
        self._buf: Pcm = _EMPTY.copy()
        self.dropped = 0  # samples thrown away because the buffer was full

    @property
    def pending(self) -> int:
        """Samples waiting."""
        return int(self._buf.shape[0])

    def push(self, pcm: Pcm) -> None:
        mono = _as_pcm(pcm)
        if mono.shape[0] == 0:
            return
        buf = np.concatenate((self._buf, mono)) if self._buf.shape[0] else mono.copy()
        excess = buf.shape[0] - self.max_samples
        if excess > 0:
            self.dropped += excess
            buf = buf[excess:]
        self._buf = buf

    def pop(self, n: int | None = None) -> Pcm | None:
        """Exactly `n` samples (default: one frame) from the front, or None if fewer are waiting."""
        n = self.frame_samples if n is None else n
        if self._buf.shape[0] < n:
            return None
        out = self._buf[:n].copy()
        self._buf = self._buf[n:]
        return out

    def frames(self) -> list[Pcm]:
        """Every complete frame waiting, oldest first."""
        out: list[Pcm] = []
        while (frame := self.pop()) is not None:
            out.append(frame)
        return out

    def drain(self) -> Pcm:
        """Everything waiting, complete frame or not (e.g. the tail at the end of a stream)."""
        out, self._buf = self._buf, _EMPTY.copy()
        return out
