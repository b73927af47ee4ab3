"""A ticket as a QR code, drawn into a Kivy texture (no image files, no PIL)."""

from __future__ import annotations

from typing import Any

import numpy as np
import qrcode
from kivy.graphics.texture import Texture

QUIET_ZONE = 4  # modules of white around the code, as the standard asks
SCALE = 4  # texture pixels per module; the Image widget scales it without smoothing


def qr_matrix(text: str) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """The modules of `text`'s QR code (True = dark), with the quiet zone."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=QUIET_ZONE)
    code.add_data(text)
    code.make(fit=True)
    return np.array(code.get_matrix(), dtype=bool)


def qr_texture(text: str, scale: int = SCALE) -> Texture:
    matrix = qr_matrix(text)
    pixels = np.where(matrix, 0, 255).astype(np.uint8)
    pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    rgb = np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2)[::-1])  # GL rows go bottom-up
    height, width = pixels.shape
    texture = Texture.create(size=(width, height), colorfmt="rgb")
    texture.mag_filter = "nearest"
    texture.min_filter = "nearest"
    texture.blit_buffer(rgb.tobytes(), colorfmt="rgb", bufferfmt="ubyte")
    return texture
