"""`bisc demo`: N local nodes on loopback form a channel from one ticket and
exercise every feature that exists, with a live view and a summary table.

Once the mesh has formed every node joins the voice call with its own tone
(bisc.cli.demo_voice) while the chat and file steps run, then sends the test
pattern as its camera (bisc.cli.demo_video); every node must hear and see
every other."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisc.app.channel import Channel
from bisc.app.events import ChatReceived, MemberLeft
from bisc.app.node import Node
from bisc.cli.demo_common import POLL, live
from bisc.cli.demo_common import num as _num
from bisc.cli.demo_video import VIDEO_FPS, VIDEO_SIZE, DemoVideo
from bisc.cli.demo_voice import DemoVoice
from bisc.cli.output import print_json, table
from bisc.errors import BiscError

DEMO_FILE_SIZE = 8 * 1024 * 1024 + 12345  # a few chunks, not a round number


def register(commands: Any) -> None:
    parser = commands.add_parser("demo", help="run N local nodes and exercise every feature")
    parser.add_argument("--peers", type=int, default=3, help="number of nodes (2..16, default 3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit for the whole demo")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-voice", action="store_true", help="leave the voice call out")
    parser.add_argument("--no-video", action="store_true", help="leave the video out")
    parser.set_defaults(run=run_demo)


@dataclass
class PeerReport:
    name: str
    join_ms: float | None = None  # ticket -> admitted by a bootstrap peer
    first_member_ms: float | None = None
    full_mesh_ms: float | None = None
    chats: Counter[bytes] = field(default_factory=Counter)
    saw_leave: bool = False
    download_ms: float | None = None
    download_ok: bool = False


async def _collect(channel: Channel, report: PeerReport) -> None:
    async for event in channel.events():
        if isinstance(event, ChatReceived):
            report.chats[event.chat_id] += 1
        elif isinstance(event, MemberLeft):
            report.saw_leave = True


async def _demo(
    peers: int, seconds: float, root: Path, quiet: bool, with_voice: bool = True, with_video: bool = True
) -> tuple[list[PeerReport], dict[str, bool], DemoVoice | None, DemoVideo | None]:
    deadline = time.monotonic() + seconds
    nodes = [
        Node(data_dir=root / f"node{i}", display_name=f"peer-{i}", bind="127.0.0.1:0") for i in range(peers)
    ]
    reports = [PeerReport(f"peer-{i}") for i in range(peers)]
    for node in nodes:
        await node.start()
    channels: list[Channel] = [await nodes[0].create_channel()]
    reports[0].join_ms = 0.0
    ticket = channels[0].ticket().to_text()
    if not quiet:
        print(f"ticket: {ticket}")
    start = time.monotonic()

    async def join(i: int) -> Channel:
        channel = await nodes[i].join(ticket)
        reports[i].join_ms = (time.monotonic() - start) * 1000
        return channel

    channels += await asyncio.gather(*(join(i) for i in range(1, peers)))
    collectors = [asyncio.ensure_future(_collect(c, r)) for c, r in zip(channels, reports, strict=True)]
    others = peers - 1
    while time.monotonic() < deadline:
        elapsed = (time.monotonic() - start) * 1000
        for channel, report in zip(channels, reports, strict=True):
            if report.first_member_ms is None and channel.members:
                report.first_member_ms = elapsed
            if report.full_mesh_ms is None and len(channel.connected_peers) == others == len(channel.members):
                report.full_mesh_ms = elapsed
        if not quiet:
            live("mesh: " + " ".join(f"{len(c.connected_peers)}/{others}" for c in channels))
        if all(r.full_mesh_ms is not None for r in reports):
            break
        await asyncio.sleep(POLL)
    voice = DemoVoice(channels, root) if with_voice else None
    if voice is not None:
        await voice.start()
    for i, channel in enumerate(channels):
        await channel.send_chat(f"hello from peer-{i}")
    while time.monotonic() < deadline and not all(len(r.chats) >= others for r in reports):
        if not quiet:
            live("chat: " + " ".join(f"{len(r.chats)}/{others}" for r in reports))
        await asyncio.sleep(POLL)
    # File sharing: peer-0 shares a synthetic file, everyone else downloads it.
    source = root / "demo-file.bin"
    source.write_bytes(os.urandom(DEMO_FILE_SIZE))
    info = await channels[0].share(source)
    share_start = time.monotonic()
    while time.monotonic() < deadline and not all(info.file_hash in c.files for c in channels[1:]):
        await asyncio.sleep(POLL)
    downloads = {}
    for i, channel in enumerate(channels[1:], 1):
        with contextlib.suppress(BiscError):
            downloads[i] = channel.download(info.file_hash)
    expected = source.read_bytes()
    while time.monotonic() < deadline:
        for i, handle in downloads.items():
            if handle.state == "complete" and reports[i].download_ms is None:
                reports[i].download_ms = (time.monotonic() - share_start) * 1000
                reports[i].download_ok = handle.path is not None and handle.path.read_bytes() == expected
        if not quiet:
            live("file: " + " ".join(f"{h.bytes_done * 100 // max(1, h.size)}%" for h in downloads.values()))
        if all(h.state in ("complete", "failed", "cancelled") for h in downloads.values()):
            break
        await asyncio.sleep(POLL)
    reports[0].download_ok = True
    # Video after the file step: the 8 MB transfer would crowd the same connections (and the CPU).
    video = DemoVideo(channels) if with_video else None
    if video is not None:
        await video.start()
    if voice is not None:
        await voice.settle(deadline, quiet)
    if video is not None:
        await video.settle(deadline, quiet)
        await video.stop()
    if voice is not None:
        await voice.stop()
    # The last peer leaves gracefully; the others must notice at once.
    await channels[-1].leave()
    while time.monotonic() < deadline and not all(r.saw_leave for r in reports[:-1]):
        await asyncio.sleep(POLL)
    if not quiet:
        live("done\n")
    for node in nodes:
        await node.close()
    for task in collectors:
        task.cancel()
    await asyncio.gather(*collectors, return_exceptions=True)
    checks = {
        "full_mesh": all(r.full_mesh_ms is not None for r in reports),
        "chat_exactly_once": all(len(r.chats) == others and set(r.chats.values()) == {1} for r in reports),
        "leave_seen": all(r.saw_leave for r in reports[:-1]),
        "file_downloaded_and_verified": all(r.download_ok for r in reports),
    }
    if voice is not None:
        checks |= voice.checks()
    if video is not None:
        checks |= video.checks()
    return reports, checks, voice, video


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def run_demo(args: argparse.Namespace) -> int:
    if not 2 <= args.peers <= 16:
        print("bisc: --peers must be 2..16", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bisc-demo-") as tmp:
        reports, checks, voice, video = asyncio.run(
            _demo(args.peers, args.seconds, Path(tmp), args.json, not args.no_voice, not args.no_video)
        )
    problems = voice.problems() if voice is not None else []
    video_problems = video.problems() if video is not None else []
    if args.json:
        print_json(
            {
                "peers": [
                    {
                        "name": r.name,
                        "join_ms": r.join_ms,
                        "first_member_ms": r.first_member_ms,
                        "full_mesh_ms": r.full_mesh_ms,
                        "chats_received": sum(r.chats.values()),
                        "distinct_chats": len(r.chats),
                        "download_ms": r.download_ms,
                        "download_ok": r.download_ok,
                        "voice": voice.nodes[i].summary() if voice is not None else None,
                        "video": video.nodes[i].summary() if video is not None else None,
                    }
                    for i, r in enumerate(reports)
                ],
                "voice": voice.channel_wide() if voice is not None else None,
                "voice_problems": problems,
                "video": video.channel_wide() if video is not None else None,
                "video_problems": video_problems,
                "checks": checks,
            }
        )
    else:
        print(
            table(
                [
                    "peer",
                    "join ms",
                    "first member ms",
                    "full mesh ms",
                    "chats",
                    "duplicates",
                    "file ms",
                    "MB/s",
                    "file",
                ],
                [
                    [
                        r.name,
                        _ms(r.join_ms),
                        _ms(r.first_member_ms),
                        _ms(r.full_mesh_ms),
                        f"{len(r.chats)}/{args.peers - 1}",
                        str(sum(r.chats.values()) - len(r.chats)),
                        "shared" if i == 0 else _ms(r.download_ms),
                        "" if i == 0 or not r.download_ms else f"{DEMO_FILE_SIZE / 1e3 / r.download_ms:.1f}",
                        "source" if i == 0 else ("verified" if r.download_ok else "FAILED"),
                    ]
                    for i, r in enumerate(reports)
                ],
            )
        )
        print(f"\nfile: {DEMO_FILE_SIZE / 1e6:.1f} MB shared by peer-0, downloaded by the others at once")
        if voice is not None:
            wide = voice.channel_wide()
            print()
            print(voice.table())
            print(
                f"\nvoice: {wide['seconds']:g} s call, every peer a tone; streams {wide['streams']}"
                f"/{wide['expected_streams']}, end-to-end delay p50 {_ms(wide['e2e_p50_ms'])} ms"
                f" p95 {_ms(wide['e2e_p95_ms'])} ms over {wide['e2e_frames']} frames,"
                f" {wide['concealed']} concealed"
            )
        if video is not None:
            wide = video.channel_wide()
            print()
            print(video.table())
            print(
                f"\nvideo: {wide['seconds']:g} s, every peer the test pattern at"
                f" {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} {VIDEO_FPS:g} fps; streams {wide['streams']}"
                f"/{wide['expected_streams']}, {wide['frames']} pictures at {_num(wide['fps'], '.1f')} fps"
                f" per stream, {_num(wide['bitrate_kbps'], '.0f')} kb/s in all, glass-to-glass"
                f" p50 {_ms(wide['e2e_p50_ms'])} ms p95 {_ms(wide['e2e_p95_ms'])} ms,"
                f" {wide['freezes']} freezes"
            )
            shot = wide["screen_share"]
            print(
                f"screen share: {shot['from']} shares a synthetic {shot['size']} screen at 5 fps;"
                f" decoded at full resolution by {shot['decoded_by']}/{shot['of']}"
            )
        print()
        for name, ok in checks.items():
            print(f"  {'ok  ' if ok else 'FAIL'}  {name.replace('_', ' ')}")
    for problem in problems:
        print(f"bisc: demo: voice did not flow: {problem}", file=sys.stderr)
    for problem in video_problems:
        print(f"bisc: demo: video did not flow: {problem}", file=sys.stderr)
    failed = [name for name, ok in checks.items() if not ok]
    if failed and not problems and not video_problems:
        print(f"bisc: demo: failed: {', '.join(failed)}", file=sys.stderr)
    return 0 if not failed else 1
