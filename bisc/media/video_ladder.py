"""The resolution ladder: what to send for a given bandwidth estimate (sans-IO).

Rungs from the issue: 1080p at 2.5-4 Mb/s, 720p at 1.2-2.5, 360p at 0.3-0.7,
180p at 0.05-0.2. Between rungs the lower one is kept at its ceiling (a
picture that is too big for its bitrate looks worse than a smaller one).
Steps down happen at once, below DOWN_FACTOR of the rung's floor; steps up
only after the estimate has allowed the next rung for `UP_HOLD` seconds, so
a noisy estimate does not flap the resolution (each change costs a
keyframe). "Allowed" is judged against what this rung can show: a
receiver's estimate cannot exceed about 1.5 times what it receives, so a
rung sending at its ceiling must be able to climb from 1.2 times that. Screen content keeps its
resolution (text must stay sharp) and gives up frame rate instead.

A rung is a number of pixels (its 16:9 size); the picture keeps the source's
shape (a 4:3 or portrait camera is not stretched). A quality preset caps the
rung the ladder may reach (`QUALITY_MAX_HEIGHT`), for people who would rather
save bandwidth or CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

UP_HOLD = 3.0  # seconds the estimate must allow the next rung before climbing
DOWN_FACTOR = 0.7  # below this fraction of the rung's floor, step down
AUDIO_RESERVE = 100_000  # b/s left for voice when it is on, before video takes its share ("audio first")
MAX_SCREEN = (1920, 1080)  # a shared screen is scaled to fit this box, keeping its shape

# Settings' video quality presets: the tallest picture sent (None: as far as the network allows).
QUALITY_MAX_HEIGHT: dict[str, int | None] = {"auto": None, "low": 360, "standard": 720, "high": 1080}


@dataclass(frozen=True)
class Rung:
    name: str
    width: int
    height: int
    min_bps: int
    max_bps: int


LADDER = (
    Rung("180p", 320, 180, 50_000, 200_000),
    Rung("360p", 640, 360, 300_000, 700_000),
    Rung("720p", 1280, 720, 1_200_000, 2_500_000),
    Rung("1080p", 1920, 1080, 2_500_000, 4_000_000),
)


@dataclass(frozen=True)
class Target:
    width: int
    height: int
    fps: float
    bitrate: int
    rung: str


def quality_max_height(preset: str) -> int | None:
    """The height cap of a video quality preset (ValueError names the presets)."""
    if preset not in QUALITY_MAX_HEIGHT:
        raise ValueError(f"video quality must be one of {', '.join(QUALITY_MAX_HEIGHT)}, not {preset!r}")
    return QUALITY_MAX_HEIGHT[preset]


def fit(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """`width` x `height` scaled down (never up) to fit the box, keeping its shape; even sides."""
    scale = min(1.0, box_width / width, box_height / height)
    return max(2, round(width * scale) & ~1), max(2, round(height * scale) & ~1)


class Ladder:
    def __init__(
        self,
        source_width: int,
        source_height: int,
        fps: float,
        *,
        screen: bool = False,
        max_height: int | None = None,
    ) -> None:
        self.source = (source_width, source_height)
        self.fps = fps
        self.screen = screen
        self.max_height = max_height
        # The highest rung the source can fill (never upscale) within the quality cap.
        pixels = source_width * source_height
        cap = max_height or LADDER[-1].height
        fits = [i for i, r in enumerate(LADDER) if r.width * r.height <= pixels and r.height <= cap]
        self._top = max(fits or [0])
        self._index = min(1, self._top)  # start at 360p (or less) until the estimate says more
        self._up_since: float | None = None

    @property
    def rung(self) -> Rung:
        return LADDER[self._index]

    def update(self, estimate_bps: int, now: float, reserve_bps: int = 0) -> Target:
        """The target for a bandwidth estimate, leaving reserve_bps for other media (voice)."""
        video_bps = max(LADDER[0].min_bps, estimate_bps - reserve_bps)
        if self.screen:
            return self._screen_target(video_bps)
        while self._index > 0 and video_bps < DOWN_FACTOR * LADDER[self._index].min_bps:
            self._index -= 1
            self._up_since = None
        up = self._index + 1
        if up <= self._top and video_bps >= self._climb_at(up):
            if self._up_since is None:
                self._up_since = now
            elif now - self._up_since >= UP_HOLD:
                self._index = up
                self._up_since = None
        else:
            self._up_since = None
        rung = LADDER[self._index]
        bitrate = max(rung.min_bps // 2, min(rung.max_bps, video_bps))
        fps = self.fps if video_bps >= rung.min_bps else max(5.0, self.fps / 2)
        width, height = self._sized(rung)
        return Target(width, height, fps, bitrate, rung.name)

    def _sized(self, rung: Rung) -> tuple[int, int]:
        """The source scaled to the rung's pixel count, keeping its shape."""
        w, h = self.source
        scale = min(1.0, math.sqrt(rung.width * rung.height / (w * h)))
        return max(2, round(w * scale) & ~1), max(2, round(h * scale) & ~1)

    def _climb_at(self, up: int) -> float:
        nxt, cur = LADDER[up], LADDER[up - 1]
        return max(0.8 * nxt.min_bps, min(float(nxt.min_bps), 1.2 * cur.max_bps))

    def _screen_target(self, video_bps: int) -> Target:
        box_height = MAX_SCREEN[1] if self.max_height is None else min(MAX_SCREEN[1], self.max_height)
        w, h = fit(*self.source, MAX_SCREEN[0], box_height)
        # Sharpness first: full resolution, and fewer frames when the budget is tight.
        fps = 15.0 if video_bps >= 1_000_000 else 5.0 if video_bps >= 300_000 else 2.0
        return Target(w, h, min(fps, self.fps), min(video_bps, 4_000_000), f"screen {h}p")
