"""Audio redundancy: the RED framing (and what hostile framings do), the sender's policy, and a
receiver that plays lost frames whole from the copies in later packets."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bisc import hotpaths
from bisc.codec import audio_red
from bisc.codec.audio_red import RedError, RedundancyPolicy, pack, unpack
from bisc.media.opus import FRAME_SAMPLES
from bisc.media.voice_receiver import VoiceReceiver
from bisc.media.voice_sender import MAX_RED_PAYLOAD, VoiceSender
from tests.test_voice_protocol import TONE_HZ, _peak_hz, _tone_frames
from tests.voice_helpers import FRAME_S

opus_packets = st.binary(min_size=1, max_size=400)


@given(primary=opus_packets, copies=st.lists(opus_packets, max_size=audio_red.MAX_COPIES))
def test_pack_unpack_round_trip(primary: bytes, copies: list[bytes]) -> None:
    payload = pack(primary, copies)
    assert len(payload) == 1 + 2 * len(copies) + len(primary) + sum(map(len, copies))
    assert unpack(payload) == (primary, tuple(copies))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"\x03" + bytes(20), "claims 3 copies"),
        (b"\x01\x00", "cut short in its header"),
        (b"\x01\x00\x00abc", "copy of 0 bytes"),
        (b"\x01\x00\x10abc", "cut short in a copy"),
        (b"\x01\x00\x03abc", "without the frame's own data"),
        (b"\x00", "without the frame's own data"),
        (b"\x01\xff\xffabc", "copy of 65535 bytes"),
    ],
)
def test_bad_framings_are_clear_errors(payload: bytes, message: str) -> None:
    with pytest.raises(RedError, match=message):
        unpack(payload)


@given(st.binary(max_size=64))
def test_random_bytes_never_crash(payload: bytes) -> None:
    try:
        primary, copies = unpack(payload)
    except RedError:
        return
    assert primary and len(copies) <= audio_red.MAX_COPIES and all(copies)


def test_pack_refuses_what_it_could_not_frame() -> None:
    with pytest.raises(RedError):
        pack(b"")
    with pytest.raises(RedError):
        pack(b"x", [b"a", b"b", b"c"])
    with pytest.raises(RedError):
        pack(b"x", [b""])


def test_policy_turns_copies_on_at_loss_and_off_after_a_calm_spell() -> None:
    policy = RedundancyPolicy(max_copies=1)
    assert policy.on_loss(0.0, 0.0) == 0
    assert policy.on_loss(0.004, 1.0) == 0  # under a percent: not worth the bitrate
    assert policy.on_loss(0.03, 2.0) == 1
    # Loss comes in bursts: a few clean reports do not turn it off.
    for t in range(3, 12):
        assert policy.on_loss(0.0, float(t)) == 1
    assert policy.on_loss(0.02, 12.0) == 1  # a new burst restarts the calm spell
    for t in range(13, 23):
        assert policy.on_loss(0.0, float(t)) == 1
    assert policy.on_loss(0.0, 23.0) == 0  # ten seconds under half a percent
    assert policy.on_loss(0.5, 24.0) == 1
    assert RedundancyPolicy(max_copies=2).on_loss(0.2, 0.0) == 2
    with pytest.raises(ValueError):
        RedundancyPolicy(max_copies=3)


def _payloads(datagrams: list[bytes]) -> list[tuple[bytes, tuple[bytes, ...]]]:
    return [unpack(bytes(hotpaths.packet.decode_packet(d).payload)) for d in datagrams]


def test_sender_adds_copies_of_the_frames_before() -> None:
    sender = VoiceSender(rng=random.Random(3))
    frames = _tone_frames(12)
    out = [sender.packetize(f, i * FRAME_S) for i, f in enumerate(frames[:3])]
    sender.redundancy = 1
    out += [sender.packetize(f, i * FRAME_S) for i, f in enumerate(frames[3:6], 3)]
    sender.redundancy = 2
    out += [sender.packetize(f, i * FRAME_S) for i, f in enumerate(frames[6:9], 6)]
    framed = _payloads([d for d in out if d is not None])
    own = [p for p, _ in framed]
    assert [c for _, c in framed[:3]] == [(), (), ()]
    assert [c for _, c in framed[3:6]] == [(own[2],), (own[3],), (own[4],)]
    assert [c for _, c in framed[6:9]] == [(own[5], own[4]), (own[6], own[5]), (own[7], own[6])]
    assert sender.bytes_encoded == sum(map(len, own))  # the Opus bitrate, copies not counted
    # After a mute the frames before the pause are not copied.
    sender.muted = True
    assert sender.packetize(frames[9], 0.2) is None
    sender.muted = False
    data = sender.packetize(frames[10], 0.22)
    assert data is not None and _payloads([data])[0][1] == ()


def test_sender_leaves_out_copies_that_would_make_a_datagram_too_big() -> None:
    sender = VoiceSender(rng=random.Random(3))
    sender.redundancy = 2
    big = b"\xfc" * 600
    sender._history.extendleft([big, big])
    copies = unpack(sender._with_copies(b"\xfc" * 100))[1]
    assert copies == (big,)
    assert MAX_RED_PAYLOAD >= 1 + 2 + 600 + 100


def _call(loss: float, copies: int, seed: int = 5, n: int = 400) -> tuple[VoiceReceiver, np.ndarray]:
    """n tone frames through 30 ms of jitter and `loss`, each datagram with `copies` copies."""
    rng = random.Random(seed)
    sender = VoiceSender(rng=random.Random(seed))
    sender.redundancy = copies
    receiver = VoiceReceiver(stream_id=0, red=True)
    arrivals = []
    for i, frame in enumerate(_tone_frames(n)):
        data = sender.packetize(frame, i * FRAME_S)
        assert data is not None
        if rng.random() >= loss:
            arrivals.append((i * FRAME_S + rng.uniform(0.0, 0.03), data))
    arrivals.sort(key=lambda a: a[0])
    out = []
    now, k = 0.007, 0
    while now < n * FRAME_S:
        while k < len(arrivals) and arrivals[k][0] <= now:
            receiver.push(arrivals[k][1], arrivals[k][0])
            k += 1
        pcm = receiver.render(now)
        if pcm is not None:
            out.append(pcm)
        now += FRAME_S
    return receiver, np.concatenate(out).astype(np.float64)


def test_receiver_plays_lost_frames_from_their_copies() -> None:
    plain, _ = _call(0.1, copies=0)
    red, audio = _call(0.1, copies=1)
    p, r = plain.stats(10.0), red.stats(10.0)
    assert p.recovered == 0 and p.fec > 20
    # The same losses: nearly all played whole from a copy; only two in a row need FEC or PLC.
    assert r.recovered >= 0.8 * p.fec
    assert r.fec + (r.concealed - r.fec) < 0.5 * p.concealed
    assert r.malformed == r.decode_errors == 0
    assert abs(_peak_hz(audio[FRAME_SAMPLES * 10 :]) - TONE_HZ) < 5.0


def test_receiver_counts_bad_red_framing_as_malformed() -> None:
    receiver = VoiceReceiver(stream_id=0, red=True)

    def datagram(seq: int, payload: bytes) -> bytes:
        return bytes(hotpaths.packet.encode_packet(0, seq, seq * FRAME_SAMPLES, 0, 1, 0, payload))

    for i, payload in enumerate([b"\x05abc", b"\x01\x00\x09ab", b"\x00"]):
        receiver.push(datagram(i, payload), 0.0)
    assert receiver.stats(1.0).malformed == 3 and receiver.stats(1.0).packets == 0
    # A well-framed copy of garbage: stored, then a decode error (concealed) when its turn comes.
    frames = _tone_frames(5)
    encoder = VoiceSender(rng=random.Random(1)).encoder
    for seq in (10, 12, 13, 14):
        copies = [b"\xff" * 9] if seq == 12 else []
        payload = pack(encoder.encode(frames[seq - 10]), copies)
        receiver.push(datagram(seq, payload), 1.0 + (seq - 10) * FRAME_S)
    assert receiver.jitter.stats()["recovered"] == 1
    played = [receiver.render(1.09 + i * FRAME_S) for i in range(5)]
    assert [p.shape if p is not None else None for p in played] == [(FRAME_SAMPLES,)] * 5
    assert receiver.stats(2.0).malformed == 3 and receiver.decode_errors == 1


def test_sender_wire_rate_counts_its_copies() -> None:
    # What the video leaves to voice ("audio first") follows the copies.
    sender = VoiceSender(bitrate=64000, rng=random.Random(1))
    assert sender.wire_bps == 64000 + 50 * 80 * 8
    sender.redundancy = 1
    assert sender.wire_bps == 2 * 64000 + 50 * 80 * 8
