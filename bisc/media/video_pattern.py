"""A synthetic moving test pattern whose pixels carry a frame counter and the capture time.

The stamp is a band of 4 x 24 black/white cells across the top of the picture (a sixth of its height)
holding 96 bits: the counter (32), the capture time in wall-clock milliseconds (48) and a CRC-16 of both.
Cells are large (13x7 px at 180p) and drawn in luma only with neutral chroma, so they survive chroma
subsampling and lossy compression; :func:`read_pattern_stamp` samples the middle of each cell and the CRC
turns a misread into ``None`` rather than a wrong number.

Below the band: colour bars, a horizontal luma ramp and a box sweeping across, so encoders see both
static detail and motion (a realistic mix, unlike noise).
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Callable

import numpy as np

from bisc.media.video_types import Image, PixelFormat, VideoCodecError, VideoFrameIn, check_size

STAMP_ROWS = 4
STAMP_COLS = 24
_BAND_DIVISOR = 24  # each stamp row is height/24 tall: the band is 4/24 = 1/6 of the picture
_BITS = STAMP_ROWS * STAMP_COLS  # 32 counter + 48 time + 16 CRC
_BLACK, _WHITE = 16, 235  # limited-range luma extremes
# Colour bars (Y, U, V) in limited range: white, yellow, cyan, green, magenta, red, blue, black.
_BARS = np.array(
    [[180, 128, 128], [168, 44, 136], [145, 147, 44], [133, 63, 52], [63, 193, 204], [51, 109, 212],
     [28, 212, 120], [16, 128, 128]],
    dtype=np.uint8,
)  # fmt: skip


def _stamp_bits(counter: int, capture_ms: int) -> Image:
    payload = (counter & 0xFFFFFFFF).to_bytes(4, "big") + (capture_ms & (2**48 - 1)).to_bytes(6, "big")
    crc = binascii.crc_hqx(payload, 0xFFFF)
    raw = np.frombuffer(payload + crc.to_bytes(2, "big"), dtype=np.uint8)
    return np.unpackbits(raw)


def _cell_edges(size: int, cells: int) -> list[int]:
    return [i * size // cells for i in range(cells + 1)]


def _band_rows(height: int) -> list[int]:
    return [r * height // _BAND_DIVISOR for r in range(STAMP_ROWS + 1)]


def draw_stamp(y_plane: Image, counter: int, capture_ms: int) -> None:
    """Draw the stamp into a luma plane (in place). Chroma under the band must be neutral (128)."""
    h, w = y_plane.shape
    bits = _stamp_bits(counter, capture_ms).reshape(STAMP_ROWS, STAMP_COLS)
    xs, ys = _cell_edges(w, STAMP_COLS), _band_rows(h)
    # Build one row of cells per stamp row, then broadcast it down the row's height.
    for r in range(STAMP_ROWS):
        line = np.repeat(np.where(bits[r] == 1, _WHITE, _BLACK).astype(np.uint8), np.diff(xs))
        y_plane[ys[r] : ys[r + 1]] = line


def read_pattern_stamp(image: Image, pixel_format: PixelFormat = "rgb24") -> tuple[int, int] | None:
    """``(counter, capture_time_ms)`` from a (decoded) pattern picture, or None when unreadable.

    ``image`` is a decoder output in ``pixel_format`` (rgb24/bgr24/rgba/bgra or yuv420p); it may have
    been scaled (the stamp is proportional to the picture).
    """
    if pixel_format == "yuv420p":
        if image.ndim != 2:
            return None
        luma = image[: image.shape[0] * 2 // 3].astype(np.float32)
    else:
        if image.ndim != 3 or image.shape[2] < 3:
            return None
        luma = image[:, :, :3].astype(np.float32).mean(axis=2)
    h, w = luma.shape
    if h < _BAND_DIVISOR * 2 or w < STAMP_COLS * 2:
        return None
    xs, ys = _cell_edges(w, STAMP_COLS), _band_rows(h)
    bits = np.zeros(_BITS, dtype=np.uint8)
    for r in range(STAMP_ROWS):
        y0, y1 = ys[r], ys[r + 1]
        cy0, cy1 = y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4  # the middle half: away from ringing at edges
        rows = luma[cy0 : max(cy1, cy0 + 1)].mean(axis=0)
        for c in range(STAMP_COLS):
            x0, x1 = xs[c], xs[c + 1]
            cx0, cx1 = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
            bits[r * STAMP_COLS + c] = rows[cx0 : max(cx1, cx0 + 1)].mean() > (_BLACK + _WHITE) / 2
    raw = np.packbits(bits).tobytes()
    if binascii.crc_hqx(raw[:10], 0xFFFF) != int.from_bytes(raw[10:12], "big"):
        return None
    return int.from_bytes(raw[:4], "big"), int.from_bytes(raw[4:10], "big")


class PatternSource:
    """A moving test pattern in yuv420p, ``fps`` nominal (it does not pace: the caller does).

    Frame ``n`` carries the counter ``start + n`` and its capture time; ``clock`` (default ``time.time``)
    can be replaced for deterministic tests.
    """

    def __init__(
        self, width: int = 640, height: int = 360, fps: float = 30.0, start: int = 0, noise: int = 3
    ) -> None:
        check_size(width, height)
        if height < _BAND_DIVISOR * 2 or width < STAMP_COLS * 2:
            raise VideoCodecError(f"the test pattern needs at least {STAMP_COLS * 2}x{_BAND_DIVISOR * 2}")
        if not 0 < fps <= 240:
            raise VideoCodecError(f"fps must be within (0, 240], got {fps}")
        self.width, self.height, self.fps = width, height, fps
        self.counter = start
        self.clock: Callable[[], float] = time.time
        self._closed = False
        self._background = self._draw_background()
        self._box = max(8, (height // 6) & ~1)
        if not 0 <= noise <= 32:
            raise VideoCodecError(f"noise must be within 0..32, got {noise}")
        # Camera-like sensor noise (luma, ±noise) from a few precomputed fields, cycled: it is what makes
        # the bitrate matter (a clean synthetic picture compresses to almost nothing at any rate).
        rng = np.random.default_rng(1234)
        self._noise = [
            rng.integers(-noise, noise + 1, size=(height, width), dtype=np.int16)
            for _ in range(7 if noise else 0)
        ]

    def _draw_background(self) -> Image:
        w, h = self.width, self.height
        frame = np.empty((h * 3 // 2, w), dtype=np.uint8)
        y, cw, ch = frame[:h], w // 2, h // 2
        u = frame[h:].reshape(-1)[: cw * ch].reshape(ch, cw)
        v = frame[h:].reshape(-1)[cw * ch :].reshape(ch, cw)
        band = _band_rows(h)[-1]
        split = band + (h - band) * 2 // 3
        bar = (np.arange(w) * len(_BARS) // w).astype(np.intp)
        y[:split] = _BARS[bar, 0]
        y[split:] = np.linspace(_BLACK, _WHITE, w).astype(np.uint8)
        u[:] = _BARS[bar[::2], 1]
        v[:] = _BARS[bar[::2], 2]
        u[split // 2 :] = v[split // 2 :] = 128
        u[: (band + 1) // 2] = v[: (band + 1) // 2] = 128  # neutral chroma under the stamp
        return frame

    def read_frame(self) -> VideoFrameIn:
        if self._closed:
            raise VideoCodecError("the pattern source is closed")
        t = self.clock()
        frame = self._background.copy()
        w, h, n = self.width, self.height, self.counter
        y = frame[:h]
        band = _band_rows(h)[-1]
        # A box sweeping left to right, two pixels per frame at 360p (scaled), bouncing at the ends.
        span = w - self._box
        step = max(1, w // 320)
        pos = (n * step) % (2 * span)
        x = pos if pos < span else 2 * span - pos
        top = band + (h - band - self._box) // 2
        y[top : top + self._box, x : x + self._box] = 255 - y[top : top + self._box, x : x + self._box]
        if self._noise:
            noisy = y.astype(np.int16) + self._noise[n % len(self._noise)]
            np.clip(noisy, 0, 255, out=noisy)
            y[:] = noisy
        draw_stamp(y, n, round(t * 1000))
        self.counter += 1
        return VideoFrameIn(frame, "yuv420p", t)

    def close(self) -> None:
        self._closed = True
