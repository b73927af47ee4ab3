"""Video calls over real aioquic connections on loopback, through the public API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import numpy as np
import pytest

from bisc import hotpaths
from bisc.app import Node
from bisc.app.channel import Channel
from bisc.app.video import codec_for
from bisc.codec.packet import FLAG_KEYFRAME
from bisc.media.video_codec import psnr
from bisc.media.video_pattern import PatternSource, read_pattern_stamp
from bisc.media.video_types import DecodedFrame
from bisc.proto.media_control import CAMERA_STREAM
from tests.test_channels import full_mesh, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def channels(tmp_path: Path) -> AsyncIterator[list[Channel]]:
    nodes = [
        await Node(data_dir=tmp_path / f"n{i}", display_name=f"v{i}", bind="127.0.0.1:0").start()
        for i in range(3)
    ]
    first = await nodes[0].create_channel()
    chans = [first, *[await n.join(first.ticket()) for n in nodes[1:]]]
    await wait_until(lambda: full_mesh(chans), 10.0, "full mesh", chans)
    yield chans
    for node in nodes:
        await node.close()


def reference_rgb(picture: DecodedFrame, size: tuple[int, int]) -> np.ndarray:
    """The pattern frame the picture was made from (by its counter) at the source `size`, scaled as the
    sender's encoder scales it to the picture's size, in RGB."""
    stamp = read_pattern_stamp(picture.data, picture.pixel_format)
    assert stamp is not None
    source = PatternSource(size[0], size[1], 30.0, start=stamp[0])
    source.clock = lambda: stamp[1] / 1000.0
    frame = source.read_frame()
    yuv = av.VideoFrame.from_ndarray(frame.data, format="yuv420p")
    scaled = yuv.reformat(width=picture.width, height=picture.height, format="rgb24")
    rgb: np.ndarray = scaled.to_ndarray()
    return rgb


async def test_pattern_from_one_peer_reaches_the_others_intact(channels: list[Channel]) -> None:
    a, b, c = channels
    vb = await b.start_video(read_stamps=True)
    vc = await c.start_video(read_stamps=True)
    await a.start_camera(PatternSource(640, 360, 30.0), size=(640, 360), fps=30.0)

    def pictures(v: object) -> int:
        frames = vb.frames() if v is vb else vc.frames()
        return sum(version for version, _ in frames.values())

    await wait_until(lambda: pictures(vb) > 60 and pictures(vc) > 60, 15.0, "two seconds of video at b and c")
    for call in (vb, vc):
        counters = []
        for _ in range(5):
            _version, picture = call.frames()[(a.me, CAMERA_STREAM)]
            assert picture is not None
            stamp = read_pattern_stamp(picture.data, picture.pixel_format)
            assert stamp is not None, "the frame counter did not survive the trip"
            counters.append(stamp[0])
            assert psnr(picture.data, reference_rgb(picture, (640, 360))) > 28.0
            await asyncio.sleep(0.1)
        assert counters == sorted(counters) and counters[-1] > counters[0]  # frames keep coming, in order
        stats = call.stats()[(a.me, CAMERA_STREAM)]
        assert stats.fps > 20 and stats.decode_errors == 0 and stats.freezes == 0
        assert 0 < stats.e2e_ms < 200  # glass to glass on loopback, read from the pixels


async def test_hostile_video_datagrams_change_only_counters(channels: list[Channel]) -> None:
    a, b, _ = channels
    vb = await b.start_video()
    await a.start_camera(PatternSource(320, 180, 30.0), size=(320, 180), fps=30.0)
    await wait_until(lambda: (a.me, CAMERA_STREAM) in vb.frames(), 10.0, "b receives a's camera")
    receiver = vb.receivers()[(a.me, CAMERA_STREAM)]
    await wait_until(lambda: receiver.latest()[0] > 10, 10.0, "pictures at b")
    conn = a._connections[b.me]
    encode = hotpaths.packet.encode_packet
    hostile = [
        b"\x01\x01",  # truncated
        encode(
            CAMERA_STREAM, 7, 0, 0, 0xFFFF, 0, b"x" * 100
        ),  # the first of 65535 fragments: never completes
        encode(CAMERA_STREAM, 1 << 30, 5, 0, 1, FLAG_KEYFRAME, b"\x00garbage keyframe" * 10),  # from nowhere
        encode(CAMERA_STREAM, (1 << 30) + 1, 6, 0, 1, 0, bytes(300)),  # garbage delta frame
    ]
    for data in hostile:
        conn.send_datagram(data)
    # A frame far beyond any sane size: its fragments are refused, not buffered.
    for i in range(50):
        conn.send_datagram(encode(CAMERA_STREAM, 5000 + i, 9, i, 4000, 0, b"y" * 1000))
    await asyncio.sleep(1.0)
    before = receiver.latest()[0]
    await wait_until(
        lambda: receiver.latest()[0] > before + 15, 10.0, "video keeps flowing after the garbage"
    )
    stats = receiver.stats(0.0)
    assert stats.malformed >= 1
    assert receiver.reassembler.in_flight <= receiver.reassembler.max_frames_in_flight
    assert receiver.reassembler.buffered_bytes < 8 * 1024 * 1024
    assert (
        stats.decode_errors >= 1 or receiver.buffer.stats()["late"] + receiver.buffer.stats()["skipped"] > 0
    )


async def test_a_peer_stream_is_received_only_while_subscribed(channels: list[Channel]) -> None:
    a, b, c = channels
    vb = await b.start_video()
    await c.start_video()
    await a.start_camera(PatternSource(320, 180, 30.0), size=(320, 180), fps=30.0)
    taking = a.media.peers_taking
    await wait_until(lambda: set(taking(CAMERA_STREAM)) == {b.me, c.me}, 10.0, "b and c take it")
    vb.subscribe(a.me, CAMERA_STREAM, False)
    await wait_until(lambda: a.media.peers_taking(CAMERA_STREAM) == [c.me], 5.0, "a stops sending to b")
    assert (a.me, CAMERA_STREAM) not in vb.frames()
    vb.subscribe(a.me, CAMERA_STREAM, True)
    await wait_until(lambda: b.me in a.media.peers_taking(CAMERA_STREAM), 5.0, "a sends to b again")
    await wait_until(
        lambda: vb.frames().get((a.me, CAMERA_STREAM), (0, None))[0] > 10, 10.0, "b decodes a's camera again"
    )


async def test_a_new_viewer_gets_a_keyframe_at_once_in_datagrams_that_fit(channels: list[Channel]) -> None:
    """Before any peer takes a stream, its fragments are already sized for the real links (aioquic takes
    1170-byte datagrams, not 1200); a viewer that starts taking it gets a keyframe at once rather than at
    the next periodic one (every 3 s), and then decodes every picture."""
    a, b, _c = channels
    await a.start_camera(PatternSource(1280, 720, 30.0), size=(1280, 720), fps=30.0)
    links = [conn.max_datagram_size for conn in a._connections.values()]
    assert len(links) == 2 and a.media.max_datagram_size() == min(links) < 1200
    sender = a.video.sender(CAMERA_STREAM) if a.video else None
    assert sender is not None
    await asyncio.sleep(0.5)  # nobody takes it yet: nothing encoded is sent
    before = sender.keyframes
    vb = await b.start_video()
    await wait_until(lambda: b.me in a.media.peers_taking(CAMERA_STREAM), 5.0, "b takes a's camera")
    taken = asyncio.get_running_loop().time()
    await wait_until(lambda: sender.keyframes > before, 1.0, "a keyframe for the new viewer")

    def pictures() -> int:
        return vb.frames().get((a.me, CAMERA_STREAM), (0, None))[0]

    await wait_until(lambda: pictures() > 0, 3.0, "b's first picture")
    first = asyncio.get_running_loop().time() - taken
    assert first < 1.0, f"first picture after {first:.2f} s"


def test_codec_choice_needs_every_member() -> None:
    both, vp8_only = ("chat", "video/vp8", "video/h264"), ("chat", "video/vp8")
    assert codec_for("h264", both, [both, both]) == "h264"
    assert codec_for("h264", both, []) == "h264"  # alone: nobody to ask
    assert codec_for("h264", both, [both, vp8_only]) == "vp8"
    assert codec_for("h264", vp8_only, [both]) == "vp8"  # not ours to send
    assert codec_for("h264", both, [("chat",)]) == "vp8"  # a peer without video at all
    assert codec_for("vp8", both, [both]) == "vp8"


async def test_h264_only_while_every_member_takes_it(tmp_path: Path) -> None:
    """H.264 when both sides offer it: a and b both list it, so a's camera goes out in H.264; c, a
    member whose build has no H.264 (its capability list says so), joins and a falls back to VP8 for
    everyone; when c leaves, a goes back to H.264. Every picture decodes throughout."""
    nodes = [
        await Node(data_dir=tmp_path / f"n{i}", display_name=f"h{i}", bind="127.0.0.1:0").start()
        for i in range(3)
    ]
    try:
        a_node, b_node, c_node = nodes
        assert "video/h264" in a_node.capabilities and "video/vp8" in a_node.capabilities
        c_node.capabilities = tuple(cap for cap in c_node.capabilities if cap != "video/h264")
        a = await a_node.create_channel()
        b = await b_node.join(a.ticket())
        await wait_until(lambda: full_mesh([a, b]), 10.0, "a and b meshed")
        vb = await b.start_video()
        await a.start_camera(PatternSource(320, 180, 30.0), size=(320, 180), fps=30.0, codec="h264")
        sender = a.video.sender(CAMERA_STREAM) if a.video else None
        assert sender is not None and sender.codec == "h264"

        def b_codec() -> str | None:
            receiver = vb.receivers().get((a.me, CAMERA_STREAM))
            if receiver is None or receiver.stats(time.monotonic()).frames <= 5:
                return None
            return receiver.codec

        await wait_until(lambda: b_codec() == "h264", 10.0, "b decoding a's H.264")

        c = await c_node.join(a.ticket())
        vc = await c.start_video()
        await wait_until(lambda: sender.codec == "vp8", 10.0, "a falling back to VP8 for c")
        await wait_until(lambda: b_codec() == "vp8", 10.0, "b decoding a's VP8")
        await wait_until(
            lambda: vc.frames().get((a.me, CAMERA_STREAM), (0, None))[0] > 5, 10.0, "c decoding a's VP8"
        )
        await c.leave()
        await wait_until(lambda: sender.codec == "h264", 15.0, "a back to H.264 once c left")
        await wait_until(lambda: b_codec() == "h264", 10.0, "b decoding H.264 again")
    finally:
        for node in nodes:
            await node.close()
