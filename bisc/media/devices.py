"""Finding audio devices, cameras and codecs.

The one place that knows how each platform names its devices; everything
else asks these functions. Every probe degrades to an explanation instead of
raising, because `bisc doctor` must work on a machine with nothing attached.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
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


def list_cameras(platform: str | None = None) -> tuple[list[str], str | None]:
    """Camera device names as PyAV's device input expects them (`--video camera:NAME`)."""
    p = platform or sys.platform
    if p.startswith("linux"):
        cameras = sorted(glob.glob("/dev/video*"))
        return cameras, None if cameras else "no /dev/video* devices"
    fmt = {"darwin": "avfoundation", "win32": "dshow", "cygwin": "dshow"}.get(p)
    if fmt is None:
        return [], f"no camera support on {p}"
    try:
        import av
        import av.logging
    except ImportError:
        return [], "PyAV is not installed (pip install 'bisc[media]')"
    if not any(fmt in name.split(",") for name in av.formats_available):
        return [], f"this PyAV build has no {fmt} input device support"
    # avfoundation and dshow list their devices only in FFmpeg's log, while failing to open "nothing".
    with av.logging.Capture() as logs, contextlib.suppress(Exception):
        av.open("video=dummy" if fmt == "dshow" else "", format=fmt, options={"list_devices": "true"})
    cameras = parse_device_list(fmt, [str(message) for _level, _name, message in logs])
    return cameras, None if cameras else f"{fmt} lists no cameras"


_AVF_ENTRY = re.compile(r"^\[(\d+)\] (.+)$")
_DSHOW_ENTRY = re.compile(r'^\s*"(.+)"(?: \((video|audio|none)\))?\s*$')


def parse_device_list(fmt: str, lines: list[str]) -> list[str]:
    """Camera names from FFmpeg's `list_devices` log lines (avfoundation: "[0] FaceTime HD Camera"
    under "AVFoundation video devices:"; dshow: '"Integrated Camera" (video)', or the names under
    "DirectShow video devices" in older FFmpeg). dshow names come back as "video=NAME", the form its
    input takes; screens that avfoundation lists as cameras are left out."""
    cameras: list[str] = []
    section = ""
    for raw in lines:
        line = raw.strip()
        lower = line.lower()
        if "video devices" in lower:
            section = "video"
            continue
        if "audio devices" in lower:
            section = "audio"
            continue
        if fmt == "avfoundation":
            m = _AVF_ENTRY.match(line)
            if m and section == "video" and not m.group(2).startswith("Capture screen"):
                cameras.append(m.group(2))
        elif fmt == "dshow":
            m = _DSHOW_ENTRY.match(line)
            if m and (m.group(2) == "video" or (m.group(2) is None and section == "video")):
                cameras.append(f"video={m.group(1)}")
    return cameras


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
    try:
        from bisc.media.opus import libopus_available

        opus_fec = libopus_available()
    except ImportError:
        opus_fec = False
    return {
        "opus_fec": opus_fec,  # libopus itself: real FEC and loss concealment, not a fade
        "audio_devices": [asdict(d) for d in audio],
        "audio_error": audio_error,
        "cameras": cameras,
        "camera_error": camera_error,
        "pyav": av_version,
        "codecs": codecs,
        "codec_error": codec_error,
    }
