"""Finding audio devices, cameras and codecs.

The one place that knows how each platform names its devices; everything
else asks these functions. Every probe degrades to an explanation instead of
raising, because `bisc doctor` must work on a machine with nothing attached.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

# Codec names as FFmpeg knows them, by what bisc uses them for.
WANTED_CODECS = {
    "opus": ("libopus", "opus"),
    "vp8": ("libvpx", "vp8"),
    "h264": ("libx264", "h264"),
}


@dataclass(frozen=True)
class AudioDevice:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """PortAudio's backends print probing noise to fd 2; hide it."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def list_audio_devices() -> tuple[list[AudioDevice], str | None]:
    """All PortAudio devices, or ([], reason) when none can be listed."""
    try:
        import pyaudio
    except ImportError:
        return [], "PyAudio is not installed (pip install 'bisc[media]')"
    with quiet_stderr():
        try:
            pa = pyaudio.PyAudio()
        except Exception as exc:  # PortAudio reports failures as bare OSError/IOError
            return [], f"PortAudio failed to start: {exc}"
        try:
            devices = []
            for i in range(pa.get_device_count()):
                info = pa.get_device_info_by_index(i)
                devices.append(
                    AudioDevice(
                        index=i,
                        name=str(info["name"]),
                        max_input_channels=int(info["maxInputChannels"]),
                        max_output_channels=int(info["maxOutputChannels"]),
                        default_sample_rate=float(info["defaultSampleRate"]),
                    )
                )
        finally:
            pa.terminate()
    return devices, None if devices else "PortAudio found no audio devices"


def list_cameras() -> tuple[list[str], str | None]:
    """Camera device names as PyAV's device input expects them."""
    if sys.platform.startswith("linux"):
        cameras = sorted(glob.glob("/dev/video*"))
        return cameras, None if cameras else "no /dev/video* devices"
    # avfoundation and dshow list devices only through FFmpeg's log output;
    # the video issue adds that probe behind this same function.
    return [], f"camera listing is not implemented on {sys.platform} yet"


def probe_codecs() -> tuple[dict[str, dict[str, Any]], str | None]:
    """Which of the codecs bisc uses PyAV can encode and decode."""
    try:
        import av
    except ImportError:
        return {}, "PyAV is not installed (pip install 'bisc[media]')"
    found: dict[str, dict[str, Any]] = {}
    for purpose, names in WANTED_CODECS.items():
        entry: dict[str, Any] = {"encoder": None, "decoder": None}
        for name in names:
            if entry["encoder"] is None:
                with contextlib.suppress(Exception):
                    av.Codec(name, "w")
                    entry["encoder"] = name
            if entry["decoder"] is None:
                with contextlib.suppress(Exception):
                    av.Codec(name, "r")
                    entry["decoder"] = name
        found[purpose] = entry
    return found, None


def devices_report() -> dict[str, Any]:
    audio, audio_error = list_audio_devices()
    cameras, camera_error = list_cameras()
    codecs, codec_error = probe_codecs()
    try:
        import av

        av_version: str | None = av.__version__
    except ImportError:
        av_version = None
    return {
        "audio_devices": [asdict(d) for d in audio],
        "audio_error": audio_error,
        "cameras": cameras,
        "camera_error": camera_error,
        "pyav": av_version,
        "codecs": codecs,
        "codec_error": codec_error,
    }
