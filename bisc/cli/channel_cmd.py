"""`bisc create` and `bisc join`: a headless channel session."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bisc.app.node import JoinError, Node
from bisc.cli.session import Printer, SessionOptions, run_session
from bisc.errors import TicketError
from bisc.ticket import BiscTicket


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="display name (default: from settings)")
    parser.add_argument("--bind", default="0.0.0.0:0", metavar="HOST:PORT", help="UDP address to listen on")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--exit-after", type=float, metavar="SECONDS", help="leave after this long")
    parser.add_argument(
        "--share", action="append", default=[], metavar="PATH", help="share a file (repeatable)"
    )
    parser.add_argument(
        "--download",
        action="append",
        default=[],
        metavar="all|HASH",
        help="download every announced file, or the one with this hash (repeatable)",
    )
    parser.add_argument("--storage", metavar="DIR", help="where downloads go (default: from settings)")
    voice = parser.add_argument_group("voice (on when --audio-in or --audio-out is given)")
    voice.add_argument(
        "--audio-in", metavar="mic|tone[:HZ]|silence|FILE.wav|none", help="what to send (default: none)"
    )
    voice.add_argument(
        "--audio-out", metavar="speaker|FILE.wav|none", help="where to play (default: speaker)"
    )
    voice.add_argument("--audio-device", metavar="NAME|INDEX", help="device for both (see `bisc devices`)")
    voice.add_argument("--quality", choices=("low", "medium", "high"), default="medium", help="audio bitrate")
    voice.add_argument("--dtx", action="store_true", help="send silence as 1-byte packets (saves bandwidth)")
    video = parser.add_argument_group("video")
    video.add_argument(
        "--video", metavar="camera[:DEV]|pattern[:WxH]|FILE|none", help="camera stream to send"
    )
    video.add_argument("--screen", metavar="display[:N]|window:TITLE|none", help="share a screen or window")
    video.add_argument(
        "--video-out", metavar="DIR|none", help="PNG snapshots of received video + stats.jsonl"
    )
    video.add_argument(
        "--video-codec",
        choices=("vp8", "h264"),
        default="vp8",
        help="preferred codec of what we send: h264 is used while every member can take it, else vp8",
    )


def register(commands: Any) -> None:
    create = commands.add_parser("create", help="create a channel and print its ticket")
    _common(create)
    create.set_defaults(run=run_create)
    join = commands.add_parser("join", help="join a channel with a ticket")
    join.add_argument("ticket", help="the ticket text (bisc1...)")
    _common(join)
    join.set_defaults(run=run_join)


def _options(args: argparse.Namespace) -> SessionOptions:
    voice = args.audio_in is not None or args.audio_out is not None
    return SessionOptions(
        exit_after=args.exit_after,
        share=args.share,
        download=args.download,
        audio_in=(args.audio_in or "none") if voice else None,
        audio_out=(args.audio_out or "speaker") if voice else None,
        audio_device=args.audio_device,
        quality=args.quality,
        dtx=args.dtx,
        video=args.video,
        screen=args.screen,
        video_out=args.video_out,
        video_codec=args.video_codec,
    )


def _node(args: argparse.Namespace) -> Node:
    return Node(data_dir=args.data_dir, display_name=args.name, bind=args.bind, storage_dir=args.storage)


def run_create(args: argparse.Namespace) -> int:
    async def main() -> int:
        node = _node(args)
        await node.start()
        channel = await node.create_channel()
        printer = Printer(args.json)
        printer.ticket(channel.ticket().to_text())
        return await run_session(node, channel, printer, _options(args))

    return asyncio.run(main())


def run_join(args: argparse.Namespace) -> int:
    try:
        ticket = BiscTicket.parse(args.ticket)
    except TicketError as exc:
        raise TicketError(f"invalid ticket: {exc}") from None

    async def main() -> int:
        node = _node(args)
        await node.start()
        try:
            channel = await node.join(ticket)
        except (JoinError, TimeoutError) as exc:
            await node.close()
            print(f"bisc: {exc or 'timed out joining'}", file=sys.stderr)
            return 1
        printer = Printer(args.json)
        printer.ticket(channel.ticket().to_text())
        return await run_session(node, channel, printer, _options(args))

    return asyncio.run(main())
