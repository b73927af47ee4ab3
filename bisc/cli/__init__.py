"""The `bisc` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from bisc import __version__
from bisc.cli import (
    bench_cmd,
    channel_cmd,
    demo_cmd,
    devices_cmd,
    doctor_cmd,
    gui_cmd,
    identity_cmd,
    ticket_cmd,
)
from bisc.errors import BiscError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bisc",
        description="Peer-to-peer voice, video, screen and file sharing. No server, no accounts.",
    )
    parser.add_argument("--version", action="version", version=f"bisc {__version__}")
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="keep identity, settings and data under DIR (default: the platform's directories)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (channel_cmd, demo_cmd, devices_cmd, doctor_cmd, bench_cmd, ticket_cmd, identity_cmd):
        module.register(commands)
    gui_cmd.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        if not gui_cmd.display_available():  # headless (ssh, CI): the help, not a window that cannot open
            parser.print_help()
            return 0
        args.run = gui_cmd.run  # no command: open the app window
    try:
        result: int = args.run(args)
        return result
    except BiscError as exc:
        print(f"bisc: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
