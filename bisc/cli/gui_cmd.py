"""`bisc gui` (and `bisc` with no command): the Kivy app (the `gui` extra: pip install 'bisc[gui]')."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bisc.errors import BiscError


def register(commands: Any) -> None:
    gui = commands.add_parser("gui", help="open the app window (the default without a command)")
    add_options(gui)
    gui.set_defaults(run=run)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="display name (default: from settings)")
    parser.add_argument("--bind", default="0.0.0.0:0", metavar="HOST:PORT", help="UDP address to listen on")
    parser.add_argument(
        "--audio-in",
        default="mic",
        metavar="SOURCE",
        help="what the mic button sends: mic, tone[:HZ], FILE.wav",
    )
    parser.add_argument("--audio-out", default="speaker", metavar="SINK", help="speaker, FILE.wav or none")
    parser.add_argument(
        "--video-source",
        default="camera",
        metavar="SOURCE",
        help="what the camera button sends: camera[:DEVICE], pattern[:WxH] or a video file",
    )
    parser.add_argument("--theme", choices=("dark", "light"), help="default: from settings")


def display_available() -> bool:
    """Whether a window can be shown: always on macOS and Windows, with X11 or Wayland elsewhere."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    try:
        from kivy_app.app import GuiOptions, main
    except ImportError as exc:
        raise BiscError(f"the app window needs Kivy and qrcode: pip install 'bisc[gui]' ({exc})") from None
    options = GuiOptions(
        data_dir=args.data_dir,
        name=getattr(args, "name", None),
        bind=getattr(args, "bind", "0.0.0.0:0"),
        audio_in=getattr(args, "audio_in", "mic"),
        audio_out=getattr(args, "audio_out", "speaker"),
        video_source=getattr(args, "video_source", "camera"),
        theme=getattr(args, "theme", None),
    )
    return main(options)
