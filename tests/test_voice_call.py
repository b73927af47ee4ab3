"""Voice calls over real aioquic connections on loopback, through the public API."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from bisc import hotpaths
from bisc.app import MediaStateChanged, MediaStats, Node, SpeakingChanged
from bisc.app.channel import Channel
from bisc.codec.audio_red import pack
from bisc.errors import BiscError
from bisc.media.opus import AudioError
from bisc.proto.media_control import VOICE_STREAM
from tests.test_channels import full_mesh, wait_until
from tests.voice_helpers import RATE, TONE_RMS, band_rms, longest_gap, peak_hz, read_wav

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[list[Node]]:
    started: list[Node] = []

    async def make(i: int) -> Node:
        node = await Node(data_dir=tmp_path / f"n{i}", display_name=f"v{i}", bind="127.0.0.1:0").start()
        started.append(node)
        return node

    yield [await make(i) for i in range(3)]
    for node in started:
        await node.close()


async def channel_of(nodes: list[Node], count: int) -> list[Channel]:
    first = await nodes[0].create_channel()
    channels = [first, *[await n.join(first.ticket()) for n in nodes[1:count]]]
    await wait_until(lambda: full_mesh(channels), 10.0, "full mesh", channels)
    return channels


async def test_two_nodes_each_hear_the_others_tone(nodes: list[Node], tmp_path: Path) -> None:
    a, b = await channel_of(nodes, 2)
    va = await a.start_voice("tone:440", str(tmp_path / "a.wav"))
    vb = await b.start_voice("tone:1000", str(tmp_path / "b.wav"))
    await wait_until(lambda: len(va.stats()) == 1 and len(vb.stats()) == 1, 5.0, "both receiving")
    await asyncio.sleep(3.0)
    stats_b = vb.stats()[a.me]
    await a.stop_voice()
    await b.stop_voice()
    for path, hz, other in ((tmp_path / "b.wav", 440.0, 1000.0), (tmp_path / "a.wav", 1000.0, 440.0)):
        pcm = read_wav(path)[-2 * RATE :]
        assert abs(peak_hz(pcm) - hz) < 3
        # The level arrives as sent (Opus at 64 kb/s keeps a pure tone within a dB or so).
        assert band_rms(pcm, hz) == pytest.approx(TONE_RMS, rel=0.15)
        assert band_rms(pcm, other) < TONE_RMS * 0.01  # no echo of our own tone
        assert longest_gap(pcm, TONE_RMS * 0.1) == 0  # a concealed frame is quieter, never silent
    assert stats_b.loss_pct == 0.0 and stats_b.malformed == 0 and stats_b.decode_errors == 0
    assert 0 < stats_b.e2e_ms < 100 and 0 <= stats_b.rtt_ms < 100
    assert 20 < stats_b.bitrate_kbps < 110  # 64 kb/s Opus VBR plus headers


async def test_three_nodes_mix_every_sender(nodes: list[Node], tmp_path: Path) -> None:
    a, b, c = await channel_of(nodes, 3)
    await a.start_voice("tone:440", str(tmp_path / "a.wav"))
    await b.start_voice("tone:1000", str(tmp_path / "b.wav"))
    vc = await c.start_voice("none", str(tmp_path / "c.wav"))
    await wait_until(lambda: len(vc.stats()) == 2, 5.0, "c receiving both")
    await asyncio.sleep(3.0)
    for ch in (a, b, c):
        await ch.stop_voice()
    mix_c = read_wav(tmp_path / "c.wav")[-2 * RATE :]
    for hz in (440.0, 1000.0):  # both senders, each at its own level: mixed, not clipped
        assert band_rms(mix_c, hz) == pytest.approx(TONE_RMS, rel=0.15)
    assert np.max(np.abs(mix_c)) < 32767
    heard_by_a = read_wav(tmp_path / "a.wav")[-2 * RATE :]
    assert band_rms(heard_by_a, 1000.0) == pytest.approx(TONE_RMS, rel=0.15)
    assert band_rms(heard_by_a, 440.0) < TONE_RMS * 0.01  # c sends nothing, a never hears itself


async def test_mute_stops_sending_and_tells_the_channel(nodes: list[Node], tmp_path: Path) -> None:
    a, b = await channel_of(nodes, 2)
    states: list[MediaStateChanged] = []
    speaking: list[SpeakingChanged] = []

    async def watch() -> None:
        async for event in b.events():
            if isinstance(event, MediaStateChanged):
                states.append(event)
            elif isinstance(event, SpeakingChanged):
                speaking.append(event)

    watcher = asyncio.ensure_future(watch())
    va = await a.start_voice("tone:440", "none")
    vb = await b.start_voice("none", str(tmp_path / "b.wav"))
    await wait_until(lambda: any(e.peer_id == a.me and e.speaking for e in speaking), 5.0, "a speaking at b")
    sent = va.sent_datagrams
    va.mute()
    assert va.muted
    await wait_until(lambda: any(s.state.audio_muted for s in states), 5.0, "mute state at b")
    await asyncio.sleep(1.0)
    assert va.sent_datagrams == sent  # nothing sent while muted
    await wait_until(lambda: not speaking[-1].speaking, 3.0, "a silent at b")
    muted_at = len(read_wav(tmp_path / "b.wav"))  # the WAV grows as b plays
    await asyncio.sleep(1.0)
    va.mute(False)
    await wait_until(lambda: not states[-1].state.audio_muted, 5.0, "unmute state at b")
    await asyncio.sleep(2.0)
    vb.set_volume(a.me, 0.5)
    await asyncio.sleep(1.5)
    await b.stop_voice()
    watcher.cancel()
    pcm = read_wav(tmp_path / "b.wav")
    assert band_rms(pcm[muted_at : muted_at + RATE // 2], 440.0) < TONE_RMS * 0.01  # silence while muted
    assert band_rms(pcm[-RATE * 5 // 2 : -RATE * 3 // 2], 440.0) == pytest.approx(TONE_RMS, rel=0.15)
    assert band_rms(pcm[-RATE:], 440.0) == pytest.approx(TONE_RMS * 0.5, rel=0.15)  # volume 0.5
    with pytest.raises(AudioError):
        vb.set_volume(a.me, 10.0)


async def test_hostile_media_packets_change_nothing_but_counters(nodes: list[Node], tmp_path: Path) -> None:
    a, b = await channel_of(nodes, 2)
    va = await a.start_voice("tone:440", "none")
    vb = await b.start_voice("none", str(tmp_path / "b.wav"))
    await wait_until(lambda: len(vb.stats()) == 1, 5.0, "b receiving")
    await asyncio.sleep(1.0)
    soon = (va.sender._sequence + 10) & 0xFFFFFFFF  # a slot of the live stream, 200 ms ahead
    conn = a._connections[b.me]
    encode = hotpaths.packet.encode_packet
    receiver = vb.receivers()[a.me]
    jumps_before = receiver.jitter.stats()["jumps"]
    hostile = [
        b"\x01",  # shorter than any header
        b"\x01\x00" + bytes(5),  # truncated header
        b"\x09\x00" + bytes(20),  # unknown version
        encode(VOICE_STREAM, 5, 0, 0, 2, 0, b"xx"),  # voice is never fragmented
        encode(VOICE_STREAM, 5, 0, 1, 0x3, 0, b""),  # fragment index beyond count... of an empty payload
        encode(
            VOICE_STREAM, soon, (va.sender._timestamp + 9600) & 0xFFFFFFFF, 0, 1, 0, pack(b"\xff" * 1100)
        ),  # garbage "Opus", well framed (the stream is offered as opus-red)
        encode(VOICE_STREAM, soon, 0, 0, 1, 0, b"\x02\x00\x05abc"),  # a RED framing that does not add up
        encode(7, 1, 1, 0, 1, 0, b"x"),  # a stream nobody offered
    ]
    # Far-away sequence numbers and timestamps (a wrap, a jump), twice: not enough to reset the stream.
    for seq, ts in ((0xFFFFFFF0, 0), (0x7FFFFFFF, 0x7FFFFFFF)):
        hostile.append(encode(VOICE_STREAM, seq, ts, 0, 1, 0, pack(b"\xf8\xff\xfe")))
    before = conn.stats.datagrams_sent
    dropped_at_b = b._connections[a.me].stats.datagrams_dropped
    for data in hostile:
        conn.send_datagram(data)
    await asyncio.sleep(1.5)
    assert conn.stats.datagrams_sent - before >= len(hostile) - 1
    stats = receiver.stats(0.0)
    assert stats.malformed >= 5
    assert stats.decode_errors == 1
    assert receiver.reception.strays == 2 and stats.loss_pct < 50  # strays are not losses
    assert receiver.jitter.stats()["jumps"] - jumps_before >= 2
    assert b._connections[a.me].stats.datagrams_dropped > dropped_at_b  # stream 7: dropped by the transport
    await asyncio.sleep(1.0)
    await b.stop_voice()
    pcm = read_wav(tmp_path / "b.wav")[-RATE:]
    assert band_rms(pcm, 440.0) == pytest.approx(TONE_RMS, rel=0.15)  # the call went on
    assert longest_gap(pcm, TONE_RMS * 0.1) == 0  # a concealed frame is quieter, never silent


async def test_media_stats_events_and_clear_errors(nodes: list[Node], tmp_path: Path) -> None:
    a, b = await channel_of(nodes, 2)
    seen: list[MediaStats] = []

    async def watch() -> None:
        async for event in b.events():
            if isinstance(event, MediaStats):
                seen.append(event)

    watcher = asyncio.ensure_future(watch())
    with pytest.raises(AudioError, match="no such WAV file"):
        await a.start_voice(str(tmp_path / "missing.wav"), "none")
    with pytest.raises(AudioError, match="unknown audio input"):
        await a.start_voice("microphone", "none")
    with pytest.raises(AudioError, match="tone"):
        await a.start_voice("tone:loud", "none")
    assert a.voice is None
    await a.start_voice("tone", "none")
    with pytest.raises(BiscError, match="already on"):
        await a.start_voice("tone", "none")
    await b.start_voice("none", "none")
    await wait_until(lambda: len(seen) >= 2, 8.0, "media_stats at b")
    watcher.cancel()
    last = seen[-1]
    assert last.peer_id == a.me and last.name == "v0"
    assert last.stats.packets > 50 and last.stats.bitrate_kbps > 10
    assert last.out_loss_pct == -1.0  # b sends nothing, so nobody reports on b's audio
    assert last.red_copies == 0 and last.stats.recovered == 0  # loopback loses nothing: no copies
    # A peer that leaves the call: its stream stops, the other keeps running.
    await a.stop_voice()
    await wait_until(lambda: not b.voice or not b.voice.stats(), 5.0, "a's stream dropped at b")


def test_packet_header_layout_is_what_the_voice_path_expects() -> None:
    # Byte 1 routes datagrams to the voice handler: the header must keep it there.
    data = hotpaths.packet.encode_packet(VOICE_STREAM, 1, 2, 0, 1, 0, b"p")
    assert data[1] == VOICE_STREAM and struct.unpack(">I", data[3:7])[0] == 1


async def test_microphone_can_be_started_and_stopped_mid_call(nodes: list[Node], tmp_path: Path) -> None:
    a, b = await channel_of(nodes, 2)
    heard: list[SpeakingChanged] = []

    async def watch() -> None:
        async for event in b.events():
            if isinstance(event, SpeakingChanged) and event.peer_id == a.me:
                heard.append(event)

    watcher = asyncio.ensure_future(watch())
    va = await a.start_voice("none", "none")  # listening only
    vb = await b.start_voice("none", str(tmp_path / "b.wav"))
    await asyncio.sleep(0.5)
    assert not vb.stats() and not va.sending
    await va.set_input("tone:440")
    await wait_until(lambda: len(vb.stats()) == 1, 5.0, "b receives a's new input")
    await wait_until(lambda: vb.stats()[a.me].packets > 100, 5.0, "two seconds of it")
    assert heard and heard[-1].speaking
    await va.set_input("none")  # mid-word: a's stream goes, and with it a's speaking mark at b
    await wait_until(lambda: not vb.stats(), 5.0, "b dropped the stopped stream")
    await wait_until(lambda: not heard[-1].speaking, 3.0, "a no longer speaking at b")
    watcher.cancel()
    sent = va.sent_datagrams
    await asyncio.sleep(0.5)
    assert va.sent_datagrams == sent
    with pytest.raises(AudioError):
        await va.set_input("nosuch.wav")
    await b.stop_voice()
    pcm = read_wav(tmp_path / "b.wav")
    assert abs(peak_hz(pcm) - 440.0) < 3


async def test_dtx_call_sends_little_in_silence_and_keeps_the_speech(
    nodes: list[Node], tmp_path: Path
) -> None:
    """--dtx / start_voice(dtx=True): speech, 2 s of silence, speech again; the silence costs a
    fraction of the bytes, nothing counts as lost, and both stretches of speech arrive intact."""
    import wave

    t = np.arange(RATE) / RATE
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)
    speech_gap_speech = np.concatenate([tone, np.zeros(2 * RATE, dtype=np.int16), tone, tone])
    source = tmp_path / "talk.wav"
    with wave.open(str(source), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(speech_gap_speech.tobytes())
    a, b = await channel_of(nodes, 2)
    va = await a.start_voice(str(source), "none", dtx=True)
    vb = await b.start_voice("none", str(tmp_path / "heard.wav"))
    assert va.sender.encoder.dtx
    sizes: list[tuple[float, int]] = []  # (seconds into the file, payload bytes) of what A sends
    encode = va.sender.encoder.encode

    def watched(pcm: object) -> bytes:
        packet = encode(pcm)  # type: ignore[arg-type]
        sizes.append((len(sizes) * 0.02, len(packet)))
        return packet

    va.sender.encoder.encode = watched  # type: ignore[method-assign]
    await wait_until(lambda: len(sizes) >= 240, 15.0, "A to send the whole file")
    await asyncio.sleep(1.0)
    stats = vb.stats()[a.me]
    await a.stop_voice()
    await b.stop_voice()
    speech = [n for s, n in sizes if s < 0.9]
    quiet = [n for s, n in sizes if 1.4 < s < 2.9]
    assert sum(quiet) / len(quiet) < 0.1 * sum(speech) / len(speech), (speech[:5], quiet[:20])
    assert stats.loss_pct == 0.0 and stats.decode_errors == 0, stats
    pcm = read_wav(tmp_path / "heard.wav")
    loud = [
        i for i in range(0, len(pcm) - 960, 960) if np.sqrt(np.mean(pcm[i : i + 960] ** 2)) > TONE_RMS * 0.5
    ]
    assert loud, "no speech was heard"
    assert abs(peak_hz(pcm[loud[-1] - 40 * 960 : loud[-1]]) - 440.0) < 5  # the speech after the silence
