"""Where a call's audio comes from and goes to, by the names users type.

Capture: "mic" (a PortAudio input device), "tone" or "tone:FREQ", a WAV file
path, "none", or any AudioSource object. Playout: "speaker" (a PortAudio
output device), a WAV file path, or "none".

Real devices pace themselves. Synthetic sources and file or null sinks have
no device, so a FrameClock thread stands in for one: it ticks every 20 ms on
an absolute schedule (no drift), the way a device callback would, so the rest
of the pipeline cannot tell the difference.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from bisc.media.audio_io import AudioInput, AudioOutput
from bisc.media.opus import AudioError, Pcm
from bisc.media.sinks import NullSink, WavSink
from bisc.media.sources import AudioSource, SilenceSource, ToneSource, WavSource

log = logging.getLogger(__name__)

PERIOD = 0.02
MAX_CATCH_UP = 5  # ticks run back to back after a stall; beyond that the clock skips ahead

FrameSink = Callable[[Pcm, float], None]  # a captured frame and its capture time
FrameSource = Callable[[float], Pcm]  # the next frame to play, asked at a playout time


class AudioEndpoint(Protocol):
    description: str

    def close(self) -> None: ...


class FrameClock:
    """Calls `tick(now)` every 20 ms on its own thread, like a device callback."""

    def __init__(self, tick: Callable[[float], None], name: str) -> None:
        self._tick = tick
        self._stop = threading.Event()
        self.ticks = 0
        self.skipped = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now < next_at:
                if self._stop.wait(next_at - now):
                    return
                now = time.monotonic()
            behind = int((now - next_at) / PERIOD)
            if behind > MAX_CATCH_UP:  # the machine stalled: do not burst out a second of audio
                self.skipped += behind
                next_at += behind * PERIOD
            try:
                self._tick(now)
            except Exception:  # like a device thread: a failing tick must not stop the clock
                self.errors += 1
                if self.errors <= 3:
                    log.exception("audio clock tick failed")
            self.ticks += 1
            next_at += PERIOD

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)


class _ClockedSource:
    def __init__(self, source: AudioSource, consume: FrameSink, description: str) -> None:
        self.source = source
        self.description = description
        self._consume = consume
        self._clock = FrameClock(self._tick, f"bisc-capture-{description}")

    def _tick(self, now: float) -> None:
        self._consume(self.source.read_frame(), now)

    def close(self) -> None:
        self._clock.close()
        close = getattr(self.source, "close", None)
        if callable(close):
            close()


class _DeviceCapture:
    def __init__(self, consume: FrameSink, device: str | int | None) -> None:
        self.description = f"microphone {device}" if device not in (None, "") else "default microphone"
        self._input = AudioInput(lambda pcm: consume(pcm, time.monotonic()), device)

    def close(self) -> None:
        self._input.close()


class _ClockedSink:
    def __init__(self, sink: WavSink | NullSink, produce: FrameSource, description: str) -> None:
        self.sink = sink
        self.description = description
        self._produce = produce
        self._lock = threading.Lock()
        self._closed = False
        self._clock = FrameClock(self._tick, f"bisc-playout-{description}")

    def _tick(self, now: float) -> None:
        pcm = self._produce(now)
        with self._lock:
            if not self._closed:
                self.sink.write_frame(pcm)

    def close(self) -> None:
        self._clock.close()
        with self._lock:
            self._closed = True
            self.sink.close()


class _DevicePlayout:
    def __init__(self, produce: FrameSource, device: str | int | None) -> None:
        self.description = f"speaker {device}" if device not in (None, "") else "default speaker"
        self._output = AudioOutput(lambda: produce(time.monotonic()), device)

    def close(self) -> None:
        self._output.close()


def _is_wav_path(spec: str) -> bool:
    return spec.lower().endswith(".wav") or os.sep in spec or "/" in spec


def open_capture(
    spec: str | AudioSource, consume: FrameSink, device: str | int | None = None
) -> AudioEndpoint | None:
    """Start delivering 20 ms frames to `consume`; None for "none". AudioError if it cannot."""
    if not isinstance(spec, str):
        return _ClockedSource(spec, consume, type(spec).__name__)
    name = spec.strip()
    if name in ("", "none"):
        return None
    if name == "mic":
        return _DeviceCapture(consume, device)
    if name == "silence":  # a live stream with nothing in it: a call set up before the audio starts
        return _ClockedSource(SilenceSource(), consume, "silence")
    if name == "tone" or name.startswith("tone:"):
        freq = 440.0
        if name.startswith("tone:"):
            try:
                freq = float(name[5:])
            except ValueError:
                raise AudioError(
                    f"bad tone frequency in {spec!r} (expected tone:HZ, e.g. tone:440)"
                ) from None
        return _ClockedSource(ToneSource(freq), consume, f"tone {freq:g} Hz")
    if _is_wav_path(name):
        if not Path(name).expanduser().is_file():
            raise AudioError(f"no such WAV file: {name}")
        return _ClockedSource(WavSource(Path(name).expanduser()), consume, f"file {name}")
    raise AudioError(f"unknown audio input {spec!r}: use mic, tone, tone:HZ, silence, FILE.wav or none")


def open_playout(spec: str, produce: FrameSource, device: str | int | None = None) -> AudioEndpoint:
    """Start pulling 20 ms frames from `produce` at the pace of the output. AudioError if it cannot."""
    name = spec.strip()
    if name in ("", "none"):
        return _ClockedSink(NullSink(), produce, "none")
    if name == "speaker":
        return _DevicePlayout(produce, device)
    if _is_wav_path(name):
        path = Path(name).expanduser()
        if not path.parent.is_dir():
            raise AudioError(f"cannot write {name}: no directory {path.parent}")
        return _ClockedSink(WavSink(path), produce, f"file {name}")
    raise AudioError(f"unknown audio output {spec!r}: use speaker, FILE.wav or none")
