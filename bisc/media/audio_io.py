"""Microphone and speaker streams through PortAudio (PyAudio).

One interface for every platform: PortAudio picks WASAPI/CoreAudio/ALSA or
PulseAudio underneath. Streams run in callback mode, so playout is paced by
the device's clock: the output callback asks for the next 20 ms frame when
the device needs it, and the input callback hands over each captured frame.
Both callbacks run on PortAudio's thread and must only move bytes.

A device that will not run at 48 kHz is opened at its own default rate
instead; the callbacks then resample (libswresample, cheap per 20 ms block)
so the rest of the pipeline still sees 48 kHz, 960-sample frames.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from bisc.media.devices import list_audio_devices, quiet_stderr
from bisc.media.opus import FRAME_SAMPLES, SAMPLE_RATE, AudioError, Pcm
from bisc.media.resample import MAX_RATE, MIN_RATE, FrameRechunker, Resampler, check_rate

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


# How many device-rate blocks of audio may wait between the resampler and the device before the oldest
# is dropped: enough to absorb the resampler's uneven output, small enough to add no audible latency.
_CARRY_FRAMES = 4
# Calls to `produce` per output callback before giving up and padding with silence (a producer that
# keeps returning nothing must not spin the device thread).
_MAX_PRODUCE_CALLS = 8


def _block_samples(rate: int) -> int:
    """Samples in 20 ms at `rate` (the device buffer size)."""
    return max(1, round(rate * FRAME_SAMPLES / SAMPLE_RATE))


class _Stream:
    def __init__(self) -> None:
        import pyaudio  # optional dependency: bisc[media]

        self._pyaudio_module = pyaudio
        with quiet_stderr():
            self._pa = pyaudio.PyAudio()
        self._stream: Any = None
        self.underruns = 0
        self.errors = 0
        self.device_rate = SAMPLE_RATE  # the rate the device runs at; audio is converted to/from 48 kHz

    def _prepare(self, rate: int) -> None:
        """Set up conversion for a device running at `rate`; called before the stream can call back."""
        raise NotImplementedError

    def _default_rate(self, index: int | None, *, output: bool) -> int | None:
        """The device's own default sample rate, if PortAudio knows it."""
        try:
            if index is not None:
                info = self._pa.get_device_info_by_index(index)
            elif output:
                info = self._pa.get_default_output_device_info()
            else:
                info = self._pa.get_default_input_device_info()
            return round(float(info["defaultSampleRate"]))
        except (OSError, KeyError, TypeError, ValueError):
            return None

    def _open_at(self, callback: Any, index: int | None, rate: int, *, output: bool) -> None:
        pa = self._pyaudio_module
        direction = (
            {"output": True, "output_device_index": index}
            if output
            else {"input": True, "input_device_index": index}
        )
        self.device_rate = rate
        self._prepare(rate)
        self._stream = self._pa.open(
            format=pa.paInt16,
            channels=1,
            rate=rate,
            frames_per_buffer=_block_samples(rate),
            stream_callback=callback,
            **direction,
        )

    def _open(self, callback: Any, device: str | int | None, *, output: bool, rate: int | None) -> None:
        """Open a mono int16 stream of 20 ms buffers on `device`.

        At `rate` if given; otherwise at 48 kHz, or, if the device refuses that, at its default rate
        (the subclass converts between that and the pipeline's 48 kHz)."""
        what = "the audio output" if output else "the microphone"
        try:
            forced = None if rate is None else check_rate(rate, "device sample rate")
            index = find_device(device, output=output)
        except AudioError:
            self.close()
            raise
        try:
            self._open_at(callback, index, forced or SAMPLE_RATE, output=output)
            return
        except OSError as exc:
            first = exc
        fallback = None if forced else self._default_rate(index, output=output)
        if fallback is None or fallback == SAMPLE_RATE or not MIN_RATE <= fallback <= MAX_RATE:
            self.close()
            raise AudioError(f"cannot open {what}: {first}") from None
        try:
            self._open_at(callback, index, fallback, output=output)
        except OSError as exc:
            self.close()
            raise AudioError(
                f"cannot open {what} at {SAMPLE_RATE} Hz ({first}) or {fallback} Hz ({exc})"
            ) from None

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
    """Plays frames from `produce`, called as the device clock needs them (every 20 ms).

    `produce` always supplies 48 kHz frames; on a device running at another rate they are resampled,
    and the callback fills exactly the block the device asks for from a small carry-over buffer."""

    def __init__(
        self, produce: FrameProducer, device: str | int | None = None, *, rate: int | None = None
    ) -> None:
        super().__init__()
        self._produce = produce
        self._resampler = Resampler(SAMPLE_RATE, SAMPLE_RATE)
        self._carry = FrameRechunker(FRAME_SAMPLES, _CARRY_FRAMES)
        self._open(self._callback, device, output=True, rate=rate)

    def _prepare(self, rate: int) -> None:
        self._resampler = Resampler(SAMPLE_RATE, rate)
        self._carry = FrameRechunker(_block_samples(rate), _CARRY_FRAMES)

    def _next_block(self, frames: int) -> Pcm:
        for _ in range(_MAX_PRODUCE_CALLS):
            block = self._carry.pop(frames)
            if block is not None:
                return block
            pcm = np.asarray(self._produce()).astype(np.int16, copy=False).reshape(-1)
            self._carry.push(self._resampler.process(pcm))
        # The producer gave too little: play what there is, then silence.
        self.underruns += 1
        out = np.zeros(frames, dtype=np.int16)
        tail = self._carry.drain()[:frames]
        out[: tail.shape[0]] = tail
        return out

    def _callback(self, _in: bytes | None, frames: int, _time: Any, _status: int) -> tuple[bytes, int]:
        try:
            pcm = self._next_block(frames)
        except Exception:  # never let an exception kill the device thread: play silence
            self.errors += 1
            pcm = np.zeros(frames, dtype=np.int16)
        return pcm.tobytes(), self._pyaudio_module.paContinue


class AudioInput(_Stream):
    """Hands every captured 20 ms frame to `consume` (on PortAudio's thread).

    Frames are always 48 kHz, 960 samples; on a device running at another rate the capture is
    resampled and re-cut into exact frames first."""

    def __init__(
        self, consume: FrameConsumer, device: str | int | None = None, *, rate: int | None = None
    ) -> None:
        super().__init__()
        self._consume = consume
        self._resampler = Resampler(SAMPLE_RATE, SAMPLE_RATE)
        self._frames = FrameRechunker(FRAME_SAMPLES)
        self._open(self._callback, device, output=False, rate=rate)

    def _prepare(self, rate: int) -> None:
        self._resampler = Resampler(rate, SAMPLE_RATE)
        self._frames = FrameRechunker(FRAME_SAMPLES)

    def _callback(self, data: bytes | None, frames: int, _time: Any, _status: int) -> tuple[None, int]:
        if data:
            try:
                self._frames.push(self._resampler.process(np.frombuffer(data, dtype=np.int16)))
                for frame in self._frames.frames():
                    self._consume(frame)
            except Exception:
                self.errors += 1
        return None, self._pyaudio_module.paContinue
