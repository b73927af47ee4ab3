"""Audio sinks that take 20 ms frames of 48 kHz mono int16 PCM."""

from __future__ import annotations

import os
import wave

from bisc.media.opus import SAMPLE_RATE, AudioError, Pcm, to_pcm_frame


class NullSink:
    """Discards frames (counts them)."""

    def __init__(self) -> None:
        self.frames_written = 0

    def write_frame(self, pcm: Pcm | bytes) -> None:
        to_pcm_frame(pcm)
        self.frames_written += 1

    def close(self) -> None:
        pass


class WavSink:
    """Writes frames to a 48 kHz mono 16-bit PCM WAV file (stdlib ``wave``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            self._wav: wave.Wave_write | None = wave.open(os.fspath(path), "wb")  # noqa: SIM115
        except OSError as exc:
            raise AudioError(f"cannot write WAV file {os.fspath(path)!r}: {exc}") from exc
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)
        self.frames_written = 0

    def write_frame(self, pcm: Pcm | bytes) -> None:
        if self._wav is None:
            raise AudioError("WavSink is closed")
        frame = to_pcm_frame(pcm)
        self._wav.writeframes(frame.astype("<i2", copy=False).tobytes())
        self.frames_written += 1

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None

    def __enter__(self) -> WavSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
