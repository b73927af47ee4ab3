"""Screen sharing end to end: an Xvfb display with known content, shared by one peer over real aioquic,
arrives recognisably at the other (PSNR against a direct capture of the same screen)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from bisc.app import Node
from bisc.media.video_codec import psnr
from bisc.media.video_screen import ScreenSource
from bisc.proto.media_control import SCREEN_STREAM
from tests.test_channels import full_mesh, wait_until
from tests.test_video_screen import NEEDED, x, xdisplay

pytest.importorskip("mss")
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        any(__import__("shutil").which(tool) is None for tool in NEEDED),
        reason=f"needs {', '.join(NEEDED)} (ci/setup installs them)",
    ),
]
__all__ = ["xdisplay"]


def draw_desktop(display: str, directory: Path) -> None:
    """Tile the root window with a 64x64 bitmap of stripes and blocks: sharp edges a screen share must keep.

    xsetroot, not a Tk window: Tk keeps its X connections after destroy(), and once their server is gone
    Xlib's fatal-IO handler would end this whole test process."""
    rows = []
    for row in range(64):
        bits = 0
        for col in range(64):
            on = (col // 16 + row // 16) % 2 == 0 if row < 32 else (col % 32 < 16)
            bits |= int(on) << col
        rows.append(bits.to_bytes(8, "little"))
    data = b"".join(rows)
    body = ", ".join(f"0x{b:02x}" for b in data)  # Xlib's XBM reader wants the spaces
    xbm = directory / "desktop.xbm"
    header = "#define d_width 64\n#define d_height 64\n"
    xbm.write_text(f"{header}static unsigned char d_bits[] = {{\n   {body} }};\n")
    x(display, "xsetroot", "-bitmap", str(xbm), "-fg", "#1f77b4", "-bg", "#ffdd55")


async def test_shared_display_arrives_recognisably(xdisplay: str, tmp_path: Path) -> None:
    draw_desktop(xdisplay, tmp_path)
    nodes = [
        await Node(data_dir=tmp_path / f"n{i}", display_name=f"s{i}", bind="127.0.0.1:0").start()
        for i in range(2)
    ]
    try:
        a = await nodes[0].create_channel()
        b = await nodes[1].join(a.ticket())
        await wait_until(lambda: full_mesh([a, b]), 10.0, "mesh", [a, b])
        vb = await b.start_video()
        await a.start_screen(lambda: ScreenSource(1, x_display=xdisplay, cursor=False), size=(1280, 720))
        await wait_until(lambda: (a.me, SCREEN_STREAM) in vb.frames(), 10.0, "b receives a's screen")
        # Screens favour sharpness: a few frames a second at full resolution; let quality settle.
        await wait_until(lambda: vb.frames()[(a.me, SCREEN_STREAM)][0] >= 12, 20.0, "several screen pictures")
        _, picture = vb.frames()[(a.me, SCREEN_STREAM)]
        assert picture is not None
        reference_src = ScreenSource(1, x_display=xdisplay, cursor=False)
        ref_yuv = reference_src.read_frame()
        reference_src.close()
        scaled = av.VideoFrame.from_ndarray(ref_yuv.data, format="yuv420p").reformat(
            width=picture.width, height=picture.height, format="rgb24"
        )
        reference = np.asarray(scaled.to_ndarray(), dtype=np.uint8)
        assert (picture.width, picture.height) == (1280, 720)  # full resolution, not a ladder rung
        assert psnr(picture.data, reference) > 28.0  # recognisable: sharp edges, a few hundred kb/s
        stats = vb.stats()[(a.me, SCREEN_STREAM)]
        assert stats.decode_errors == 0
    finally:
        for node in nodes:
            await node.close()
