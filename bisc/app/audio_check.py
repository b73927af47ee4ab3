"""Checking audio devices, for any front end (the app's Settings screen uses it): device lists, a live
input level and a short test tone.

PortAudio calls block (listing or opening a device can take a good fraction of a second), so all of
them run in a worker thread; the level is written on PortAudio's thread and read by the UI's clock.
Nothing here raises for a missing or broken device: it becomes an AudioCheckError with a sentence."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bisc.errors import BiscError
from bisc.media.devices import list_audio_devices, list_cameras
from bisc.media.mixer import SILENCE_DBFS, level_dbfs
from bisc.media.opus import FRAME_SAMPLES, SAMPLE_RATE, Pcm
from bisc.media.sources import ToneSource

log = logging.getLogger(__name__)

TONE_HZ = 440.0
TONE_LEVEL = 0.3  # about -13 dBFS: clearly audible, not startling
TONE_SECONDS = 1.0
_RAMP = np.linspace(0.0, 1.0, SAMPLE_RATE // 200)  # 5 ms fades: no click at either end

# PortAudio's initialise/terminate are not thread-safe: every open, close and listing done here
# runs on this one worker thread, in order.
_PORTAUDIO = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bisc-portaudio")


async def in_audio_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_PORTAUDIO, fn)


class AudioCheckError(BiscError):
    """A device that cannot be listed or opened, said in a sentence."""


@dataclass(frozen=True)
class DeviceLists:
    """Device names for the pickers ("System default" is the UI's, not in these lists)."""

    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    cameras: list[str] = field(default_factory=list)
    audio_reason: str | None = None  # why there are no audio devices at all
    camera_reason: str | None = None


def _unique(names: list[str]) -> list[str]:
    # PortAudio's "default" device is the system default again: offering both only confuses.
    seen: dict[str, None] = {}
    for name in names:
        if name.strip().lower() != "default":
            seen.setdefault(name, None)
    return list(seen)


def probe_devices() -> DeviceLists:
    """Blocking: call in a worker thread."""
    devices, audio_reason = list_audio_devices()
    cameras, camera_reason = list_cameras()
    return DeviceLists(
        inputs=_unique([d.name for d in devices if d.max_input_channels > 0]),
        outputs=_unique([d.name for d in devices if d.max_output_channels > 0]),
        cameras=cameras,
        audio_reason=audio_reason,
        camera_reason=camera_reason,
    )


def audio_device_spec(name: str, *, output: bool) -> tuple[int | None, str | None]:
    """The PortAudio index of a saved device name (None: the system default), and a note when the
    saved device is gone. Exact names, because find_device's substring match can pick a sibling.
    Blocking: call in a worker thread."""
    if not name:
        return None, None
    devices, _ = list_audio_devices()
    for d in devices:
        if d.name == name and (d.max_output_channels if output else d.max_input_channels) > 0:
            return d.index, None
    kind = "speaker" if output else "microphone"
    return None, f"The {kind} {name!r} is not connected: using the system default."


def _device(name: str, *, output: bool) -> int | str | None:
    """What to open for a saved name: its exact index; a name no device has exactly goes to
    find_device, whose error then lists the devices there are."""
    index, _ = audio_device_spec(name, output=output)
    return index if index is not None else (name or None)


def _open(kind: str, opener: Any) -> Any:
    try:
        return opener()
    except ImportError:
        raise AudioCheckError("PyAudio is not installed, so bisc cannot use audio devices.") from None
    except (BiscError, OSError) as exc:
        raise AudioCheckError(_sentence(str(exc) or f"cannot open the {kind}")) from None
    except Exception as exc:  # PortAudio's binding raises odd types; never crash Settings for it
        log.exception("opening the %s failed", kind)
        raise AudioCheckError(f"Cannot open the {kind} ({type(exc).__name__}: {exc}).") from None


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


class LevelMeter:
    """The selected microphone's level while open: `take()` gives the loudest 20 ms frame (dBFS)
    since the previous call, or None when no audio arrived in between."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._peak: float | None = None
        self._stream: Any = None
        self._wanted = 0  # bumped by every open/close: a slow open that lost the race closes itself

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    def _on_frame(self, pcm: Pcm) -> None:  # PortAudio's thread
        level = level_dbfs(pcm)
        with self._lock:
            self._peak = level if self._peak is None else max(self._peak, level)

    def take(self) -> float | None:
        with self._lock:
            peak, self._peak = self._peak, None
        return peak

    async def open(self, device: str) -> bool:
        """Start metering `device` ("" = system default): True, or False when close() or another open()
        came first (nothing to do then). AudioCheckError if it cannot be opened."""
        self.close()
        ticket = self._wanted

        def opener() -> Any:
            from bisc.media.audio_io import AudioInput  # PyAudio loads only when a meter runs

            return AudioInput(self._on_frame, _device(device, output=False))

        try:
            stream = await in_audio_thread(lambda: _open("microphone", opener))
        except AudioCheckError:
            if ticket != self._wanted:
                return False  # a stale failure must not hide the newer meter's state
            raise
        if ticket != self._wanted:  # closed (or reopened) while this one was opening
            _PORTAUDIO.submit(stream.close)
            return False
        self._stream = stream
        return True

    def close(self) -> None:
        """Stop metering now; the device is released on the audio thread (closing blocks)."""
        self._wanted += 1
        stream, self._stream = self._stream, None
        with self._lock:
            self._peak = None
        if stream is not None:
            _PORTAUDIO.submit(stream.close)


class TonePlayer:
    """A short sine through the selected output, faded in and out."""

    def __init__(self) -> None:
        self.playing = False

    async def play(self, device: str, seconds: float = TONE_SECONDS) -> None:
        """Play the tone on `device` ("" = system default); AudioCheckError if it cannot be opened."""
        tone = ToneSource(TONE_HZ, level=TONE_LEVEL)
        total = max(1, round(seconds * SAMPLE_RATE / FRAME_SAMPLES))
        sent = 0

        def produce() -> Pcm:  # PortAudio's thread
            nonlocal sent
            frame = tone.read_frame() if sent < total else np.zeros(FRAME_SAMPLES, dtype=np.int16)
            if sent == 0:
                frame[: _RAMP.size] = (frame[: _RAMP.size] * _RAMP).astype(np.int16)
            elif sent == total - 1:
                frame[-_RAMP.size :] = (frame[-_RAMP.size :] * _RAMP[::-1]).astype(np.int16)
            sent += 1
            return frame

        def opener() -> Any:
            from bisc.media.audio_io import AudioOutput

            return AudioOutput(produce, _device(device, output=True))

        self.playing = True
        try:
            stream = await in_audio_thread(lambda: _open("speaker", opener))
            try:
                await asyncio.sleep(seconds + 0.2)  # the device buffer drains the last frames
            finally:
                await in_audio_thread(stream.close)
        finally:
            self.playing = False


def meter_fraction(dbfs: float | None, floor: float = -60.0) -> float:
    """0..1 for a level bar: `floor` dBFS and below are empty, 0 dBFS full."""
    if dbfs is None or dbfs <= floor:
        return 0.0
    return min(1.0, (dbfs - floor) / -floor)


def describe_level(dbfs: float | None) -> str:
    if dbfs is None:
        return "Waiting for sound..."
    if dbfs <= SILENCE_DBFS + 1:
        return "Silence (the microphone sends nothing)"
    return f"{dbfs:.0f} dBFS"
