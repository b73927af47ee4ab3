"""The frame-level video jitter buffer: in-order release, waiting on gaps, keyframe resync."""

from __future__ import annotations

import pytest

from bisc.codec.video_jitter import MAX_BUFFERED, BufferedFrame, VideoFrameBuffer


def frame(seq: int, count: int = 3, key: bool = False, at: float = 0.0) -> BufferedFrame:
    return BufferedFrame(seq & 0xFFFFFFFF, count, seq * 10, key, bytes([seq & 0xFF]) * 4, at)


def test_in_order_frames_are_released_at_once() -> None:
    buf = VideoFrameBuffer()
    assert [f.sequence for f in buf.push(frame(100, key=True))] == [100]
    assert [f.sequence for f in buf.push(frame(103))] == [103]
    assert [f.sequence for f in buf.push(frame(106, count=1))] == [106]
    assert [f.sequence for f in buf.push(frame(107))] == [107]
    assert not buf.keyframe_wanted and buf.stats()["released"] == 4


def test_nothing_is_released_before_the_first_keyframe() -> None:
    buf = VideoFrameBuffer()
    assert buf.push(frame(0)) == [] and buf.push(frame(3)) == []
    assert buf.keyframe_wanted and buf.take_keyframe_request(0.0)
    assert not buf.take_keyframe_request(0.1)  # rate-limited
    assert buf.take_keyframe_request(0.6)
    assert [f.sequence for f in buf.push(frame(6, key=True))] == [6]
    assert buf.stats()["skipped"] == 2 and not buf.keyframe_wanted


def test_a_reordered_frame_is_waited_for() -> None:
    buf = VideoFrameBuffer(wait=0.1)
    buf.push(frame(0, key=True, at=0.0))
    assert buf.push(frame(6, at=0.01)) == []  # 3 is missing
    assert buf.next_deadline() == pytest.approx(0.11)
    assert [f.sequence for f in buf.push(frame(3, at=0.05))] == [3, 6]
    assert buf.stats()["gaps"] == 0 and not buf.keyframe_wanted


def test_a_lost_frame_skips_to_the_next_keyframe_and_asks_for_one() -> None:
    buf = VideoFrameBuffer(wait=0.1)
    buf.push(frame(0, key=True))
    buf.push(frame(6, at=0.0))
    buf.push(frame(9, at=0.02))
    assert buf.poll(0.05) == []
    assert buf.poll(0.2) == []  # the wait ran out: 6 and 9 depend on the lost 3
    assert buf.keyframe_wanted and buf.stats()["gaps"] == 1
    assert buf.take_keyframe_request(0.2)
    assert [f.sequence for f in buf.push(frame(12, key=True, at=0.3))] == [12]
    assert buf.stats()["skipped"] == 2
    assert [f.sequence for f in buf.push(frame(15, at=0.31))] == [15]


def test_late_duplicate_and_wrapping_frames() -> None:
    buf = VideoFrameBuffer()
    start = 0xFFFFFFFE
    assert len(buf.push(frame(start, count=3, key=True))) == 1
    assert [f.sequence for f in buf.push(frame(start + 3))] == [1]  # wrapped past 2**32
    assert buf.push(frame(start)) == []
    assert buf.stats()["late"] == 1
    buf.push(frame(10))
    assert buf.push(frame(10)) == []
    assert buf.stats()["duplicates"] == 1


def test_decode_failure_resyncs_at_a_keyframe() -> None:
    buf = VideoFrameBuffer()
    buf.push(frame(0, key=True))
    buf.decode_failed()
    assert buf.push(frame(3)) == []
    assert [f.sequence for f in buf.push(frame(6, key=True))] == [6]


def test_memory_is_bounded_while_waiting_for_a_keyframe() -> None:
    buf = VideoFrameBuffer()
    for i in range(MAX_BUFFERED * 3):
        assert buf.push(frame(i * 3)) == []
    assert buf.buffered <= MAX_BUFFERED
    assert buf.stats()["dropped_overflow"] > 0


def test_a_far_jump_is_a_new_stream() -> None:
    buf = VideoFrameBuffer()
    buf.push(frame(0, key=True))
    assert buf.push(frame(1 << 30)) == []  # not a gap to wait on: a restart needing a keyframe
    assert buf.keyframe_wanted
    assert [f.sequence for f in buf.push(frame((1 << 30) + 3, key=True))] == [(1 << 30) + 3]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        VideoFrameBuffer(wait=-1)
    with pytest.raises(ValueError):
        VideoFrameBuffer(request_interval=0)
