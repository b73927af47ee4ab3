"""Screen sharing end to end: an Xvfb display with known content, shared by one peer over real aioquic,
arrives recognisably at the other (PSNR against a direct capture of the same screen)."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from bisc.app import Node
from bisc.media.video_codec import psnr
from bisc.media.video_screen import ScreenSource
from bisc.proto.media_control import SCREEN_STREAM
from tests.test_channels import full_mesh, wait_until
from tests.test_video_screen import NEEDED, xdisplay

pytest.importorskip("mss")
tkinter = pytest.importorskip("tkinter")
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        any(__import__("shutil").which(tool) is None for tool in NEEDED),
        reason=f"needs {', '.join(NEEDED)} (ci/setup installs them)",
    ),
]
__all__ = ["xdisplay"]


def draw_desktop(display: str) -> object:
    """A full-screen window of coloured panels and big text: sharp edges a screen share must keep."""
    root = tkinter.Tk(screenName=display)
    root.title("bisc screen share test")
    root.geometry("1280x720+0+0")
    canvas = tkinter.Canvas(root, width=1280, height=720, bg="#f0f0f0", highlightthickness=0)
    canvas.pack()
    colours = ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b"]
    for i, colour in enumerate(colours):
        canvas.create_rectangle(40 + i * 200, 60, 200 + i * 200, 300, fill=colour, outline="")
    for row in range(4):
        text = f"Line {row}: bisc shares"
        canvas.create_text(60, 360 + row * 80, anchor="w", font=("Helvetica", 36), text=text)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not root.winfo_viewable():
        root.update()
    for _ in range(20):
        root.update()
        time.sleep(0.01)
    return root


async def test_shared_display_arrives_recognisably(xdisplay: str, tmp_path: Path) -> None:
    root = draw_desktop(xdisplay)
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
        await wait_until(lambda: vb.frames()[(a.me, SCREEN_STREAM)][0] >= 6, 20.0, "several screen pictures")
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
        assert psnr(picture.data, reference) > 30.0
        stats = vb.stats()[(a.me, SCREEN_STREAM)]
        assert stats.decode_errors == 0
    finally:
        for node in nodes:
            await node.close()
        root.destroy()  # type: ignore[attr-defined]
