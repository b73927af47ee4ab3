"""`bisc create` / `bisc join` / `bisc demo` in subprocesses, as a user runs them."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_bisc

pytestmark = pytest.mark.timeout(180)


class BiscProcess:
    """A `bisc` subprocess whose stdout lines are read on a thread."""

    def __init__(self, *args: str, stdin: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bisc", *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_json(self, timeout: float = 20) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(self.lines.get(timeout=timeout))
        self.seen.append(record)
        return record

    def wait_for(self, predicate: Any, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for record in self.seen:
            if predicate(record):
                return record
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not seen in {timeout}s; got {self.seen}; {self.stderr_tail()}")
            try:
                record = self.next_json(remaining)
            except queue.Empty:
                raise AssertionError(
                    f"not seen in {timeout}s; got {self.seen}; {self.stderr_tail()}"
                ) from None
            if predicate(record):
                return record

    def stderr_tail(self) -> str:
        """The end of stderr, for failure messages (only once the process has ended)."""
        if self.proc.poll() is None or self.proc.stderr is None:
            return "process still running"
        return "stderr: " + self.proc.stderr.read()[-2000:]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def test_create_join_chat_quit_and_sigkill(tmp_path: Path) -> None:
    common = ["--bind", "127.0.0.1:0", "--json"]
    creator = BiscProcess("--data-dir", str(tmp_path / "a"), "create", "--name", "alice", *common, stdin=True)
    procs = [creator]
    try:
        first = creator.next_json()
        assert first["event"] == "ticket" and first["ticket"].startswith("bisc1")
        ticket = first["ticket"]
        bob = BiscProcess(
            "--data-dir", str(tmp_path / "b"), "join", ticket, "--name", "bob", *common, stdin=True
        )
        carol = BiscProcess("--data-dir", str(tmp_path / "c"), "join", ticket, "--name", "carol", *common)
        procs += [bob, carol]
        assert bob.next_json()["event"] == "ticket"
        for proc, others in (
            (creator, {"bob", "carol"}),
            (bob, {"alice", "carol"}),
            (carol, {"alice", "bob"}),
        ):
            for name in others:
                proc.wait_for(lambda r, n=name: r["event"] == "peer_joined" and r["name"] == n)

        bob.send("hello from bob")
        for proc in (creator, carol):
            chat = proc.wait_for(lambda r: r["event"] == "chat")
            assert chat["name"] == "bob" and chat["text"] == "hello from bob"

        creator.send("/ticket")
        fresh = creator.wait_for(lambda r: r["event"] == "ticket" and r["ticket"] != ticket)
        assert fresh["ticket"].startswith("bisc1")

        # /quit leaves gracefully: the others see "left" at once.
        bob.send("/quit")
        assert bob.proc.wait(15) == 0
        left = creator.wait_for(lambda r: r["event"] == "peer_left" and r["name"] == "bob")
        assert left["reason"] == "left"

        # SIGKILL gives no goodbye: the others drop carol by heartbeat timeout.
        killed_at = time.monotonic()
        carol.proc.send_signal(signal.SIGKILL)
        gone = creator.wait_for(lambda r: r["event"] == "peer_left" and r["name"] == "carol", timeout=25)
        assert gone["reason"] == "timeout"
        assert time.monotonic() - killed_at <= 20

        creator.proc.send_signal(signal.SIGTERM)
        assert creator.proc.wait(15) == 0
    finally:
        for proc in procs:
            proc.stop()


def test_join_with_bad_ticket_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_bisc("--data-dir", str(tmp_path), "join", "bisc1garbage", "--name", "x")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bisc: invalid ticket:"), result.stderr


def test_exit_after_without_stdin(tmp_path: Path) -> None:
    result = run_bisc(
        "--data-dir", str(tmp_path), "create", "--name", "solo", "--bind", "127.0.0.1:0", "--exit-after", "1"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("bisc1")


def test_demo_summary() -> None:
    result = run_bisc("demo", "--peers", "3", "--seconds", "20", "--json", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert all(summary["checks"].values()), summary
    assert summary["checks"]["voice_everyone_hears_everyone"] and summary["checks"]["voice_tones_heard"]
    assert len(summary["peers"]) == 3
    # Voice: every peer sends its own tone and receives, plays and hears the other two.
    names = {p["name"] for p in summary["peers"]}
    for peer in summary["peers"]:
        voice = peer["voice"]
        assert voice["error"] is None and voice["streams"] == 2, voice
        assert set(voice["from"]) == names - {peer["name"]}, voice
        assert sorted(voice["tones_heard"]) == sorted(names - {peer["name"]}), voice
        for link in voice["from"].values():
            assert link["frames"] > 100 and link["e2e_frames"] > 0, link
            # Three nodes with voice, video and a file transfer share one process and two cores: a
            # starved event loop drops stale media by design (measured 3-16% per link), so loopback
            # loss is bounded, not zero; the tones must still be heard (checked above).
            assert link["bitrate_kbps"] > 10 and link["loss_pct"] < 30, link
            assert 0 < link["e2e_p50_ms"] <= link["e2e_p95_ms"] < 2000, link
            assert link["buffer_ms"] is not None and link["jitter_ms"] is not None, link
    wide = summary["voice"]
    assert wide["streams"] == wide["expected_streams"] == 6, wide
    assert 0 < wide["e2e_p50_ms"] <= wide["e2e_p95_ms"], wide
    assert summary["voice_problems"] == [], summary["voice_problems"]
    # Video: every peer sends the 360p test pattern and decodes the other two.
    assert summary["checks"]["video_everyone_sees_everyone"]
    for peer in summary["peers"]:
        video = peer["video"]
        assert video["error"] is None and video["streams"] == 2, video
        assert set(video["from"]) == names - {peer["name"]}, video
        assert video["sent_frames"] >= 20 and video["sent_rung"] in ("180p", "360p"), video
        for link in video["from"].values():
            # All three nodes (each sending voice and video, one also a 720p screen) run in one
            # process on two cores: pictures keep coming, at the rate the CPU allows (measured 11 to
            # 112 frames per link over the video step, 4 to 25 fps; the bandwidth estimate drops
            # as the starved loop delays packets). What must hold is that everyone decodes everyone.
            assert link["frames"] >= 5 and link["decode_errors"] == 0, link
            assert (link["width"], link["height"]) in ((640, 360), (320, 180)), link
            assert link["fps"] > 0 and link["bitrate_kbps"] > 10, link
            assert link["e2e_frames"] > 0 and 0 < link["e2e_p50_ms"] <= link["e2e_p95_ms"] < 2000, link
    wide = summary["video"]
    assert wide["streams"] == wide["expected_streams"] == 6, wide
    assert 0 < wide["e2e_p50_ms"] <= wide["e2e_p95_ms"] and wide["frames"] > 30, wide
    assert summary["video_problems"] == [], summary["video_problems"]


def test_demo_without_voice_and_video() -> None:
    result = run_bisc(
        "demo", "--peers", "2", "--seconds", "20", "--json", "--no-voice", "--no-video", timeout=90
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["voice"] is None and not any(name.startswith("voice") for name in summary["checks"])
    assert summary["video"] is None and not any(name.startswith("video") for name in summary["checks"])
    assert all(peer["video"] is None for peer in summary["peers"])
