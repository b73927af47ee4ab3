"""Opus encode/decode for the voice pipeline: 48 kHz mono, 20 ms frames (960 samples), int16 PCM.

Encoding goes through PyAV's ``libopus`` codec context.

Decoding has two backends:

* ``"libopus"`` (preferred): calls libopus itself through :mod:`ctypes`, using the ``libopus`` shared
  library that the PyAV wheel bundles (``av.libs/libopus-*.so*``) or, failing that, the system one.
  PyAV's decoder API offers no way to ask for in-band FEC or for packet loss concealment, so this is the
  only backend with real :meth:`OpusDecoder.decode_fec` (``opus_decode(..., decode_fec=1)``) and real
  :meth:`OpusDecoder.conceal` (``opus_decode(NULL, 0, ...)``, the codec's own PLC).
* ``"pyav"`` (fallback): ``av.CodecContext.create("libopus", "r")``. FFmpeg's libopus wrapper always
  calls ``opus_multistream_decode`` with ``decode_fec=0``, and a zero-length packet means "drain"
  (the context then answers every later packet with EOF), so neither FEC nor PLC is reachable. Here
  ``conceal()`` is a fade-out of the last frame played backwards and ``decode_fec()`` falls back to
  ``conceal()``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from collections import deque
from typing import Literal

import av
import numpy as np
import numpy.typing as npt
from av.audio.codeccontext import AudioCodecContext

from bisc.errors import BiscError

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_BYTES = FRAME_SAMPLES * 2
MAX_PACKET_BYTES = 1275 * 3  # the largest packet Opus can produce (RFC 6716 §3.2.1, code 3 bound)

Pcm = npt.NDArray[np.int16]

# PyAV fallback concealment: gain reached by the end of each concealed frame (relative to its start),
# and the length of the crossfade from concealment back into decoded audio.
_FALLBACK_FADE = 0.5
_FALLBACK_XFADE = 96


class AudioError(BiscError, ValueError):
    """Audio that cannot be processed: wrong shape, type, rate or a bad file."""


class CodecError(AudioError):
    """An Opus packet or PCM frame that cannot be encoded or decoded."""


def to_pcm_frame(pcm: Pcm | bytes | bytearray | memoryview) -> Pcm:
    """Validate one 20 ms mono frame and return it as a contiguous int16 array of 960 samples."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        raw = bytes(pcm)
        if len(raw) != FRAME_BYTES:
            raise CodecError(f"PCM frame must be {FRAME_BYTES} bytes of s16le, got {len(raw)}")
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if not isinstance(pcm, np.ndarray):
        raise CodecError(f"PCM frame must be a numpy array or bytes, got {type(pcm).__name__}")
    if pcm.dtype != np.int16:
        raise CodecError(f"PCM frame must be int16, got {pcm.dtype}")
    flat = pcm.reshape(-1) if pcm.ndim == 2 and 1 in pcm.shape else pcm
    if flat.ndim != 1 or flat.shape[0] != FRAME_SAMPLES:
        raise CodecError(f"PCM frame must hold {FRAME_SAMPLES} mono samples, got shape {pcm.shape}")
    return np.ascontiguousarray(flat)


class OpusEncoder:
    """Encodes 20 ms mono int16 frames at 48 kHz into one Opus packet each (PyAV ``libopus``)."""

    def __init__(
        self,
        bitrate: int = 32000,
        fec: bool = True,
        expected_loss_percent: int = 10,
        dtx: bool = False,
    ) -> None:
        if not 6000 <= bitrate <= 510000:
            raise CodecError(f"bitrate must be within 6000..510000 b/s, got {bitrate}")
        if not 0 <= expected_loss_percent <= 100:
            raise CodecError(f"expected_loss_percent must be within 0..100, got {expected_loss_percent}")
        options = {
            "application": "voip",
            "frame_duration": "20",
            "vbr": "on",
            "fec": "1" if fec else "0",
            "packet_loss": str(expected_loss_percent),
        }
        self.bitrate = bitrate
        self.fec = fec
        self.expected_loss_percent = expected_loss_percent
        self.dtx = dtx
        self._direct: _LibopusEncoderBackend | None = None
        self._pending: deque[bytes] = deque(maxlen=8)
        if dtx:
            # FFmpeg's libopusenc wrapper (as bundled with PyAV 18) has no "dtx" option, so DTX talks
            # to libopus itself, with the same settings as below.
            lib = _libopus()
            if lib is None:
                raise CodecError(
                    "DTX needs libopus (bundled with PyAV, or the system's), which was not found"
                )
            self._direct = _LibopusEncoderBackend(lib, bitrate, fec, expected_loss_percent)
            return
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.options = dict(options)
        try:
            ctx.open()
        except av.FFmpegError as exc:
            raise CodecError(f"cannot open the Opus encoder: {exc}") from exc
        unused = dict(ctx.options)
        if unused:
            raise CodecError(f"the libopus encoder does not support the options {sorted(unused)}")
        self._ctx = ctx
        self._pts = 0

    @property
    def in_dtx(self) -> bool:
        """Whether the last frame was silence sent as DTX (a packet of a byte or two)."""
        return self._direct is not None and self._direct.last_size <= DTX_PACKET_BYTES

    def encode(self, pcm: Pcm | bytes) -> bytes:
        """Encode one 960-sample frame and return its Opus packet (with DTX, 1-2 bytes in silence)."""
        frame_pcm = to_pcm_frame(pcm)
        if self._direct is not None:
            return self._direct.encode(frame_pcm)
        frame = av.AudioFrame.from_ndarray(frame_pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        try:
            packets = self._ctx.encode(frame)
        except av.FFmpegError as exc:
            raise CodecError(f"Opus encoding failed: {exc}") from exc
        for packet in packets:
            self._pending.append(bytes(packet))
        if not self._pending:
            raise CodecError("the Opus encoder produced no packet for a 20 ms frame")
        return self._pending.popleft()


# --- libopus through ctypes -------------------------------------------------------------------------


def _find_libopus() -> ctypes.CDLL | None:
    """Load the libopus bundled with PyAV, else the system one; None when neither is available."""
    candidates: list[str] = []
    av_dir = os.path.dirname(os.path.abspath(av.__file__))
    for libs_dir in (os.path.join(os.path.dirname(av_dir), "av.libs"), os.path.join(av_dir, ".dylibs")):
        candidates.extend(sorted(glob.glob(os.path.join(libs_dir, "libopus*"))))
    system = ctypes.util.find_library("opus")
    if system:
        candidates.append(system)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            lib.opus_decoder_create.restype = ctypes.c_void_p
            lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
            lib.opus_decode.restype = ctypes.c_int
            lib.opus_decode.argtypes = [
                ctypes.c_void_p,
                ctypes.c_char_p,
                ctypes.c_int32,
                ctypes.POINTER(ctypes.c_int16),
                ctypes.c_int,
                ctypes.c_int,
            ]
            lib.opus_decoder_destroy.restype = None
            lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
            lib.opus_strerror.restype = ctypes.c_char_p
            lib.opus_strerror.argtypes = [ctypes.c_int]
            lib.opus_encoder_create.restype = ctypes.c_void_p
            lib.opus_encoder_create.argtypes = [
                ctypes.c_int32,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.POINTER(ctypes.c_int),
            ]
            lib.opus_encode.restype = ctypes.c_int32
            lib.opus_encode.argtypes = [
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_int16),
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int32,
            ]
            lib.opus_encoder_destroy.restype = None
            lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
            lib.opus_encoder_ctl.restype = ctypes.c_int  # variadic: arguments passed as c_int
        except (OSError, AttributeError):
            continue
        return lib
    return None


_LIBOPUS: ctypes.CDLL | None = None
_LIBOPUS_PROBED = False


def libopus_available() -> bool:
    """Whether the direct libopus backend (real FEC and PLC) can be used."""
    return _libopus() is not None


def _libopus() -> ctypes.CDLL | None:
    global _LIBOPUS, _LIBOPUS_PROBED
    if not _LIBOPUS_PROBED:
        _LIBOPUS = _find_libopus()
        _LIBOPUS_PROBED = True
    return _LIBOPUS


class _LibopusBackend:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        err = ctypes.c_int(0)
        handle = lib.opus_decoder_create(SAMPLE_RATE, 1, ctypes.byref(err))
        if err.value != 0 or not handle:
            raise CodecError(f"cannot create the Opus decoder: {self._strerror(err.value)}")
        self._handle: int | None = handle
        self._buf = (ctypes.c_int16 * FRAME_SAMPLES)()

    def _strerror(self, code: int) -> str:
        msg = self._lib.opus_strerror(code)
        return msg.decode("ascii", "replace") if isinstance(msg, bytes) else str(code)

    def run(self, data: bytes | None, fec: bool) -> Pcm:
        if self._handle is None:
            raise CodecError("the Opus decoder is closed")
        length = 0 if data is None else len(data)
        n = self._lib.opus_decode(self._handle, data, length, self._buf, FRAME_SAMPLES, 1 if fec else 0)
        if n < 0:
            raise CodecError(f"invalid Opus packet: {self._strerror(n)}")
        if n != FRAME_SAMPLES:
            raise CodecError(f"Opus packet holds {n} samples, expected one 20 ms frame ({FRAME_SAMPLES})")
        return np.ctypeslib.as_array(self._buf).astype(np.int16, copy=True)

    def close(self) -> None:
        if self._handle is not None:
            self._lib.opus_decoder_destroy(self._handle)
            self._handle = None


# opus_defines.h
_OPUS_APPLICATION_VOIP = 2048
_OPUS_SET_BITRATE = 4002
_OPUS_SET_VBR = 4006
_OPUS_SET_INBAND_FEC = 4012
_OPUS_SET_PACKET_LOSS_PERC = 4014
_OPUS_SET_DTX = 4016
DTX_PACKET_BYTES = 2  # what libopus emits for a frame of silence under DTX (the TOC byte, or two)


class _LibopusEncoderBackend:
    """The encoder through libopus directly, for what FFmpeg's wrapper cannot set (DTX).

    A DTX packet is still sent every 20 ms: it keeps the sequence and the receiver's statistics
    whole, and decoders take it as "keep the comfort noise going"; it saves the payload bytes."""

    def __init__(self, lib: ctypes.CDLL, bitrate: int, fec: bool, loss_percent: int) -> None:
        self._lib = lib
        err = ctypes.c_int(0)
        handle = lib.opus_encoder_create(SAMPLE_RATE, 1, _OPUS_APPLICATION_VOIP, ctypes.byref(err))
        if err.value != 0 or not handle:
            raise CodecError(f"cannot create the libopus encoder: {lib.opus_strerror(err.value).decode()}")
        self._handle = ctypes.c_void_p(handle)
        for request, value in (
            (_OPUS_SET_BITRATE, bitrate),
            (_OPUS_SET_VBR, 1),
            (_OPUS_SET_INBAND_FEC, 1 if fec else 0),
            (_OPUS_SET_PACKET_LOSS_PERC, loss_percent),
            (_OPUS_SET_DTX, 1),
        ):
            code = lib.opus_encoder_ctl(self._handle, ctypes.c_int(request), ctypes.c_int(value))
            if code != 0:
                self.close()
                raise CodecError(f"libopus refused setting {request}: {lib.opus_strerror(code).decode()}")
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
        self.last_size = MAX_PACKET_BYTES

    def encode(self, pcm: Pcm) -> bytes:
        samples = np.ascontiguousarray(pcm, dtype=np.int16)
        ptr = samples.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
        n = self._lib.opus_encode(self._handle, ptr, FRAME_SAMPLES, self._out, MAX_PACKET_BYTES)
        if n < 0:
            raise CodecError(f"Opus encoding failed: {self._lib.opus_strerror(n).decode()}")
        self.last_size = n
        return self._out.raw[:n]

    def close(self) -> None:
        if self._handle:
            self._lib.opus_encoder_destroy(self._handle)
            self._handle = ctypes.c_void_p(None)

    def __del__(self) -> None:
        self.close()


class _PyAVBackend:
    def __init__(self) -> None:
        self._ctx = self._open()

    @staticmethod
    def _open() -> AudioCodecContext:
        ctx = av.CodecContext.create("libopus", "r")
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        return ctx

    def run(self, data: bytes) -> Pcm:
        try:
            frames = self._ctx.decode(av.Packet(data))
        except av.FFmpegError as exc:
            if isinstance(exc, EOFError):  # the context drained; start a fresh one
                self._ctx = self._open()
            raise CodecError(f"invalid Opus packet: {exc}") from exc
        parts: list[Pcm] = []
        for frame in frames:
            arr = frame.to_ndarray()
            if arr.dtype != np.int16:  # float output: convert
                arr = np.clip(np.round(arr.astype(np.float64) * 32767.0), -32768, 32767)
            parts.append(arr.reshape(-1).astype(np.int16))
        pcm: Pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        if pcm.shape[0] != FRAME_SAMPLES:
            raise CodecError(
                f"Opus packet holds {pcm.shape[0]} samples, expected one 20 ms frame ({FRAME_SAMPLES})"
            )
        return pcm


class OpusDecoder:
    """Decodes Opus packets into 960-sample mono int16 frames, with loss concealment and FEC recovery.

    ``backend`` is ``"auto"`` (libopus through ctypes when loadable, else PyAV), ``"libopus"`` or
    ``"pyav"``; :attr:`backend` tells which one is in use and :attr:`has_fec` whether
    :meth:`decode_fec` really decodes in-band FEC.
    """

    def __init__(self, backend: Literal["auto", "libopus", "pyav"] = "auto") -> None:
        self._lib: _LibopusBackend | None = None
        self._av: _PyAVBackend | None = None
        lib = _libopus() if backend in ("auto", "libopus") else None
        if lib is not None:
            self._lib = _LibopusBackend(lib)
            self.backend: Literal["libopus", "pyav"] = "libopus"
        elif backend == "libopus":
            raise CodecError("libopus cannot be loaded for direct decoding")
        else:
            self._av = _PyAVBackend()
            self.backend = "pyav"
        self._last = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._concealing = False

    @property
    def has_fec(self) -> bool:
        """True when :meth:`decode_fec` decodes in-band FEC (libopus backend), False when it conceals."""
        return self._lib is not None

    @staticmethod
    def _check_packet(packet: bytes) -> bytes:
        if not isinstance(packet, bytes | bytearray | memoryview):
            raise CodecError(f"an Opus packet must be bytes, got {type(packet).__name__}")
        data = bytes(packet)
        if not data:
            raise CodecError("empty Opus packet (use conceal() for a lost packet)")
        if len(data) > MAX_PACKET_BYTES:
            raise CodecError(f"Opus packet of {len(data)} bytes exceeds {MAX_PACKET_BYTES}")
        return data

    def decode(self, packet: bytes) -> Pcm:
        """Decode one packet into 960 samples; raises :class:`CodecError` for a malformed packet."""
        data = self._check_packet(packet)
        if self._lib is not None:
            pcm = self._lib.run(data, fec=False)
        else:
            pcm = self._require_av().run(data)
            if self._concealing:
                # Crossfade from the concealment's continuation into the decoded audio (no click).
                tail = self._last[::-1][:_FALLBACK_XFADE].astype(np.float64)
                w = np.linspace(0.0, 1.0, _FALLBACK_XFADE)
                head = pcm[:_FALLBACK_XFADE].astype(np.float64)
                pcm = pcm.copy()
                pcm[:_FALLBACK_XFADE] = np.round(w * head + (1.0 - w) * tail).astype(np.int16)
        self._last = pcm
        self._concealing = False
        return pcm

    def decode_fec(self, next_packet: bytes) -> Pcm:
        """Recover the lost frame *before* ``next_packet`` from ``next_packet``'s in-band FEC.

        Call this when the packet after a gap arrives, then ``decode(next_packet)`` as usual. With the
        libopus backend this is ``opus_decode(next_packet, decode_fec=1)``; when the packet carries no
        FEC data libopus itself falls back to its PLC. The PyAV backend cannot reach FEC at all, so
        there it returns :meth:`conceal` (after checking that ``next_packet`` is non-empty bytes).
        """
        data = self._check_packet(next_packet)
        if self._lib is None:
            return self.conceal()
        pcm = self._lib.run(data, fec=True)
        self._last = pcm
        return pcm

    def conceal(self) -> Pcm:
        """Produce 960 samples for a lost packet without any data.

        libopus backend: the codec's own packet loss concealment (``opus_decode(NULL, 0, ...)``), which
        extrapolates the signal and fades out over successive losses. PyAV backend: the last decoded
        frame played backwards (so it joins the previous frame without a step; successive losses
        ping-pong) with a fade-out to half amplitude per frame; the next decoded frame is crossfaded in.
        """
        if self._lib is not None:
            return self._lib.run(None, fec=False)
        ramp = np.linspace(1.0, _FALLBACK_FADE, FRAME_SAMPLES)
        pcm = np.round(self._last[::-1].astype(np.float64) * ramp).astype(np.int16)
        self._last = pcm
        self._concealing = True
        return pcm

    def _require_av(self) -> _PyAVBackend:
        if self._av is None:  # pragma: no cover - construction guarantees one backend
            raise CodecError("no decoder backend")
        return self._av

    def close(self) -> None:
        """Free the native decoder state (also done on garbage collection)."""
        if self._lib is not None:
            self._lib.close()

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is not None:
            lib.close()
