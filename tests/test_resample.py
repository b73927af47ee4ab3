"""Sample-rate conversion: the streaming resampler, the frame re-chunker, and audio devices that do not
run at 48 kHz (a fake PortAudio that refuses 48 kHz, and the real PulseAudio path forced to 44.1 kHz)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import wave
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from bisc.media.opus import FRAME_SAMPLES, SAMPLE_RATE, AudioError, Pcm
from bisc.media.resample import FrameRechunker, Resampler
from bisc.media.sources import ToneSource, WavSource

NEED_PULSE = os.environ.get("BISC_REQUIRE_AUDIO", "") not in ("", "0")
AMP = 10000.0


def tone(rate: int, n: int, freq: float = 1000.0, start: int = 0) -> Pcm:
    t = np.arange(start, start + n, dtype=np.float64)
    out: Pcm = np.round(AMP * np.sin(2 * np.pi * freq * t / rate)).astype(np.int16)
    return out


def odd_chunks(pcm: Pcm, seed: int = 1) -> list[Pcm]:
    """`pcm` cut at random places, including single samples and empty chunks."""
    rng = np.random.default_rng(seed)
    chunks, i = [], 0
    while i < len(pcm):
        k = int(rng.choice([0, 1, 7, int(rng.integers(2, 1500))]))
        chunks.append(pcm[i : i + k])
        i += k
    return chunks


def peak_hz(pcm: npt.NDArray[Any], rate: int) -> float:
    x = pcm.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def ideal_max_step(rate: int, freq: float = 1000.0) -> float:
    """Largest sample-to-sample change of an ideal sine of amplitude AMP at `rate`."""
    return float(2 * AMP * np.sin(np.pi * freq / rate))


@pytest.mark.parametrize(("in_rate", "out_rate"), [(44100, 48000), (48000, 16000), (48000, 44100)])
def test_tone_fed_in_odd_chunks_converts_cleanly(in_rate: int, out_rate: int) -> None:
    pcm = tone(in_rate, 2 * in_rate)
    r = Resampler(in_rate, out_rate)
    parts = [r.process(chunk) for chunk in odd_chunks(pcm)]
    streamed = sum(len(p) for p in parts)
    # Only the filter delay is held back until the flush.
    assert 2 * out_rate - 64 <= streamed <= 2 * out_rate
    out = np.concatenate([*parts, r.flush()])
    assert out.dtype == np.int16 and out.ndim == 1
    assert abs(len(out) - 2 * out_rate) <= 4

    assert abs(peak_hz(out, out_rate) - 1000.0) <= 5
    # No clicks where the chunks met: the steepest step is that of a clean sine (skip the filter's
    # start-up and the flushed tail).
    steady = out[64:-64].astype(np.float64)
    assert np.abs(np.diff(steady)).max() <= ideal_max_step(out_rate) * 1.02 + 2
    assert np.abs(steady).max() <= AMP * 1.02
    # And chunking changed nothing at all: the same as converting the whole signal in one call.
    whole = Resampler(in_rate, out_rate)
    assert np.array_equal(out, np.concatenate([whole.process(pcm), whole.flush()]))


def test_equal_rates_pass_through_untouched() -> None:
    r = Resampler(48000, 48000)
    pcm = tone(48000, 1234)
    out = r.process(pcm)
    assert np.array_equal(out, pcm) and out is not pcm
    assert len(r.flush()) == 0


def test_flush_then_a_new_stream() -> None:
    r = Resampler(44100, 48000)
    for _ in range(2):
        out = np.concatenate([r.process(tone(44100, 4410)), r.flush()])
        assert abs(len(out) - 4800) <= 4
    assert len(r.process(np.zeros(0, dtype=np.int16))) == 0


@pytest.mark.parametrize("rate", [0, -48000, 7999, 192001, 44100.0, True, "48000", None])
def test_bad_rates_are_refused(rate: Any) -> None:
    with pytest.raises(AudioError, match="rate"):
        Resampler(rate, 48000)
    with pytest.raises(AudioError, match="rate"):
        Resampler(48000, rate)


def test_bad_pcm_is_refused() -> None:
    r = Resampler(44100, 48000)
    with pytest.raises(AudioError, match="int16"):
        r.process(np.zeros(10, dtype=np.float32))
    with pytest.raises(AudioError, match="mono"):
        r.process(np.zeros((10, 2), dtype=np.int16))
    with pytest.raises(AudioError):
        FrameRechunker(0)


def test_rechunker_hands_out_exact_frames_in_order() -> None:
    pcm = tone(48000, 10 * FRAME_SAMPLES + 123)
    rc = FrameRechunker()
    frames: list[Pcm] = []
    for chunk in odd_chunks(pcm, seed=2):
        rc.push(chunk)
        frames.extend(rc.frames())
    assert [len(f) for f in frames] == [FRAME_SAMPLES] * 10
    assert np.array_equal(np.concatenate(frames), pcm[: 10 * FRAME_SAMPLES])
    assert rc.pending == 123 and rc.pop() is None and rc.dropped == 0
    assert np.array_equal(rc.drain(), pcm[-123:]) and rc.pending == 0


def test_rechunker_is_bounded_and_counts_what_it_drops() -> None:
    rc = FrameRechunker(FRAME_SAMPLES, max_frames=10)
    pcm = tone(48000, 15 * FRAME_SAMPLES + 5)
    rc.push(pcm[:FRAME_SAMPLES])
    rc.push(pcm[FRAME_SAMPLES:])
    assert rc.pending == 10 * FRAME_SAMPLES
    assert rc.dropped == 5 * FRAME_SAMPLES + 5
    # The newest audio is what is kept.
    assert np.array_equal(np.concatenate(rc.frames()), pcm[-10 * FRAME_SAMPLES :])
    # Any block size can be taken, not only whole frames.
    rc.push(pcm[:100])
    block = rc.pop(60)
    assert block is not None and np.array_equal(block, pcm[:60])
    assert rc.pop(41) is None


def test_wav_source_resamples_through_the_resampler(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(tone(44100, 44100).tobytes())
    with WavSource(path) as src:
        frames = [src.read_frame() for _ in range(50)]
    out = np.concatenate(frames)
    assert abs(peak_hz(out[:47000], 48000) - 1000.0) <= 5
    assert np.abs(np.diff(out[64:47000].astype(np.float64))).max() <= ideal_max_step(48000) * 1.02 + 2

    slow = tmp_path / "slow.wav"
    with wave.open(str(slow), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(4000)
        w.writeframes(tone(4000, 400, freq=100).tobytes())
    with pytest.raises(AudioError, match="rate"):
        WavSource(slow)


# --- devices: a fake PortAudio that will not do 48 kHz -------------------------------------------------


class FakeStream:
    def stop_stream(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakePyAudio:
    """Stands in for pyaudio.PyAudio: a device whose default rate is 44.1 kHz and that takes only
    the rates in `accepts`."""

    accepts: ClassVar[tuple[int, ...]] = (44100, 22050)
    opened: ClassVar[list[dict[str, Any]]] = []

    def open(self, *, rate: int, **kwargs: Any) -> FakeStream:
        if rate not in self.accepts:
            raise OSError(-9997, "Invalid sample rate")
        FakePyAudio.opened.append({"rate": rate, **kwargs})
        return FakeStream()

    def get_default_output_device_info(self) -> dict[str, Any]:
        return {"defaultSampleRate": 44100.0}

    def get_default_input_device_info(self) -> dict[str, Any]:
        return {"defaultSampleRate": 44100.0}

    def terminate(self) -> None:
        pass


@pytest.fixture
def fake_pyaudio(monkeypatch: pytest.MonkeyPatch) -> type[FakePyAudio]:
    pyaudio = pytest.importorskip("pyaudio")
    monkeypatch.setattr(pyaudio, "PyAudio", FakePyAudio)
    monkeypatch.setattr(FakePyAudio, "opened", [])
    monkeypatch.setattr(FakePyAudio, "accepts", (44100, 22050))
    return FakePyAudio


def test_output_falls_back_to_the_device_rate_and_resamples(fake_pyaudio: type[FakePyAudio]) -> None:
    from bisc.media.audio_io import AudioOutput

    src = ToneSource(1000.0, level=AMP / 32767)
    out = AudioOutput(src.read_frame)
    assert out.device_rate == 44100
    assert fake_pyaudio.opened[-1]["rate"] == 44100
    assert fake_pyaudio.opened[-1]["frames_per_buffer"] == 882
    callback = fake_pyaudio.opened[-1]["stream_callback"]
    blocks = []
    for i in range(100):
        frames = 882 if i % 3 else 500  # the callback fills exactly what it is asked for, any size
        data, _ = callback(None, frames, None, 0)
        assert len(data) == 2 * frames
        blocks.append(np.frombuffer(data, dtype=np.int16))
    pcm = np.concatenate(blocks)
    assert abs(peak_hz(pcm[64:], 44100) - 1000.0) <= 5
    assert np.abs(np.diff(pcm[64:].astype(np.float64))).max() <= ideal_max_step(44100) * 1.02 + 3
    assert (out.errors, out.underruns) == (0, 0)
    out.close()


def test_input_falls_back_to_the_device_rate_and_hands_over_48k_frames(
    fake_pyaudio: type[FakePyAudio],
) -> None:
    from bisc.media.audio_io import AudioInput

    got: list[Pcm] = []
    mic = AudioInput(got.append)
    assert mic.device_rate == 44100
    callback = fake_pyaudio.opened[-1]["stream_callback"]
    captured = tone(44100, 2 * 44100)
    for chunk in odd_chunks(captured, seed=3):
        callback(chunk.tobytes(), len(chunk), None, 0)
    assert all(len(f) == FRAME_SAMPLES and f.dtype == np.int16 for f in got)
    pcm = np.concatenate(got)
    assert 2 * 48000 - FRAME_SAMPLES - 64 <= len(pcm) <= 2 * 48000
    assert abs(peak_hz(pcm, 48000) - 1000.0) <= 5
    assert np.abs(np.diff(pcm[64:].astype(np.float64))).max() <= ideal_max_step(48000) * 1.02 + 2
    mic.close()


def test_forced_rate_and_refusals(fake_pyaudio: type[FakePyAudio]) -> None:
    from bisc.media.audio_io import AudioInput, AudioOutput

    with AudioOutput(lambda: np.zeros(FRAME_SAMPLES, dtype=np.int16), rate=22050) as out:
        assert out.device_rate == 22050 and fake_pyaudio.opened[-1]["frames_per_buffer"] == 441
    # A forced rate the device refuses is an error, not a silent fallback.
    with pytest.raises(AudioError, match="cannot open the microphone"):
        AudioInput(lambda pcm: None, rate=16000)
    with pytest.raises(AudioError, match="rate"):
        AudioInput(lambda pcm: None, rate=1000)
    # A device that takes neither 48 kHz nor its own default rate: both reasons are given.
    fake_pyaudio.accepts = ()  # the fixture restores it
    with pytest.raises(AudioError, match=r"48000 Hz.*44100 Hz"):
        AudioOutput(lambda: np.zeros(FRAME_SAMPLES, dtype=np.int16))


def test_callbacks_survive_a_failing_producer_and_consumer(fake_pyaudio: type[FakePyAudio]) -> None:
    from bisc.media.audio_io import AudioInput, AudioOutput

    def broken() -> Pcm:
        raise RuntimeError("boom")

    with AudioOutput(broken) as out:
        data, _ = fake_pyaudio.opened[-1]["stream_callback"](None, 882, None, 0)
        assert data == bytes(2 * 882) and out.errors == 1

    with AudioOutput(lambda: np.zeros(0, dtype=np.int16)) as starved:
        data, _ = fake_pyaudio.opened[-1]["stream_callback"](None, 882, None, 0)
        assert data == bytes(2 * 882) and starved.underruns == 1

    def refuse(pcm: Pcm) -> None:
        raise RuntimeError("boom")

    with AudioInput(refuse) as mic:
        fake_pyaudio.opened[-1]["stream_callback"](tone(44100, 2000).tobytes(), 2000, None, 0)
        assert mic.errors == 1


# --- the real device path, forced to 44.1 kHz ---------------------------------------------------------


@pytest.fixture(scope="module")
def pulse_null_sink() -> str:
    """A null sink as default output and its monitor as default input (as in test_audio_devices)."""
    if shutil.which("pactl") is None or subprocess.run(["pactl", "info"], capture_output=True).returncode:
        if NEED_PULSE:
            pytest.fail("PulseAudio is required (BISC_REQUIRE_AUDIO) but not running")
        pytest.skip("no PulseAudio server")
    pytest.importorskip("pyaudio")
    sinks = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True).stdout
    if "bisc_null" not in sinks:
        subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=bisc_null"], check=True)
    subprocess.run(["pactl", "set-default-sink", "bisc_null"], check=True)
    subprocess.run(["pactl", "set-default-source", "bisc_null.monitor"], check=True)
    return "bisc_null"


def test_tone_through_devices_at_44k1_arrives_as_48k_frames(pulse_null_sink: str) -> None:
    from bisc.media.audio_io import AudioInput, AudioOutput

    src = ToneSource(1000.0, level=0.5)
    captured: list[Pcm] = []
    lock = threading.Lock()

    def keep(pcm: Pcm) -> None:
        with lock:
            captured.append(pcm)

    with (
        AudioInput(keep, device="pulse", rate=44100) as mic,
        AudioOutput(src.read_frame, device="pulse", rate=44100) as speaker,
    ):
        assert mic.device_rate == speaker.device_rate == 44100
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with lock:
                if sum(len(c) for c in captured) >= SAMPLE_RATE * 2:
                    break
            time.sleep(0.05)
    with lock:
        assert all(len(c) == FRAME_SAMPLES for c in captured)
        pcm = np.concatenate(captured)[-SAMPLE_RATE:].astype(np.float64)
    assert len(pcm) == SAMPLE_RATE, "not enough audio captured from the monitor"
    assert abs(peak_hz(pcm, SAMPLE_RATE) - 1000.0) <= 5
    rms = np.sqrt(np.mean(pcm**2)) / 32767
    assert 0.5 / np.sqrt(2) * 0.5 < rms < 0.5 / np.sqrt(2) * 1.5, rms
    assert (mic.errors, speaker.errors) == (0, 0)
