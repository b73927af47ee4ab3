"""Voice pipeline groundwork: Opus encode/decode with FEC/PLC, sources, sinks, mixer, speech detection."""

from __future__ import annotations

import random
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from bisc.errors import BiscError
from bisc.media.audio_endpoints import open_capture
from bisc.media.mixer import SpeakingDetector, level_dbfs, mix
from bisc.media.opus import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    CodecError,
    OpusDecoder,
    OpusEncoder,
    Pcm,
    libopus_available,
)
from bisc.media.sinks import NullSink, WavSink
from bisc.media.sources import SilenceSource, ToneSource, WavSource

BACKENDS = [
    pytest.param(
        "libopus",
        marks=pytest.mark.skipif(not libopus_available(), reason="libopus not loadable through ctypes"),
    ),
    "pyav",
]
# Frames skipped while the codec settles (encoder lookahead, decoder start-up).
STARTUP = 5


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))


def spectrum(pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = pcm.astype(np.float64) * np.hanning(pcm.shape[0])
    mag = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(pcm.shape[0], 1.0 / SAMPLE_RATE)
    return freqs, mag


def peak_hz(pcm: np.ndarray) -> float:
    freqs, mag = spectrum(pcm)
    return float(freqs[int(np.argmax(mag))])


def has_peak(pcm: np.ndarray, hz: float) -> bool:
    """A clear local spectral peak near ``hz`` (at least a tenth of the strongest)."""
    freqs, mag = spectrum(pcm)
    band = (freqs > hz - 5) & (freqs < hz + 5)
    return bool(mag[band].max() > 0.1 * mag.max())


def tone_frames(freq: float, count: int, level: float = 0.3) -> list[np.ndarray]:
    src = ToneSource(freq, level)
    return [src.read_frame() for _ in range(count)]


def encode_all(frames: list[np.ndarray], **kwargs: int | bool) -> list[bytes]:
    enc = OpusEncoder(**kwargs)  # type: ignore[arg-type]
    return [enc.encode(f) for f in frames]


# --- sources ----------------------------------------------------------------------------------------


def test_tone_source_is_phase_continuous_and_deterministic() -> None:
    a = np.concatenate(tone_frames(440.0, 10))
    n = np.arange(10 * FRAME_SAMPLES)
    expected = np.round(0.3 * 32767 * np.sin(2 * np.pi * 440.0 * n / SAMPLE_RATE)).astype(np.int16)
    assert np.array_equal(a, expected)
    assert np.array_equal(a, np.concatenate(tone_frames(440.0, 10)))
    assert abs(peak_hz(a) - 440.0) <= 5


def test_silence_source() -> None:
    frame = SilenceSource().read_frame()
    assert frame.dtype == np.int16 and frame.shape == (FRAME_SAMPLES,) and not frame.any()


def test_tone_source_rejects_bad_parameters() -> None:
    with pytest.raises(BiscError):
        ToneSource(30000.0)
    with pytest.raises(BiscError):
        ToneSource(440.0, level=2.0)


# --- Opus ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_tone_survives_opus_round_trip(backend: str) -> None:
    frames = tone_frames(440.0, 50)
    packets = encode_all(frames)
    assert all(0 < len(p) < 400 for p in packets)
    dec = OpusDecoder(backend)  # type: ignore[arg-type]
    assert dec.backend == backend
    out = [dec.decode(p) for p in packets]
    assert all(o.dtype == np.int16 and o.shape == (FRAME_SAMPLES,) for o in out)
    decoded = np.concatenate(out[STARTUP:])
    source = np.concatenate(frames[STARTUP:])
    assert abs(peak_hz(decoded) - 440.0) <= 5
    assert abs(level_dbfs(decoded) - level_dbfs(source)) <= 2.0
    dec.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_lost_packet_recovered_without_gap(backend: str) -> None:
    frames = tone_frames(440.0, 50)
    packets = encode_all(frames, fec=True, expected_loss_percent=20)
    dec = OpusDecoder(backend)  # type: ignore[arg-type]
    lost = 30
    before = [dec.decode(p) for p in packets[:lost]]
    recovered = dec.decode_fec(packets[lost + 1])
    after = dec.decode(packets[lost + 1])
    assert recovered.shape == (FRAME_SAMPLES,) and recovered.dtype == np.int16
    for neighbour in (before[-1], after):
        assert abs(20 * np.log10(rms(recovered) / rms(neighbour))) <= 6.0
    assert dec.has_fec == (backend == "libopus")
    # No click at the joins: the step across each boundary is no bigger than a tone's own steps.
    max_step = float(np.max(np.abs(np.diff(before[-1].astype(np.int32)))))
    for a, b in ((before[-1], recovered), (recovered, after)):
        assert abs(int(b[0]) - int(a[-1])) <= 3 * max_step


@pytest.mark.parametrize("backend", BACKENDS)
def test_conceal_is_finite_and_bounded(backend: str) -> None:
    packets = encode_all(tone_frames(440.0, 20))
    dec = OpusDecoder(backend)  # type: ignore[arg-type]
    last = [dec.decode(p) for p in packets][-1]
    levels = []
    for _ in range(10):
        c = dec.conceal()
        assert c.dtype == np.int16 and c.shape == (FRAME_SAMPLES,)
        assert np.all(np.isfinite(c.astype(np.float64)))
        assert rms(c) <= 2 * rms(last)
        levels.append(rms(c))
    assert levels[-1] < levels[0]  # fades out over a long loss
    # Concealment right after start-up (nothing decoded yet) is bounded too.
    fresh = OpusDecoder(backend)  # type: ignore[arg-type]
    assert fresh.conceal().shape == (FRAME_SAMPLES,)
    # Decoding resumes normally after concealment.
    assert dec.decode(packets[5]).shape == (FRAME_SAMPLES,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_malformed_packets_raise_codec_error_or_decode(backend: str) -> None:
    packets = encode_all(tone_frames(440.0, 20))
    dec = OpusDecoder(backend)  # type: ignore[arg-type]
    for p in packets[:10]:
        dec.decode(p)
    rng = random.Random(1234)
    junk: list[bytes] = [b"", b"\x00", b"\xff", b"\xff" * 3, bytes(5000)]
    junk += [rng.randbytes(rng.randrange(1, 200)) for _ in range(200)]
    errors = 0
    for bad in junk:
        try:
            out = dec.decode(bad)
        except CodecError:
            errors += 1
            out = dec.conceal()
        assert out.dtype == np.int16 and out.shape == (FRAME_SAMPLES,)
        with pytest.raises(CodecError):
            dec.decode_fec(b"")
    assert errors > 0
    with pytest.raises(CodecError):
        dec.decode("not bytes")  # type: ignore[arg-type]
    # The decoder still works afterwards.
    assert dec.decode(packets[10]).shape == (FRAME_SAMPLES,)


def test_encoder_rejects_bad_input() -> None:
    enc = OpusEncoder()
    with pytest.raises(CodecError):
        enc.encode(np.zeros(480, dtype=np.int16))
    with pytest.raises(CodecError):
        enc.encode(np.zeros(FRAME_SAMPLES, dtype=np.float32))
    with pytest.raises(CodecError):
        enc.encode(b"\x00" * 10)
    assert enc.encode(b"\x00" * (2 * FRAME_SAMPLES))  # bytes of s16le are accepted
    with pytest.raises(CodecError):
        OpusEncoder(bitrate=100)
    with pytest.raises(CodecError):
        OpusEncoder(expected_loss_percent=101)


@pytest.mark.skipif(not libopus_available(), reason="DTX talks to libopus directly")
def test_dtx_sends_silence_as_tiny_packets_and_speech_as_usual() -> None:
    enc, plain, dec = OpusEncoder(bitrate=64000, dtx=True), OpusEncoder(bitrate=64000), OpusDecoder()
    tone = tone_frames(440.0, 25)
    sizes = [len(enc.encode(f)) for f in tone]
    assert min(sizes) > 40 and not enc.in_dtx  # speech is coded as without DTX
    quiet = [enc.encode(np.zeros(FRAME_SAMPLES, dtype=np.int16)) for _ in range(40)]
    # After a short hangover: tiny packets, with a comfort-noise update now and then.
    assert enc.in_dtx and sum(len(p) <= 2 for p in quiet[-20:]) >= 16, [len(p) for p in quiet]
    assert sum(len(p) for p in quiet[-20:]) < 200
    assert all(len(plain.encode(np.zeros(FRAME_SAMPLES, dtype=np.int16))) > 20 for _ in range(40))
    played = [dec.decode(p) for p in quiet[-20:]]
    assert rms(np.concatenate(played)) < 50  # comfort noise at most, never a burst
    back = [dec.decode(enc.encode(f)) for f in tone_frames(440.0, 10)]
    assert abs(peak_hz(np.concatenate(back[-5:])) - 440.0) < 5  # and speech resumes at once


# --- mixer --------------------------------------------------------------------------------------------


def test_mix_keeps_both_tones() -> None:
    a = np.concatenate(tone_frames(440.0, 10))
    b = np.concatenate(tone_frames(660.0, 10))
    mixed = mix([a, b])
    assert has_peak(mixed, 440.0) and has_peak(mixed, 660.0)
    # Quiet mixes are a plain sum; a zero gain removes a peer.
    assert np.array_equal(mix([a, b], gains=[1.0, 0.0]), a)
    half = mix([a], gains=[0.5])
    assert abs(level_dbfs(half) - (level_dbfs(a) - 6.02)) < 0.1


def test_mix_never_wraps() -> None:
    loud = np.concatenate(tone_frames(440.0, 5, level=1.0))
    other = np.concatenate(tone_frames(660.0, 5, level=1.0))
    extremes = np.array([32767, -32768, 32767, -32768] * (loud.shape[0] // 4), dtype=np.int16)
    for inputs in ([loud, loud], [loud, other, loud], [extremes, extremes, extremes]):
        mixed = mix(inputs, gains=[2.0] * len(inputs))
        total = np.sum([x.astype(np.int64) for x in inputs], axis=0)
        assert mixed.dtype == np.int16
        nz = total != 0
        assert np.all(np.sign(mixed[nz]) == np.sign(total[nz]))
        assert np.all(np.abs(mixed.astype(np.int32)) <= 32767)
        # Monotonic: louder input never gives a quieter output sample.
        order = np.argsort(total)
        assert np.all(np.diff(mixed[order].astype(np.int32)) >= 0)
    assert int(mix([extremes, extremes])[0]) > 30000


def test_mix_rejects_bad_input() -> None:
    a = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    with pytest.raises(BiscError):
        mix([])
    with pytest.raises(BiscError):
        mix([a, np.zeros(10, dtype=np.int16)])
    with pytest.raises(BiscError):
        mix([a], gains=[1.0, 1.0])
    with pytest.raises(BiscError):
        mix([a], gains=[float("nan")])


def test_level_and_speaking_detector() -> None:
    tone = ToneSource(440.0, 0.3).read_frame()
    assert abs(level_dbfs(tone) - 20 * np.log10(0.3 * 32767 / np.sqrt(2) / 32768)) < 0.1
    assert level_dbfs(SilenceSource().read_frame()) == -120.0
    det = SpeakingDetector(threshold_dbfs=-45, hang_frames=3)
    silence = SilenceSource()
    assert det.update(silence.read_frame()) is False
    assert det.update(tone) is True
    assert [det.update(silence.read_frame()) for _ in range(5)] == [True, True, True, False, False]
    assert det.update(tone) is True
    quiet_noise = np.random.default_rng(7).integers(-20, 20, FRAME_SAMPLES).astype(np.int16)
    det2 = SpeakingDetector(hang_frames=0)
    assert det2.update(quiet_noise) is False


# --- WAV sinks and sources ------------------------------------------------------------------------------


def test_wav_sink_source_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    frames = tone_frames(440.0, 25)
    with WavSink(path) as sink:
        for f in frames:
            sink.write_frame(f)
        sink.write_frame(frames[0].tobytes())
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (
            48000,
            1,
            2,
            26 * 960,
        )
    with WavSource(path) as src:
        back = [src.read_frame() for _ in range(26)]
        assert all(np.array_equal(a, b) for a, b in zip([*frames, frames[0]], back, strict=True))
        assert not src.read_frame().any()  # ends with silence
        assert src.finished
    with WavSource(path, loop=True) as looping:
        again = [looping.read_frame() for _ in range(27)]
        assert np.array_equal(again[26], frames[0])
    null = NullSink()
    null.write_frame(frames[0])
    assert null.frames_written == 1


def test_wav_source_resamples_8khz_stereo(tmp_path: Path) -> None:
    path = tmp_path / "stereo8k.wav"
    rate = 8000
    n = np.arange(rate)  # one second
    left = 0.3 * 32767 * np.sin(2 * np.pi * 440.0 * n / rate)
    right = 0.3 * 32767 * np.sin(2 * np.pi * 440.0 * n / rate + 0.3)
    inter = np.round(np.stack([left, right], axis=1)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(inter.tobytes())
    with WavSource(path) as src:
        assert (src.sample_rate, src.channels) == (8000, 2)
        frames = [src.read_frame() for _ in range(50)]
    assert all(f.shape == (FRAME_SAMPLES,) for f in frames)
    body = np.concatenate(frames[2:48])
    assert abs(peak_hz(body) - 440.0) <= 5
    expected = 20 * np.log10(0.3 * 32767 * np.cos(0.15) / np.sqrt(2) / 32768)
    assert abs(level_dbfs(body) - expected) < 1.0


def test_wav_source_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav file at all")
    with pytest.raises(BiscError):
        WavSource(bad)
    with pytest.raises(BiscError):
        WavSource(tmp_path / "missing.wav")


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_source_reads_every_pcm_width(tmp_path: Path, width: int) -> None:
    path = tmp_path / f"w{width}.wav"
    values = np.array([-32768, -256, 0, 256, 32512] * 200, dtype=np.int64)
    if width == 1:
        raw = ((values >> 8) + 128).astype(np.uint8).tobytes()
    else:
        scaled = values << (8 * (width - 2))
        raw = b"".join(int(v).to_bytes(width, "little", signed=True) for v in scaled)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(raw)
    with WavSource(path) as src:
        frame = src.read_frame()
    assert np.array_equal(frame, values[:FRAME_SAMPLES].astype(np.int16))


def test_silence_input_sends_paced_frames_of_nothing() -> None:
    frames: list[Pcm] = []
    done = threading.Event()

    def consume(pcm: Pcm, capture_time: float) -> None:
        frames.append(pcm)
        if len(frames) >= 5:
            done.set()

    endpoint = open_capture("silence", consume)
    assert endpoint is not None and endpoint.description == "silence"
    try:
        assert done.wait(2.0)
    finally:
        endpoint.close()
    assert all(f.shape == (FRAME_SAMPLES,) and not f.any() for f in frames)
    with pytest.raises(AudioError, match="silence"):
        open_capture("noise", consume)
