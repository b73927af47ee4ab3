"""`bisc ticket decode`: show what a ticket points at, never its secret."""

from __future__ import annotations

import argparse
from typing import Any

from bisc.cli.output import print_json
from bisc.errors import TicketError
from bisc.ticket import BiscTicket


def register(commands: Any) -> None:
    parser = commands.add_parser("ticket", help="inspect channel tickets")
    actions = parser.add_subparsers(dest="ticket_command", metavar="ACTION", required=True)
    decode = actions.add_parser("decode", help="show a ticket's topic id and bootstrap peers")
    decode.add_argument("ticket", help="the ticket text (bisc1...)")
    decode.add_argument("--json", action="store_true", help="print JSON")
    decode.set_defaults(run=run_decode)


def run_decode(args: argparse.Namespace) -> int:
    try:
        ticket = BiscTicket.parse(args.ticket)
    except TicketError as exc:
        raise TicketError(f"invalid ticket: {exc}") from None
    info = ticket.describe()
    if args.json:
        print_json(info)
        return 0
    print(f"topic id:  {info['topic_id']}")
    for n, peer in enumerate(info["bootstrap"], 1):
        print(f"peer {n}:    {peer['endpoint_id']}")
        for addr in peer["addrs"]:
            print(f"           direct {addr}")
        if peer["relay_url"]:
            print(f"           relay  {peer['relay_url']}")
    return 0
