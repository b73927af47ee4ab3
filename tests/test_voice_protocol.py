"""Voice protocol units, sans-IO: the voice receiver and sender driven on a virtual
clock (no threads, no network), and which voice stream offers are accepted."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from bisc import hotpaths
from bisc.app.voice import refuse_reason
from bisc.codec import audio_red
from bisc.media.opus import FRAME_SAMPLES, MAX_PACKET_BYTES, SAMPLE_RATE, OpusDecoder, OpusEncoder
from bisc.media.voice_receiver import VoiceReceiver
from bisc.media.voice_sender import VoiceSender
from bisc.proto.media_control import StreamOffer
from tests.voice_helpers import FRAME_S, U32, VOICE

TONE_HZ = 440.0
TONE_AMPLITUDE = 0.3 * 32767
TONE_RMS = TONE_AMPLITUDE / math.sqrt(2)


# -- voice receiver on a virtual clock --------------------------------------------------


def _tone_frames(n: int, hz: float = TONE_HZ) -> list[npt.NDArray[np.int16]]:
    t = np.arange(n * FRAME_SAMPLES) / SAMPLE_RATE
    pcm = np.round(TONE_AMPLITUDE * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return [pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(n)]


def _peak_hz(pcm: npt.NDArray[np.float64]) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(pcm))


def _rms(pcm: npt.NDArray[Any]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


_TONE_PAYLOADS: list[bytes] = []


def _tone_payloads(n: int) -> list[bytes]:
    if len(_TONE_PAYLOADS) < n:
        encoder = OpusEncoder(bitrate=32000, fec=True, expected_loss_percent=10)
        _TONE_PAYLOADS[:] = [encoder.encode(f) for f in _tone_frames(n)]
    return _TONE_PAYLOADS[:n]


SEQ0 = U32 - 100  # the sequence wraps mid-call
TS0 = U32 - 50 * FRAME_SAMPLES  # and so does the timestamp, elsewhere
T0 = 1000.0  # virtual capture time of frame 0


def _datagram(i: int, payload: bytes) -> bytes:
    return bytes(
        hotpaths.packet.encode_packet(0, (SEQ0 + i) & U32, (TS0 + i * FRAME_SAMPLES) & U32, 0, 1, 0, payload)
    )


class _Call:
    """Packets sent every 20 ms from T0, delivered with the given delays; render every 20 ms."""

    def __init__(self, delays: list[float | None]) -> None:
        payloads = _tone_payloads(len(delays))
        self.arrivals = sorted(
            (T0 + i * FRAME_S + d, i, _datagram(i, payloads[i]))
            for i, d in enumerate(delays)
            if d is not None
        )
        self.receiver = VoiceReceiver(stream_id=0, decoder=OpusDecoder())
        self.receiver.set_sender_clock(TS0, T0)
        self.out: list[tuple[float, npt.NDArray[np.int16] | None]] = []
        self._next = 0
        self.now = T0 + 0.007  # the device clock's phase is unrelated to the sender's

    def run_until(self, end: float) -> None:
        while self.now < end:
            while self._next < len(self.arrivals) and self.arrivals[self._next][0] <= self.now:
                arrival, _, data = self.arrivals[self._next]
                self.receiver.push(data, arrival)
                self._next += 1
            self.out.append((self.now, self.receiver.render(self.now)))
            self.now += FRAME_S


def _jittered_delays(
    n: int, *, seed: int, loss: float, jitter: float, base: float = 0.03
) -> list[float | None]:
    rng = random.Random(seed)
    return [None if rng.random() < loss else base + rng.uniform(0.0, jitter) for _ in range(n)]


def test_receiver_plays_the_tone_through_loss_and_jitter() -> None:
    n = 300  # 6 s
    delays = _jittered_delays(n, seed=7, loss=0.05, jitter=0.03)
    lost = sum(d is None for d in delays)
    assert 8 <= lost <= 25
    call = _Call(delays)
    call.run_until(T0 + 1.0)
    call.receiver.stats(call.now)  # marks the bitrate's start
    mark = call.now
    call.run_until(call.arrivals[-1][0] + FRAME_S)  # one render after the last packet
    rendered = [pcm for _, pcm in call.out]
    start = next(k for k, pcm in enumerate(rendered) if pcm is not None)
    assert start * FRAME_S < 0.2  # playout starts after the prefetch, not later
    playing = rendered[start:]
    assert all(pcm is not None and pcm.shape == (FRAME_SAMPLES,) for pcm in playing)
    frames = [pcm for pcm in playing if pcm is not None]
    # Never a silent frame once playing: losses are filled by FEC or PLC. The floor is 5 % of the
    # tone, not more: libopus (SILK, as used with FEC) recovers a pure tone slowly after a loss, the
    # FEC frame and the first frame decoded after a concealment measure 10-30 % of the tone.
    levels = np.array([_rms(pcm) for pcm in frames]) / TONE_RMS
    assert levels.min() > 0.05, levels.min()
    assert np.mean(levels > 0.7) > 0.7  # and most frames are the tone at (near) full level
    audio = np.concatenate(frames[5:]).astype(np.float64)  # past the codec's start-up
    assert abs(_peak_hz(audio) - TONE_HZ) < 5.0
    assert 0.7 * TONE_RMS < _rms(audio) < 1.3 * TONE_RMS
    stats = call.receiver.stats(call.now)
    assert stats.packets == n - lost
    assert stats.concealed > 0 and stats.fec > 0
    assert stats.fec <= stats.concealed
    assert stats.malformed == 0 and stats.decode_errors == 0
    assert stats.jitter_ms > 3.0  # 30 ms uniform jitter was measured
    # End to end: 30 ms network + up to 30 ms jitter + the buffer; bounded.
    assert 30.0 < stats.e2e_ms <= stats.e2e_p95_ms < 200.0
    samples = call.receiver.e2e_samples()
    assert len(samples) > n * 0.8
    assert min(samples) >= 0.03  # no frame plays before it arrived
    assert stats.speaking
    # The level is that of the frame just played (the tone is at -13.5 dBFS).
    last = call.out[-1][1]
    assert last is not None
    assert stats.level_dbfs == pytest.approx(20 * math.log10(_rms(last) / 32768), abs=0.06)
    assert stats.level_dbfs > -30.0
    # Opus at 32 kb/s plus the headers, since the previous stats() call.
    assert call.now > mark + 4.0
    assert 20.0 < stats.bitrate_kbps < 60.0


def test_receiver_clean_stream_is_near_lossless() -> None:
    n = 150
    call = _Call([0.02] * n)
    call.run_until(T0 + n * FRAME_S)  # not past the last packet: a buffer run dry is not a loss
    stats = call.receiver.stats(call.now)
    assert stats.concealed - stats.fec <= 3  # at most a few expands while settling, no losses
    assert stats.fec == 0
    playing = [pcm for _, pcm in call.out if pcm is not None]
    audio = np.concatenate(playing[5 : n - 10]).astype(np.float64)
    assert abs(_peak_hz(audio) - TONE_HZ) < 5.0
    # Constant 20 ms network delay: e2e is that plus the (small) buffer.
    assert 20.0 <= stats.e2e_ms < 120.0


def test_receiver_buffer_returns_to_the_floor_after_jitter() -> None:
    n_jitter, n_calm = 250, 650  # 5 s of 60 ms jitter, then 13 s of none
    delays = _jittered_delays(n_jitter, seed=3, loss=0.0, jitter=0.06, base=0.03) + [0.04] * n_calm
    call = _Call(delays)
    calm_start = T0 + n_jitter * FRAME_S
    call.run_until(calm_start)
    during = call.receiver.stats(call.now)
    assert during.target_ms >= 60.0  # the buffer grew for the jitter
    # A tone has no pause to cut in: the buffer sheds a frame per PATIENCE pops (3 s) of waiting.
    call.run_until(calm_start + 12.0)
    after = call.receiver.stats(call.now)
    assert after.target_ms <= 40.0
    assert after.buffer_ms <= after.target_ms + 25.0
    _, p95 = call.receiver.e2e_quantiles()
    assert p95 < 0.04 + 0.02 + after.target_ms / 1000 + 0.02


def test_receiver_counts_malformed_pushes_only() -> None:
    receiver = VoiceReceiver(stream_id=0)
    payload = _tone_payloads(1)[0]
    good = _datagram(0, payload)
    bad = [
        b"",
        b"\x01\x00",  # truncated header
        good[:14],
        bytes([9]) + good[1:],  # unknown version
        bytes(hotpaths.packet.encode_packet(1, 0, 0, 0, 1, 0, payload)),  # not the stream we accepted
        bytes(hotpaths.packet.encode_packet(0, 0, 0, 0, 2, 0, payload)),  # a fragment
        bytes(hotpaths.packet.encode_packet(0, 0, 0, 1, 2, 0, payload)),
        bytes(hotpaths.packet.encode_packet(0, 0, 0, 0, 1, 0, b"")),  # no payload
        bytes(hotpaths.packet.encode_packet(0, 0, 0, 0, 1, 0, b"\xfc" * (MAX_PACKET_BYTES + 1))),
    ]
    for k, data in enumerate(bad):
        receiver.push(data, 1.0 + k * 0.001)
    stats = receiver.stats(2.0)
    assert stats.malformed == len(bad)
    assert stats.packets == 0
    assert receiver.jitter.stats()["received"] == 0
    assert receiver.render(2.0) is None
    assert stats.decode_errors == 0 and stats.concealed == 0
    receiver.push(good, 2.0)
    assert receiver.stats(2.0).packets == 1 and receiver.malformed == len(bad)


def test_receiver_garbage_opus_is_a_decode_error_not_a_crash() -> None:
    receiver = VoiceReceiver(stream_id=0)
    garbage = b"\xff\xff\xff\xff\xff"  # a code-3 packet with an impossible frame count
    now = 1.0
    for i in range(10):
        receiver.push(bytes(hotpaths.packet.encode_packet(0, i, i * FRAME_SAMPLES, 0, 1, 0, garbage)), now)
        now += FRAME_S
    outputs = [receiver.render(now + k * FRAME_S) for k in range(10)]
    played = [pcm for pcm in outputs if pcm is not None]
    assert played and all(pcm.shape == (FRAME_SAMPLES,) for pcm in played)
    assert receiver.decode_errors > 0 and receiver.malformed == 0


# -- voice sender --------------------------------------------------------------------------


def _decode(data: bytes) -> Any:
    return hotpaths.packet.decode_packet(data)


def test_sender_packets_are_consecutive() -> None:
    sender = VoiceSender(rng=random.Random(1))
    frames = _tone_frames(60)
    packets: list[Any] = []
    for i, frame in enumerate(frames):
        data = sender.packetize(frame, 10.0 + i * FRAME_S)
        assert data is not None
        packets.append(_decode(data))
        assert sender.clock == (packets[-1].timestamp, 10.0 + i * FRAME_S)
    for prev, cur in itertools.pairwise(packets):
        assert cur.stream_id == 0 and cur.fragment_count == 1 and cur.fragment_index == 0
        assert cur.sequence == (prev.sequence + 1) & U32
        assert cur.timestamp == (prev.timestamp + FRAME_SAMPLES) & U32
    assert sender.frames_encoded == 60
    # RED framing without copies (no loss reported): one byte, then the Opus packet.
    opus = [audio_red.unpack(bytes(p.payload)) for p in packets]
    assert all(c == () for _, c in opus)
    assert [len(bytes(p.payload)) for p in packets] == [1 + len(o) for o, _ in opus]
    assert sender.bytes_encoded == sum(len(o) for o, _ in opus)
    # The payloads are the tone.
    decoder = OpusDecoder()
    pcm = np.concatenate([decoder.decode(o) for o, _ in opus[5:]]).astype(np.float64)
    assert abs(_peak_hz(pcm) - TONE_HZ) < 5.0
    assert sender.offer() == dataclasses.replace(VOICE, codec=audio_red.OPUS_RED)
    assert refuse_reason(sender.offer()) is None and refuse_reason(VOICE) is None  # plain Opus too


def test_sender_random_starts_differ() -> None:
    frame = _tone_frames(1)[0]
    firsts = set()
    for seed in range(4):
        data = VoiceSender(rng=random.Random(seed)).packetize(frame, 0.0)
        assert data is not None
        packet = _decode(data)
        firsts.add((packet.sequence, packet.timestamp))
    assert len(firsts) == 4


def test_sender_wraps() -> None:
    sender = VoiceSender(rng=random.Random(2))
    sender._sequence, sender._timestamp = U32, U32 - 100  # steer to the wrap
    frame = _tone_frames(1)[0]
    first, second = (sender.packetize(frame, float(k)) for k in range(2))
    assert first is not None and second is not None
    a, b = _decode(first), _decode(second)
    assert (a.sequence, b.sequence) == (U32, 0)
    assert (a.timestamp, b.timestamp) == (U32 - 100, FRAME_SAMPLES - 101)


def test_sender_mute_stops_the_clock() -> None:
    sender = VoiceSender(rng=random.Random(4))
    frames = _tone_frames(20)
    before = sender.packetize(frames[0], 1.0)
    assert before is not None
    clock = sender.clock
    sender.muted = True
    for k in range(1, 10):
        assert sender.packetize(frames[k], 1.0 + k * FRAME_S) is None
        assert sender.speaking is False
    assert sender.clock == clock
    assert sender.frames_encoded == 1
    assert sender.level_dbfs > -20.0  # the level meter still runs while muted
    sender.muted = False
    after = sender.packetize(frames[10], 1.2)
    assert after is not None
    a, b = _decode(before), _decode(after)
    assert b.sequence == (a.sequence + 1) & U32
    assert b.timestamp == (a.timestamp + FRAME_SAMPLES) & U32  # a pause, not a jump
    assert sender.clock == (b.timestamp, 1.2)


def test_sender_to_receiver() -> None:
    sender = VoiceSender(rng=random.Random(9))
    receiver = VoiceReceiver(stream_id=0, red=True)
    frames = _tone_frames(100)
    out: list[npt.NDArray[np.int16]] = []
    for i, frame in enumerate(frames):
        now = 5.0 + i * FRAME_S
        data = sender.packetize(frame, now)
        assert data is not None and sender.clock is not None
        if i == 0:
            receiver.set_sender_clock(*sender.clock)
        receiver.push(data, now + 0.01)
        pcm = receiver.render(now + 0.015)
        if pcm is not None:
            out.append(pcm)
    assert len(out) > 85
    assert abs(_peak_hz(np.concatenate(out[5:]).astype(np.float64)) - TONE_HZ) < 5.0
    p50, _ = receiver.e2e_quantiles()
    assert 0.01 < p50 < 0.15


# -- offer acceptance ------------------------------------------------------------------------


def test_refuse_reason_accepts_voice() -> None:
    assert refuse_reason(VOICE) is None
    assert refuse_reason(StreamOffer(0, "audio", "opus", 48000, 1, 20, False)) is None  # FEC is optional


@pytest.mark.parametrize(
    ("offer", "words"),
    [
        (StreamOffer(1, "video", "vp8", 90000, 1, 33, False), "video"),
        (StreamOffer(0, "video", "opus", 48000, 1, 20, True), "video"),
        (StreamOffer(1, "audio", "opus", 48000, 1, 20, True), "stream 0"),
        (StreamOffer(0, "audio", "pcmu", 48000, 1, 20, True), "Opus"),
        (StreamOffer(0, "audio", "opus", 16000, 1, 20, True), "48 kHz"),
        (StreamOffer(0, "audio", "opus", 48000, 2, 20, True), "mono"),
        (StreamOffer(0, "audio", "opus", 48000, 1, 10, True), "20 ms"),
    ],
)
def test_refuse_reason_refuses(offer: StreamOffer, words: str) -> None:
    reason = refuse_reason(offer)
    assert reason is not None and words in reason
    assert f"stream {offer.stream_id}" in reason


def test_accelerate_splices_where_the_frames_agree() -> None:
    """Taking 20 ms out of two frames: the cut goes where "now" and "20 ms later" differ least (here
    the pause between two sounds), so both sounds stay whole; the output starts as the first frame
    and ends as the second, so it joins the frames around it."""
    from bisc.media.voice_receiver import SPLICE_SAMPLES, splice_out_frame

    t = np.arange(FRAME_SAMPLES) / 48000.0
    tone = np.round(8000 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)
    first = np.where(np.arange(FRAME_SAMPLES) < 400, tone, 0).astype(np.int16)
    second = np.where(np.arange(FRAME_SAMPLES) >= 700, tone, 0).astype(np.int16)
    out = splice_out_frame(first, second)
    assert out.dtype == np.int16 and out.shape == (FRAME_SAMPLES,)
    assert np.array_equal(out[:400], first[:400]) and np.array_equal(out[700:], second[700:])
    assert not out[400:700].any()
    # Nothing alike anywhere: still one frame, first's start and second's end, no wrap-around.
    loud = np.full(FRAME_SAMPLES, 30000, dtype=np.int16)
    out = splice_out_frame(loud, -loud)
    assert out[0] == 30000 and out[-1] == -30000 and out.shape == (FRAME_SAMPLES,)
    assert SPLICE_SAMPLES < FRAME_SAMPLES
