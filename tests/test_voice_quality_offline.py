"""Speech quality of the receive path, without sockets or clocks: the espeak-ng sample goes through
VoiceSender, a seeded path with 30 ms of uniform jitter and loss, and VoiceReceiver rendered once
per 20 ms, then PESQ scores it. Deterministic (seeded, no real time), so it guards the jitter
buffer's policy: where it cuts and inserts (PESQ punishes a cut inside a word by up to 0.5), the
margin it keeps for FEC, and the RED copies. The real-network figures are `bisc bench --suite voice`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from bisc.bench.pesq_score import score
from bisc.bench.speech import read_wav, speech_wav, write_wav
from bisc.media.opus import FRAME_SAMPLES
from bisc.media.voice_receiver import VoiceReceiver
from bisc.media.voice_sender import VoiceSender
from tests.test_bench_voice import _need_espeak

FRAME_S = FRAME_SAMPLES / 48000
SEEDS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_espeak()
    return speech_wav(tmp_path_factory.mktemp("speech"))


def _call(speech: Path, out: Path, loss: float, seed: int, copies: int) -> tuple[float, dict[str, float]]:
    samples, rate = read_wav(speech)
    assert rate == 48000
    pcm = np.asarray(samples, dtype=np.int16)
    frames = len(pcm) // FRAME_SAMPLES
    rng = random.Random(seed)
    sender = VoiceSender(rng=random.Random(seed))
    sender.redundancy = copies
    receiver = VoiceReceiver(stream_id=sender.stream_id, red=True)
    arrivals: list[tuple[float, bytes]] = []
    for i in range(frames + 50):  # then a second of silence, so the tail is played out
        frame = pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
        frame = np.pad(frame, (0, FRAME_SAMPLES - len(frame)))
        sent = (i + 1) * FRAME_S
        data = sender.packetize(frame, sent)
        assert data is not None
        if rng.random() >= loss:
            arrivals.append((sent + 0.001 + rng.uniform(0.0, 0.03), data))
    arrivals.sort(key=lambda a: a[0])
    played: list[np.ndarray] = []
    now, k = 0.011, 0  # the device's phase is not the sender's
    while len(played) < frames + 40:
        while k < len(arrivals) and arrivals[k][0] <= now:
            receiver.push(arrivals[k][1], arrivals[k][0])
            k += 1
        pcm_out = receiver.render(now)
        played.append(pcm_out if pcm_out is not None else np.zeros(FRAME_SAMPLES, dtype=np.int16))
        now += FRAME_S
    write_wav(out, np.concatenate(played), 48000)
    return score(speech, out), dict(receiver.jitter.stats())


@pytest.mark.parametrize(
    ("loss", "copies", "floor"),
    [(0.0, 0, 4.0), (0.05, 0, 3.5), (0.10, 1, 3.6)],
    ids=["clean", "5%-fec", "10%-red"],
)
def test_speech_quality_through_jitter_and_loss(
    speech: Path, tmp_path: Path, loss: float, copies: int, floor: float
) -> None:
    results = [_call(speech, tmp_path / f"out{seed}.wav", loss, seed, copies) for seed in SEEDS]
    scores = [s for s, _ in results]
    assert np.mean(scores) >= floor, scores
    for _, stats in results:
        assert stats["late"] == 0
        if copies:
            assert stats["recovered"] > stats["fec"] + stats["plc"]
    if loss == 0.0:
        # Delay changes only in the pauses between sentences: the clean call scores as a fixed buffer.
        assert min(scores) >= 4.1, scores
