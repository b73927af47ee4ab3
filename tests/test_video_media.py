"""Video media layer: VP8/H.264 round trips of the stamped test pattern, keyframes, bitrate and
resolution changes, bad input, file and camera sources, and the micro-benchmark."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import av
import numpy as np
import pytest

from bisc.media.devices import list_cameras, parse_device_list
from bisc.media.video_bench import format_table, run_video_bench
from bisc.media.video_codec import CODECS, LADDER, VideoDecoder, VideoEncoder, is_keyframe, psnr
from bisc.media.video_color import from_yuv420p, rgb_to_yuv420p_np, to_yuv420p, yuv420p_planes
from bisc.media.video_pattern import PatternSource, read_pattern_stamp
from bisc.media.video_sources import CameraSource, VideoFileSource
from bisc.media.video_types import CameraError, EncodedFrame, VideoCodecError, VideoFrameIn, VideoSourceError

FPS = 30.0
T0 = 1_750_000_000.0  # a fixed wall-clock start: stamps are deterministic
BITRATES = {"180p": 150_000, "360p": 500_000, "720p": 1_500_000}


def pattern_frames(width: int, height: int, n: int, start: int = 0) -> list[VideoFrameIn]:
    src = PatternSource(width, height, FPS, start=start)
    frames = []
    for i in range(n):
        src.clock = partial(float, T0 + (start + i) / FPS)
        frames.append(src.read_frame())
    return frames


def expected_stamp(counter: int) -> tuple[int, int]:
    return counter, round((T0 + counter / FPS) * 1000)


def encode_all(enc: VideoEncoder, frames: list[VideoFrameIn]) -> list[EncodedFrame]:
    out: list[EncodedFrame] = []
    for f in frames:
        packets = enc.encode(f)
        assert len(packets) == 1  # realtime settings: one packet per frame, no lookahead
        out.extend(packets)
    return out


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("size", ["180p", "360p", "720p"])
def test_round_trip_quality_and_stamps(codec, size):
    w, h = LADDER[size]
    frames = pattern_frames(w, h, 30)
    enc = VideoEncoder(codec, w, h, FPS, BITRATES[size])
    dec = VideoDecoder(codec)
    packets = encode_all(enc, frames)
    assert packets[0].keyframe and not any(p.keyframe for p in packets[1:])
    kbps = sum(len(p.data) for p in packets[1:]) * 8 * FPS / (len(packets) - 1) / 1000
    assert kbps < BITRATES[size] / 1000 * 1.5
    for i, (frame, packet) in enumerate(zip(frames, packets, strict=True)):
        assert packet.capture_time == frame.capture_time
        (out,) = dec.decode(packet.data)
        assert out.data.shape == (h, w, 3) and out.pixel_format == "rgb24"
        assert psnr(out.data, from_yuv420p(frame.data)) > 30.0
        assert read_pattern_stamp(out.data) == expected_stamp(i)


def test_stamp_is_none_on_other_pictures():
    assert read_pattern_stamp(np.zeros((360, 640, 3), np.uint8)) is None
    assert read_pattern_stamp(np.full((360, 640, 3), 200, np.uint8)) is None
    assert read_pattern_stamp(np.zeros((10, 10, 3), np.uint8)) is None
    (frame,) = pattern_frames(640, 360, 1, start=77)
    assert read_pattern_stamp(frame.data, "yuv420p") == expected_stamp(77)
    # A scaled copy (the receiver may show it at any size) still reads.
    big = av.VideoFrame.from_ndarray(frame.data, format="yuv420p").reformat(1280, 720, "rgb24")
    scaled = big.to_ndarray().astype(np.uint8)
    assert read_pattern_stamp(scaled) == expected_stamp(77)


@pytest.mark.parametrize("codec", CODECS)
def test_forced_keyframe_decodes_standalone(codec):
    frames = pattern_frames(640, 360, 12)
    enc = VideoEncoder(codec, 640, 360, FPS, 500_000, keyframe_interval=None)
    packets = [enc.encode(f, force_keyframe=(i == 8))[0] for i, f in enumerate(frames)]
    assert [p.keyframe for p in packets] == [i in (0, 8) for i in range(12)]
    assert all(is_keyframe(codec, p.data) == p.keyframe for p in packets)
    fresh = VideoDecoder(codec)
    assert fresh.decode(packets[7].data) == []  # a delta frame alone: dropped, keyframe needed
    assert fresh.needs_keyframe and fresh.dropped == 1
    (out,) = fresh.decode(packets[8].data)
    assert read_pattern_stamp(out.data) == expected_stamp(8)
    assert not fresh.needs_keyframe
    (out,) = fresh.decode(packets[9].data)
    assert read_pattern_stamp(out.data) == expected_stamp(9)
    enc.request_keyframe()
    (p,) = enc.encode(pattern_frames(640, 360, 1, start=12)[0])
    assert p.keyframe


def test_periodic_keyframes_follow_capture_time():
    enc = VideoEncoder("vp8", 320, 180, FPS, 150_000, keyframe_interval=1.0)
    packets = encode_all(enc, pattern_frames(320, 180, 75))
    assert [i for i, p in enumerate(packets) if p.keyframe] == [0, 30, 60]
    assert [p.pts for p in packets[:3]] == [0, 3000, 6000]  # 90 kHz clock


@pytest.mark.parametrize("codec", CODECS)
def test_set_bitrate_lowers_the_output(codec):
    frames = pattern_frames(640, 360, 90)
    enc = VideoEncoder(codec, 640, 360, FPS, 1_200_000)
    before = [len(p.data) for p in encode_all(enc, frames[:45])]
    enc.set_bitrate(250_000)
    after = [len(p.data) for p in encode_all(enc, frames[45:])]
    assert enc.reopens == 1
    # Skip the keyframes at the start of each run; compare the steady state.
    assert sum(after[15:]) < 0.5 * sum(before[15:])
    with pytest.raises(VideoCodecError):
        enc.set_bitrate(10)


@pytest.mark.parametrize("codec", CODECS)
def test_set_resolution_scales_and_restarts_with_a_keyframe(codec):
    frames = pattern_frames(640, 360, 6)
    enc = VideoEncoder(codec, 640, 360, FPS, 500_000)
    dec = VideoDecoder(codec)
    for p in encode_all(enc, frames[:3]):
        assert dec.decode(p.data)[0].data.shape == (360, 640, 3)
    enc.set_resolution(*LADDER["180p"])
    packets = encode_all(enc, frames[3:])  # still 360p input: the encoder scales
    assert packets[0].keyframe and (packets[0].width, packets[0].height) == (320, 180)
    for i, p in enumerate(packets, start=3):
        (out,) = dec.decode(p.data)
        assert (out.width, out.height) == (320, 180)
        assert read_pattern_stamp(out.data) == expected_stamp(i)
    with pytest.raises(VideoCodecError):
        enc.set_resolution(321, 180)


@pytest.mark.parametrize("codec", CODECS)
def test_garbage_raises_and_the_decoder_recovers_at_a_keyframe(codec):
    frames = pattern_frames(320, 180, 8)
    enc = VideoEncoder(codec, 320, 180, FPS, 200_000, keyframe_interval=None)
    packets = [enc.encode(f, force_keyframe=(i == 5))[0] for i, f in enumerate(frames)]
    dec = VideoDecoder(codec)
    assert len(dec.decode(packets[0].data)) == 1
    rng = np.random.default_rng(7)
    bad = [b"", bytes(rng.integers(0, 256, 2000, dtype=np.uint8)), b"\x00\x00\x01\xff" + b"\x55" * 100]
    for data in bad:
        with pytest.raises(VideoCodecError):
            dec.decode(data)
    assert dec.needs_keyframe and dec.errors == len(bad)
    assert dec.decode(packets[1].data) == []  # deltas after an error wait for the keyframe
    (out,) = dec.decode(packets[5].data)
    assert read_pattern_stamp(out.data) == expected_stamp(5)
    (out,) = dec.decode(packets[6].data)
    assert read_pattern_stamp(out.data) == expected_stamp(6)


def test_rgb_and_bgr_input_and_yuv_output():
    red = np.zeros((180, 320, 3), np.uint8)
    red[:, :, 0] = 220
    for fmt, data in (("rgb24", red), ("bgr24", red[:, :, ::-1].copy())):
        enc = VideoEncoder("h264", 320, 180, FPS, 300_000)
        dec = VideoDecoder("h264", output="rgb24")
        (out,) = dec.decode(enc.encode(VideoFrameIn(data, fmt, T0))[0].data)  # type: ignore[arg-type]
        r, g, b = out.data.reshape(-1, 3).mean(axis=0)
        assert r > 200 and g < 20 and b < 20
    enc = VideoEncoder("vp8", 320, 180, FPS, 300_000)
    (out,) = VideoDecoder("vp8", output="yuv420p").decode(enc.encode(VideoFrameIn(red, "rgb24", T0))[0].data)
    y, u, v = yuv420p_planes(out.data)
    assert out.data.shape == (270, 320) and y.shape == (180, 320) and u.shape == v.shape == (90, 160)
    assert v.mean() > 200  # red: high Cr
    # swscale and the numpy reference agree on the luma of smooth content.
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (180, 1, 3))
    diff = to_yuv420p(VideoFrameIn(ramp, "rgb24", 0.0))[:180].astype(int) - rgb_to_yuv420p_np(ramp)[:180]
    assert np.abs(diff).max() <= 2


def test_bad_frames_and_settings_are_refused():
    with pytest.raises(VideoCodecError):
        VideoFrameIn(np.zeros((361, 640), np.uint8), "yuv420p", 0.0)  # not h*3/2 rows
    with pytest.raises(VideoCodecError):
        VideoFrameIn(np.zeros((360, 640, 3), np.float32), "rgb24", 0.0)
    with pytest.raises(VideoCodecError):
        VideoFrameIn(np.zeros((360, 640, 3), np.uint8), "nv12", 0.0)  # type: ignore[arg-type]
    with pytest.raises(VideoCodecError):
        VideoEncoder("vp9", 640, 360)  # type: ignore[arg-type]
    with pytest.raises(VideoCodecError):
        VideoEncoder("vp8", 641, 360)
    with pytest.raises(VideoCodecError):
        VideoDecoder("av1")  # type: ignore[arg-type]
    with pytest.raises(VideoCodecError):
        VideoEncoder("vp8", 320, 180).encode(np.zeros((270, 320), np.uint8))  # type: ignore[arg-type]


def test_file_source_reads_and_loops(tmp_path: Path):
    path = tmp_path / "clip.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for i, f in enumerate(pattern_frames(320, 180, 5)):
            vf = av.VideoFrame.from_ndarray(f.data, format="yuv420p")
            vf.pts = i
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    src = VideoFileSource(path)
    assert (src.width, src.height) == (320, 180)
    stamps = [read_pattern_stamp(src.read_frame().data, "yuv420p") for _ in range(7)]
    assert stamps == [expected_stamp(i) for i in (0, 1, 2, 3, 4, 0, 1)]
    src.close()
    once = VideoFileSource(path, loop=False)
    for _ in range(5):
        once.read_frame()
    with pytest.raises(VideoSourceError, match="end of video"):
        once.read_frame()
    once.close()
    with pytest.raises(VideoSourceError, match="no video file"):
        VideoFileSource(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 100)
    with pytest.raises(VideoSourceError):
        VideoFileSource(tmp_path / "junk.mp4")


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="a camera is present")
def test_camera_missing_is_a_clear_error():
    with pytest.raises(CameraError, match="no camera"):
        CameraSource()
    with pytest.raises(CameraError, match="cannot open camera"):
        CameraSource("/dev/null", 320, 180, 15)


def test_bench_runs_and_reports_every_stage():
    rows = run_video_bench(sizes=["180p"], frames=6)
    stages = {(r.stage, r.codec) for r in rows}
    assert ("encode", "vp8") in stages and ("decode->rgb24", "h264") in stages
    assert ("rgb24->yuv420p swscale", "") in stages
    assert all(r.cpu_ms >= 0 for r in rows)
    assert "encode" in format_table(rows)


def test_camera_lists_from_ffmpeg_logs() -> None:
    """macOS and Windows list cameras only in FFmpeg's log: what those lines look like (FFmpeg 4-7)."""
    avfoundation = [
        "AVFoundation video devices:",
        "[0] FaceTime HD Camera",
        "[1] OBS Virtual Camera",
        "[2] Capture screen 0",
        "AVFoundation audio devices:",
        "[0] MacBook Pro Microphone",
    ]
    assert parse_device_list("avfoundation", avfoundation) == ["FaceTime HD Camera", "OBS Virtual Camera"]
    dshow_new = [
        '"Integrated Camera" (video)',
        '  Alternative name "@device_pnp_\\\\?\\usb#vid_04f2&pid_b6dd"',
        '"Microphone Array (Realtek(R) Audio)" (audio)',
        '"OBS Virtual Camera" (none)',
        '"USB Video Device" (video)',
    ]
    assert parse_device_list("dshow", dshow_new) == ["video=Integrated Camera", "video=USB Video Device"]
    dshow_old = [
        "DirectShow video devices (some may be both video and audio devices)",
        ' "Integrated Webcam"',
        '    Alternative name "@device_pnp_\\\\?\\usb#vid_0c45"',
        "DirectShow audio devices",
        ' "Microphone (Realtek High Definition Audio)"',
    ]
    assert parse_device_list("dshow", dshow_old) == ["video=Integrated Webcam"]
    assert parse_device_list("dshow", ["garbage", "", "[0] x"]) == []
    assert list_cameras("sunos5") == ([], "no camera support on sunos5")
