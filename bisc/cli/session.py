"""The headless session behind `bisc create` and `bisc join`: print the
ticket, then events, one line each; stdin lines are chat; /ticket, /quit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bisc.app.channel import Channel
from bisc.app.events import (
    ChannelEvent,
    ChatReceived,
    DownloadComplete,
    DownloadProgress,
    MediaStats,
    MemberJoined,
    MemberLeft,
    SpeakingChanged,
    VideoStatsEvent,
    event_to_json,
)
from bisc.app.node import Node
from bisc.cli.transfers import Transfers, share_path
from bisc.cli.video_cli import start_video, write_snapshots
from bisc.errors import BiscError
from bisc.proto.messages import MessageError

log = logging.getLogger(__name__)

HELP = (
    "commands: /ticket (a fresh ticket), /members, /share PATH, /files, /get HASH, "
    "/mute, /unmute, /volume NAME GAIN, /stats, /quit; any other line is sent as chat"
)


@dataclass
class SessionOptions:
    exit_after: float | None = None
    share: list[str] = field(default_factory=list)
    download: list[str] = field(default_factory=list)
    audio_in: str | None = None  # None: no voice
    audio_out: str | None = None
    audio_device: str | None = None
    quality: str = "medium"
    dtx: bool = False
    video: str | None = None  # camera|pattern[:WxH]|FILE|none
    screen: str | None = None  # display[:N]|window:TITLE|none
    video_out: str | None = None  # DIR for PNG snapshots and stats, or none
    video_codec: str = "vp8"

    @property
    def wants_video(self) -> bool:
        return any(v not in (None, "none") for v in (self.video, self.screen, self.video_out))


class Printer:
    """Writes one line per event, as text or JSON, flushed at once."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, record: dict[str, Any], text: str) -> None:
        line = json.dumps(record, ensure_ascii=False) if self.as_json else text
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def event(self, event: ChannelEvent) -> None:
        record = event_to_json(event)
        if isinstance(event, MemberJoined):
            text = f"* {event.member.name} joined ({event.member.peer_id.short()})"
        elif isinstance(event, MemberLeft):
            text = f"* {event.name} left ({event.reason})"
        elif isinstance(event, ChatReceived):
            text = f"<{event.name}> {event.text}"
        elif isinstance(event, DownloadComplete):
            text = f"* downloaded {event.name} (verified) -> {event.path}"
        elif isinstance(event, MediaStats):
            st = event.stats
            text = (
                f"* voice from {event.name}: loss {st.loss_pct:.1f}%, jitter {st.jitter_ms:.0f} ms, "
                f"buffer {st.buffer_ms:.0f} ms, delay {st.e2e_ms:.0f} ms, {st.bitrate_kbps:.0f} kb/s"
            )
        elif isinstance(event, VideoStatsEvent):
            vs = event.stats
            text = (
                f"* video from {event.name} ({record['stream']}): {vs.width}x{vs.height} {vs.fps:.0f} fps, "
                f"{vs.bitrate_kbps:.0f} kb/s (estimate {vs.estimate_kbps:.0f}), loss {vs.loss_pct:.1f}%, "
                f"delay {vs.e2e_ms:.0f} ms, freezes {vs.freezes}"
            )
        elif isinstance(event, SpeakingChanged):
            if not self.as_json:
                return  # ten a second at most: only for programs
            text = ""
        else:
            text = f"* {record['event']}: " + ", ".join(f"{k}={v}" for k, v in record.items() if k != "event")
        self.emit(record, text)

    def shared(self, file_hash: bytes, name: str, size: int) -> None:
        self.emit(
            {"event": "file_shared", "hash": file_hash.hex(), "name": name, "size": size},
            f"* sharing {name} ({size} bytes) as {file_hash.hex()}",
        )

    def progress(self, event: DownloadProgress, line: str) -> None:
        if self.as_json:
            self.emit(event_to_json(event), line)
        elif sys.stdout.isatty():
            sys.stdout.write("\r\033[K" + line)
            sys.stdout.flush()
        else:
            self.emit({}, line)

    def ticket(self, ticket: str) -> None:
        self.emit({"event": "ticket", "ticket": ticket}, ticket)

    def error(self, message: str) -> None:
        self.emit({"event": "error", "message": message}, f"! {message}")


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin on a daemon thread (portable; never blocks loop shutdown)."""

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="bisc-stdin", daemon=True).start()


async def run_session(node: Node, channel: Channel, printer: Printer, options: SessionOptions) -> int:
    exit_after, share, download = options.exit_after, options.share, options.download
    if options.audio_in is not None and options.audio_out is not None:
        try:
            call = await channel.start_voice(
                options.audio_in,
                options.audio_out,
                device=options.audio_device,
                quality=options.quality,
                dtx=options.dtx,
            )
        except BiscError as exc:
            printer.error(f"cannot start voice: {exc}")
            await node.close()
            return 1
        printer.emit(
            {"event": "voice", "input": call.input_description, "output": call.output_description},
            f"* voice on: sending {call.input_description}, playing to {call.output_description}",
        )
    snapshots: asyncio.Task[None] | None = None
    if options.wants_video:
        try:
            video = await start_video(
                channel, options.video, options.screen, options.video_out, options.video_codec
            )
        except (BiscError, OSError) as exc:
            printer.error(f"cannot start video: {exc}")
            await node.close()
            return 1
        printer.emit(
            {"event": "video", "camera": options.video or "none", "screen": options.screen or "none"},
            f"* video on: camera {options.video or 'none'}, screen {options.screen or 'none'}",
        )
        if options.video_out not in (None, "none"):
            assert options.video_out is not None
            snapshots = asyncio.ensure_future(write_snapshots(channel, video, options.video_out))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: no loop signal handlers
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    lines: asyncio.Queue[str | None] = asyncio.Queue(maxsize=256)
    if sys.stdin is not None and not sys.stdin.closed:
        _stdin_lines(loop, lines)

    transfers = Transfers(channel, download or [])
    for path in share or []:
        try:
            file_hash, name, size = await share_path(channel, path)
            printer.shared(file_hash, name, size)
        except (BiscError, OSError) as exc:
            printer.error(f"cannot share {path}: {exc}")
    transfers.start_wanted_known()

    async def pump_events() -> None:
        async for event in channel.events():
            try:
                line = transfers.on_event(event)
                if isinstance(event, DownloadProgress):
                    if line is not None:
                        printer.progress(event, line)
                    continue
                printer.event(event)
            except Exception as exc:  # one event we cannot show must not silence all the others
                log.exception("cannot show %r", event)
                printer.error(f"internal error showing a {type(event).__name__} event: {exc}")

    async def pump_input() -> None:
        while True:
            line = await lines.get()
            if line is None:
                return  # end of input: keep running (headless use has no stdin)
            if await _command(line, channel, printer, transfers):
                stop.set()
                return

    deadline = time.monotonic() + exit_after if exit_after is not None else None
    tasks = [asyncio.ensure_future(pump_events()), asyncio.ensure_future(pump_input())]
    try:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout)
    finally:
        if snapshots is not None:
            snapshots.cancel()
        await node.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return 0


async def _command(line: str, channel: Channel, printer: Printer, transfers: Transfers) -> bool:
    """Handle one input line; True means quit."""
    text = line.strip()
    if not text:
        return False
    if text == "/quit":
        return True
    if text == "/ticket":
        printer.ticket((await channel.refresh_ticket()).to_text())
    elif text == "/members":
        for member in channel.members.values():
            printer.emit(
                {"event": "member", "peer": str(member.peer_id), "name": member.name},
                f"  {member.name} ({member.peer_id.short()})",
            )
    elif text.startswith("/share "):
        try:
            file_hash, name, size = await share_path(channel, text[len("/share ") :].strip())
            printer.shared(file_hash, name, size)
        except (BiscError, OSError) as exc:
            printer.error(str(exc))
    elif text == "/files":
        for row in transfers.files_lines():
            printer.emit({"event": "file", "line": row.strip()}, row)
    elif text.startswith("/get "):
        wanted = text[len("/get ") :].strip().lower()
        matches = [h for h in channel.files if h.hex().startswith(wanted)] if wanted else []
        if len(matches) != 1:
            printer.error(f"/get needs a hash (or unique prefix) from /files; {len(matches)} match")
        else:
            try:
                channel.download(matches[0])
            except BiscError as exc:
                printer.error(str(exc))
    elif text in ("/mute", "/unmute", "/stats") or text.startswith("/volume"):
        _voice_command(text, channel, printer)
    elif text.startswith("/") and not text.startswith("//"):
        printer.error(f"unknown command {text.split()[0]}; {HELP}")
    else:
        try:
            await channel.send_chat(text[1:] if text.startswith("//") else text)
        except (MessageError, BiscError) as exc:
            printer.error(str(exc))
    return False


def _voice_command(text: str, channel: Channel, printer: Printer) -> None:
    call = channel.voice
    if call is None:
        printer.error("voice is off (start with --audio-in/--audio-out)")
        return
    if text in ("/mute", "/unmute"):
        call.mute(text == "/mute")
        printer.emit({"event": "muted", "muted": call.muted}, "* muted" if call.muted else "* unmuted")
    elif text == "/stats":
        for peer, stats in call.stats().items():
            member = channel.members.get(peer)
            printer.event(MediaStats(peer, member.name if member else peer.short(), stats, -1.0))
    else:
        parts = text.split()
        matches = [
            m for m in channel.members.values() if len(parts) == 3 and parts[1] in (m.name, str(m.peer_id))
        ]
        try:
            if len(matches) != 1:
                raise BiscError("usage: /volume NAME GAIN (0..4; NAME from /members)")
            call.set_volume(matches[0].peer_id, float(parts[2]))
        except (BiscError, ValueError) as exc:
            printer.error(str(exc))
