"""`bisc identity`: this node's EndpointId (created on first run)."""

from __future__ import annotations

import argparse
from typing import Any

from bisc.cli.output import print_json
from bisc.identity import Identity
from bisc.paths import Paths


def register(commands: Any) -> None:
    parser = commands.add_parser("identity", help="show this node's EndpointId")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths = Paths.resolve(args.data_dir)
    identity = Identity.load_or_create(paths.identity_file)
    if args.json:
        print_json({"endpoint_id": str(identity.endpoint_id), "key_file": str(paths.identity_file)})
    else:
        print(identity.endpoint_id)
    return 0
