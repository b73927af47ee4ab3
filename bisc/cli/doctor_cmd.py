"""`bisc doctor`: which implementation serves each hot path, what media
support was found, and where bisc keeps its files."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Any

from bisc import __version__, hotpaths
from bisc.cli.output import print_json
from bisc.identity import Identity
from bisc.media.devices import devices_report
from bisc.paths import Paths


def register(commands: Any) -> None:
    parser = commands.add_parser("doctor", help="show implementations, codecs, devices and paths")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)


def collect(data_dir: str | None) -> dict[str, Any]:
    paths = Paths.resolve(data_dir)
    endpoint_id = None
    if paths.identity_file.exists():
        endpoint_id = str(Identity.load_or_create(paths.identity_file).endpoint_id)
    return {
        "bisc": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "bisc_impl": hotpaths.SELECTION.setting,
        "hot_paths": hotpaths.report(),
        **devices_report(),
        "paths": {
            "config_dir": str(paths.config_dir),
            "data_dir": str(paths.data_dir),
            "default_storage_dir": str(paths.default_storage_dir),
        },
        "endpoint_id": endpoint_id,
        "cpus": os.cpu_count(),
    }


def run(args: argparse.Namespace) -> int:
    info = collect(args.data_dir)
    if args.json:
        print_json(info)
        return 0
    print(f"bisc {info['bisc']} on Python {info['python']}, {info['platform']}, {info['cpus']} CPUs")
    print(f"\nHot paths (BISC_IMPL={info['bisc_impl']}):")
    for name, entry in info["hot_paths"].items():
        print(f"  {name:<10} {entry['selected']:<7} loaded: {', '.join(entry['loaded'])}")
        for impl, reason in entry["unavailable"].items():
            print(f"  {'':<10} {impl} unavailable: {reason}")
    print("\nCodecs" + (f" (PyAV {info['pyav']}):" if info["pyav"] else ":"))
    if info["codec_error"]:
        print(f"  {info['codec_error']}")
    for purpose, entry in info["codecs"].items():
        enc = entry["encoder"] or "missing"
        dec = entry["decoder"] or "missing"
        print(f"  {purpose:<6} encoder: {enc:<10} decoder: {dec}")
    if info["pyav"]:
        fec = "libopus (in-band FEC, packet-loss concealment)" if info["opus_fec"] else "missing: a fade"
        print(f"  Opus loss recovery: {fec}")
    print("\nAudio devices:")
    if info["audio_error"]:
        print(f"  {info['audio_error']}")
    for dev in info["audio_devices"]:
        print(
            f"  [{dev['index']}] {dev['name']}  in:{dev['max_input_channels']}"
            f" out:{dev['max_output_channels']} {dev['default_sample_rate']:.0f} Hz"
        )
    print("\nCameras:")
    print("  " + ("\n  ".join(info["cameras"]) if info["cameras"] else info["camera_error"]))
    print("\nPaths:")
    for key, value in info["paths"].items():
        print(f"  {key:<20} {value}")
    print(f"\nEndpointId: {info['endpoint_id'] or '(created on first run)'}")
    return 0
