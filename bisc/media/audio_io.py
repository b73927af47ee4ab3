"""Microphone and speaker streams through PortAudio (PyAudio).

One interface for every platform: PortAudio picks WASAPI/CoreAudio/ALSA or
PulseAudio underneath. Streams run in callback mode, so playout is paced by
the device's clock: the output callback asks for the next 20 ms frame when
the device needs it, and the input callback hands over each captured frame.
Both callbacks run on PortAudio's thread and must only move bytes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from bisc.media.devices import list_audio_devices, quiet_stderr
from bisc.media.opus import FRAME_SAMPLES, SAMPLE_RATE, AudioError, Pcm

FrameProducer = Callable[[], Pcm]  # output: the next 20 ms to play
FrameConsumer = Callable[[Pcm], None]  # input: 20 ms just captured


def find_device(spec: str | int | None, *, output: bool) -> int | None:
    """Device index for a name (case-insensitive substring) or index; None = default.

    AudioError with the available names when nothing matches."""
    if spec is None or spec == "":
        return None
    devices, reason = list_audio_devices()
    usable = [d for d in devices if (d.max_output_channels if output else d.max_input_channels) > 0]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        index = int(spec)
        if any(d.index == index for d in usable):
            return index
    else:
        matches = [d for d in usable if spec.lower() in d.name.lower()]
        if matches:
            return matches[0].index
    kind = "output" if output else "input"
    names = ", ".join(f"[{d.index}] {d.name}" for d in usable) or reason or "none"
    raise AudioError(f"no {kind} audio device matches {spec!r}; available: {names}")


class _Stream:
    def __init__(self) -> None:
        import pyaudio  # optional dependency: bisc[media]

        self._pyaudio_module = pyaudio
        with quiet_stderr():
            self._pa = pyaudio.PyAudio()
        self._stream: Any = None
        self.underruns = 0
        self.errors = 0

    def _open(self, callback: Any, device: str | int | None, *, output: bool) -> None:
        """Open a 48 kHz mono int16 stream of 20 ms buffers on `device`."""
        index = find_device(device, output=output)
        pa = self._pyaudio_module
        direction = (
            {"output": True, "output_device_index": index}
            if output
            else {"input": True, "input_device_index": index}
        )
        try:
            self._stream = self._pa.open(
                format=pa.paInt16,
                channels=1,
                rate=SAMPLE_RATE,
                frames_per_buffer=FRAME_SAMPLES,
                stream_callback=callback,
                **direction,
            )
        except OSError as exc:
            self.close()
            what = "the audio output" if output else "the microphone"
            raise AudioError(f"cannot open {what}: {exc}") from None

    def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.stop_stream()
            self._stream.close()
            self._stream = None
        self._pa.terminate()

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AudioOutput(_Stream):
    """Plays frames from `produce`, called by the device clock every 20 ms."""

    def __init__(self, produce: FrameProducer, device: str | int | None = None) -> None:
        super().__init__()
        self._produce = produce
        self._open(self._callback, device, output=True)

    def _callback(self, _in: bytes | None, frames: int, _time: Any, _status: int) -> tuple[bytes, int]:
        try:
            pcm = self._produce()
            if len(pcm) != frames:
                pcm = np.resize(pcm, frames).astype(np.int16)
        except Exception:  # never let an exception kill the device thread: play silence
            self.errors += 1
            pcm = np.zeros(frames, dtype=np.int16)
        return pcm.astype(np.int16, copy=False).tobytes(), self._pyaudio_module.paContinue


class AudioInput(_Stream):
    """Hands every captured 20 ms frame to `consume` (on PortAudio's thread)."""

    def __init__(self, consume: FrameConsumer, device: str | int | None = None) -> None:
        super().__init__()
        self._consume = consume
        self._open(self._callback, device, output=False)

    def _callback(self, data: bytes | None, frames: int, _time: Any, _status: int) -> tuple[None, int]:
        if data:
            try:
                self._consume(np.frombuffer(data, dtype=np.int16).copy())
            except Exception:
                self.errors += 1
        return None, self._pyaudio_module.paContinue
