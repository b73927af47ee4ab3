"""`bisc devices`: the audio devices and cameras bisc can use, with the
index or name to pass as --audio-device / --video camera."""

from __future__ import annotations

import argparse
from typing import Any

from bisc.cli.output import print_json, table
from bisc.media.devices import list_audio_devices, list_cameras


def register(commands: Any) -> None:
    parser = commands.add_parser("devices", help="list audio devices and cameras")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    audio, audio_error = list_audio_devices()
    cameras, camera_error = list_cameras()
    if args.json:
        print_json(
            {
                "audio_devices": [d.__dict__ for d in audio],
                "audio_error": audio_error,
                "cameras": cameras,
                "camera_error": camera_error,
            }
        )
        return 0
    print("Audio devices:")
    if audio:
        print(
            table(
                ["index", "name", "inputs", "outputs", "rate"],
                [
                    [
                        str(d.index),
                        d.name,
                        str(d.max_input_channels),
                        str(d.max_output_channels),
                        f"{d.default_sample_rate:.0f}",
                    ]
                    for d in audio
                ],
            )
        )
    else:
        print(f"  {audio_error}")
    print("\nCameras:")
    print("  " + ("\n  ".join(cameras) if cameras else str(camera_error)))
    return 0
