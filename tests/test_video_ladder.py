"""The resolution ladder (sans-IO): rungs for an estimate, hysteresis, the voice reserve, the source's
shape, quality caps, and screens that keep their sharpness."""

from __future__ import annotations

import pytest

from bisc.media.video_ladder import (
    AUDIO_RESERVE,
    LADDER,
    UP_HOLD,
    Ladder,
    fit,
    quality_max_height,
)


def settle(ladder: Ladder, bps: int, start: float = 0.0, reserve: int = 0) -> tuple[float, str]:
    """Feed a steady estimate long enough for every climb it allows; the time after and the rung."""
    now = start
    for _ in range(len(LADDER) * 2 + 2):
        ladder.update(bps, now, reserve)
        now += UP_HOLD + 0.1
    return now, ladder.update(bps, now, reserve).rung


def test_rungs_follow_the_estimate_and_hold_before_climbing() -> None:
    ladder = Ladder(1920, 1080, 30.0)
    first = ladder.update(600_000, 0.0)
    assert (first.width, first.height, first.rung) == (640, 360, "360p")
    # 3 Mb/s allows 720p, but only once it has lasted UP_HOLD seconds.
    assert ladder.update(3_000_000, 1.0).rung == "360p"
    assert ladder.update(3_000_000, 1.0 + UP_HOLD / 2).rung == "360p"
    assert ladder.update(3_000_000, 1.0 + UP_HOLD + 0.01).rung == "720p"
    # A dip resets the hold; a steady estimate climbs on to 1080p.
    assert ladder.update(1_000_000, 10.0).rung == "720p"  # above 0.7 x 1.2 Mb/s: no step down
    _, rung = settle(ladder, 4_000_000, 11.0)
    assert rung == "1080p"
    # Steps down are at once, as far as needed.
    target = ladder.update(100_000, 60.0)
    assert target.rung == "180p" and (target.width, target.height) == (320, 180)
    assert target.bitrate <= LADDER[0].max_bps


def test_bitrate_stays_within_the_rung_and_frame_rate_drops_below_its_floor() -> None:
    ladder = Ladder(1280, 720, 30.0)
    at_ceiling = ladder.update(5_000_000, 0.0)  # still 360p: its ceiling, not the estimate
    assert at_ceiling.bitrate == LADDER[1].max_bps and at_ceiling.fps == 30.0
    starved = ladder.update(240_000, 1.0)  # under the 360p floor, above the step-down point
    assert starved.rung == "360p" and starved.fps == 15.0
    assert starved.bitrate >= LADDER[1].min_bps // 2


def test_voice_reserve_comes_first() -> None:
    with_voice, without = Ladder(1280, 720, 30.0), Ladder(1280, 720, 30.0)
    a = with_voice.update(600_000, 0.0, AUDIO_RESERVE)
    b = without.update(600_000, 0.0)
    assert a.bitrate == b.bitrate - AUDIO_RESERVE


def test_never_above_the_source() -> None:
    ladder = Ladder(640, 360, 30.0)
    _, rung = settle(ladder, 10_000_000)
    assert rung == "360p"
    small = Ladder(160, 90, 15.0).update(10_000_000, 0.0)
    assert (small.width, small.height) == (160, 90)


@pytest.mark.parametrize(
    ("source", "bps", "expected"),
    [
        ((640, 480), 600_000, (554, 416)),  # 4:3 keeps 4:3 at 360p's pixel count
        ((1440, 1080), 3_000_000, (1108, 830)),  # a 4:3 1080p camera at 720p's pixel count
        ((720, 1280), 3_000_000, (720, 1280)),  # portrait phone camera: 720p's pixels, upright
        ((2560, 1080), 10_000_000, (2216, 934)),  # ultrawide: 1080p's pixels, still 64:27
    ],
)
def test_pictures_keep_the_source_shape(source: tuple[int, int], bps: int, expected: tuple[int, int]) -> None:
    ladder = Ladder(*source, 30.0)
    _, _rung = settle(ladder, bps)
    target = ladder.update(bps, 1000.0)
    assert (target.width, target.height) == expected
    assert abs(target.width / target.height - source[0] / source[1]) < 0.01
    assert target.width % 2 == 0 and target.height % 2 == 0


def test_quality_caps_the_rung() -> None:
    assert [quality_max_height(p) for p in ("auto", "low", "standard", "high")] == [None, 360, 720, 1080]
    with pytest.raises(ValueError, match="one of auto, low, standard, high"):
        quality_max_height("ultra")
    for cap, top in ((360, "360p"), (720, "720p"), (1080, "1080p"), (None, "1080p")):
        _, rung = settle(Ladder(1920, 1080, 30.0, max_height=cap), 20_000_000)
        assert rung == top, cap


def test_screens_keep_resolution_and_shape_and_give_up_frame_rate() -> None:
    wide = Ladder(3440, 1440, 30.0, screen=True)
    rich, poor, starved = (wide.update(bps, 0.0) for bps in (2_000_000, 500_000, 100_000))
    assert (rich.width, rich.height) == (1920, 804)  # fits 1920x1080, still 43:18
    assert (rich.fps, poor.fps, starved.fps) == (15.0, 5.0, 2.0)
    assert poor.height == rich.height  # sharpness kept
    tall = Ladder(1200, 1920, 30.0, screen=True).update(2_000_000, 0.0)
    assert (tall.width, tall.height) == (674, 1080)
    capped = Ladder(2560, 1600, 30.0, screen=True, max_height=720).update(2_000_000, 0.0)
    assert (capped.width, capped.height) == (1152, 720)


def test_fit_never_upscales() -> None:
    assert fit(800, 600, 1920, 1080) == (800, 600)
    assert fit(3840, 2160, 1920, 1080) == (1920, 1080)
    assert fit(3, 3, 1920, 1080) == (2, 2)
