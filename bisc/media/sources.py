"""Audio sources that yield 20 ms frames of 48 kHz mono int16 PCM (960 samples per ``read_frame``)."""

from __future__ import annotations

import math
import os
import wave
from typing import Protocol

import numpy as np

from bisc.media.opus import FRAME_SAMPLES, SAMPLE_RATE, AudioError, Pcm
from bisc.media.resample import Resampler

# WAV frames read from the file per resampler call.
_WAV_CHUNK = 4096


class AudioSource(Protocol):
    def read_frame(self) -> Pcm: ...


class SilenceSource:
    """Digital silence, forever."""

    def read_frame(self) -> Pcm:
        return np.zeros(FRAME_SAMPLES, dtype=np.int16)


class ToneSource:
    """A sine tone of ``freq_hz`` at ``level`` (fraction of full scale), phase-continuous across frames.

    Sample ``n`` of the stream is ``level * 32767 * sin(2π f n / 48000)`` regardless of how it is split
    into frames, so the output is fully deterministic.
    """

    def __init__(self, freq_hz: float = 440.0, level: float = 0.3) -> None:
        if not 0.0 < freq_hz < SAMPLE_RATE / 2:
            raise AudioError(f"tone frequency must be within (0, {SAMPLE_RATE // 2}) Hz, got {freq_hz}")
        if not 0.0 <= level <= 1.0:
            raise AudioError(f"tone level must be within [0, 1], got {level}")
        self.freq_hz = freq_hz
        self.level = level
        self._n = 0

    def read_frame(self) -> Pcm:
        n = np.arange(self._n, self._n + FRAME_SAMPLES, dtype=np.float64)
        self._n += FRAME_SAMPLES
        # Keep the sample index small (exact phase wrap after a whole number of periods is not needed:
        # float64 stays exact for any realistic call length).
        samples = self.level * 32767.0 * np.sin(2.0 * math.pi * self.freq_hz * n / SAMPLE_RATE)
        return np.round(samples).astype(np.int16)


def _pcm_to_int16(raw: bytes, sampwidth: int, channels: int) -> Pcm:
    """Decode interleaved little-endian WAV PCM into a mono int16 array (channels averaged)."""
    if sampwidth == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif sampwidth == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif sampwidth == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        data = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8
        data = data.astype(np.int32) >> 16  # arithmetic shift keeps the sign of the top byte
    elif sampwidth == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.int32) >> 16
    else:
        raise AudioError(f"unsupported WAV sample width {sampwidth} bytes")
    usable = data.shape[0] - data.shape[0] % channels
    frames = data[:usable].reshape(-1, channels)
    mono = frames.mean(axis=1) if channels > 1 else frames[:, 0]
    out: Pcm = np.clip(np.round(mono), -32768, 32767).astype(np.int16)
    return out


class WavSource:
    """Reads a PCM WAV file of any rate and channel count as 48 kHz mono frames.

    Channels are averaged to mono, then :class:`~bisc.media.resample.Resampler` converts the rate (8 to
    192 kHz; other rates are refused). At the end of the file the source returns silence forever
    (``loop=False``, the default; check :attr:`finished`), or starts again from the beginning
    (``loop=True``). The last partial frame is padded with silence.
    """

    def __init__(self, path: str | os.PathLike[str], loop: bool = False) -> None:
        try:
            self._wav = wave.open(os.fspath(path), "rb")  # noqa: SIM115 - held until close()
        except (OSError, EOFError, wave.Error) as exc:
            raise AudioError(f"cannot read WAV file {os.fspath(path)!r}: {exc}") from exc
        self.channels = self._wav.getnchannels()
        self.sample_rate = self._wav.getframerate()
        self._sampwidth = self._wav.getsampwidth()
        if self._sampwidth not in (1, 2, 3, 4) or self.channels < 1 or self.sample_rate <= 0:
            self._wav.close()
            raise AudioError(
                f"unsupported WAV format: {self.channels} channels, {self._sampwidth}-byte samples, "
                f"{self.sample_rate} Hz"
            )
        try:
            self._resampler = Resampler(self.sample_rate, SAMPLE_RATE)
        except AudioError as exc:
            self._wav.close()
            raise AudioError(f"unsupported WAV file {os.fspath(path)!r}: {exc}") from None
        self.loop = loop
        self._buf = np.zeros(0, dtype=np.int16)
        self._eof = False
        self.finished = False

    def _resample(self, mono: Pcm | None) -> None:
        out = self._resampler.flush() if mono is None else self._resampler.process(mono)
        self._buf = np.concatenate((self._buf, out))

    def _fill(self) -> None:
        while self._buf.shape[0] < FRAME_SAMPLES and not self._eof:
            raw = self._wav.readframes(_WAV_CHUNK)
            if raw:
                mono = _pcm_to_int16(raw, self._sampwidth, self.channels)
                if mono.shape[0]:
                    self._resample(mono)
                continue
            if self.loop:
                if self._wav.getnframes() == 0:
                    self._eof = True
                else:
                    self._wav.rewind()
                continue
            self._resample(None)  # flush what the resampler holds back
            self._eof = True

    def read_frame(self) -> Pcm:
        self._fill()
        if self._buf.shape[0] >= FRAME_SAMPLES:
            out = self._buf[:FRAME_SAMPLES].copy()
            self._buf = self._buf[FRAME_SAMPLES:]
            return out
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        if self._buf.shape[0] == 0:
            self.finished = True
        out[: self._buf.shape[0]] = self._buf
        self._buf = np.zeros(0, dtype=np.int16)
        return out

    def close(self) -> None:
        self._wav.close()

    def __enter__(self) -> WavSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
