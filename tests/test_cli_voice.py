"""Voice through the real `bisc` command: `create`/`join` with --audio-in/--audio-out, /mute, bad
inputs, and the demo's voice figures (those are checked in tests/test_cli_channels.py's demo run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import run_bisc
from tests.test_cli_channels import BiscProcess
from tests.voice_helpers import TONE_RMS, band_rms, frame_rms, peak_hz, read_wav

pytestmark = pytest.mark.timeout(120)

COMMON = ("--bind", "127.0.0.1:0", "--json")


@pytest.fixture
def procs() -> Iterator[list[BiscProcess]]:
    started: list[BiscProcess] = []
    yield started
    for proc in started:
        proc.stop()


def start_pair(
    tmp_path: Path, procs: list[BiscProcess], creator_voice: list[str], joiner_voice: list[str]
) -> tuple[BiscProcess, BiscProcess]:
    """alice creates (stdin open), bob joins her ticket (stdin open); both have voice on."""
    alice = BiscProcess(
        "--data-dir", str(tmp_path / "a"), "create", "--name", "alice", *COMMON, *creator_voice, stdin=True
    )
    procs.append(alice)
    first = alice.next_json()
    assert first["event"] == "ticket", first
    bob = BiscProcess(
        "--data-dir",
        str(tmp_path / "b"),
        "join",
        first["ticket"],
        "--name",
        "bob",
        *COMMON,
        *joiner_voice,
        stdin=True,
    )
    procs.append(bob)
    return alice, bob


def is_stats_from(name: str) -> Any:
    return lambda r: r["event"] == "media_stats" and r["name"] == name


def test_tone_from_creator_reaches_joiners_wav(tmp_path: Path, procs: list[BiscProcess]) -> None:
    out = tmp_path / "out.wav"
    alice, bob = start_pair(
        tmp_path,
        procs,
        ["--audio-in", "tone:440", "--audio-out", "none"],
        ["--audio-in", "none", "--audio-out", str(out)],
    )
    voice = bob.wait_for(lambda r: r["event"] == "voice", timeout=30)
    assert voice["output"] != "none", voice
    bob.wait_for(lambda r: r["event"] == "peer_joined" and r["name"] == "alice", timeout=30)
    first = bob.wait_for(lambda r: is_stats_from("alice")(r) and r["packets"] > 0, timeout=30)
    later = bob.wait_for(lambda r: is_stats_from("alice")(r) and r["packets"] > first["packets"], timeout=30)
    for stats in (first, later):
        assert stats["loss_pct"] == 0, stats
        assert stats["malformed"] == 0 and stats["decode_errors"] == 0, stats
    assert later["bitrate_kbps"] > 10, later
    # alice sends only, so she receives nothing and reports no stats for bob.
    bob.send("/quit")
    assert bob.proc.wait(20) == 0, bob.stderr_tail()
    assert not any(is_stats_from("bob")(r) for r in alice.seen)

    pcm = read_wav(out)
    rms = frame_rms(pcm)
    loud = np.nonzero(rms >= TONE_RMS / 4)[0]
    assert len(loud) >= 100, f"under 2 s of tone in {out} ({len(rms)} frames); {bob.stderr_tail()}"
    heard = pcm[loud[0] * 960 :]
    assert abs(peak_hz(heard) - 440) < 5, peak_hz(heard)
    assert band_rms(heard, 440) > 0.5 * TONE_RMS, band_rms(heard, 440)


def test_mute_is_seen_by_the_peer(tmp_path: Path, procs: list[BiscProcess]) -> None:
    alice, bob = start_pair(
        tmp_path,
        procs,
        ["--audio-in", "tone:440", "--audio-out", "none"],
        ["--audio-in", "none", "--audio-out", "none"],
    )
    bob.wait_for(is_stats_from("alice"), timeout=30)  # the call is up
    alice.send("/mute")
    assert alice.wait_for(lambda r: r["event"] == "muted")["muted"] is True
    state = bob.wait_for(lambda r: r["event"] == "media_state" and r["audio_muted"] is True, timeout=20)
    joined = next(r for r in bob.seen if r["event"] == "peer_joined" and r["name"] == "alice")
    assert state["peer"] == joined["peer"], (state, joined)
    alice.send("/unmute")
    bob.wait_for(lambda r: r["event"] == "media_state" and r["audio_muted"] is False, timeout=20)


@pytest.mark.parametrize(
    ("audio_in", "message"),
    [
        ("nosuchfile.wav", "no such WAV file: nosuchfile.wav"),
        ("microphone", "unknown audio input 'microphone'"),
    ],
)
def test_bad_audio_in_is_one_clear_error(tmp_path: Path, audio_in: str, message: str) -> None:
    for json_flag in ([], ["--json"]):
        result = run_bisc(
            "--data-dir",
            str(tmp_path),
            "create",
            "--bind",
            "127.0.0.1:0",
            "--audio-in",
            audio_in,
            "--audio-out",
            "none",
            "--exit-after",
            "10",
            *json_flag,
            timeout=60,
        )
        everything = result.stdout + result.stderr
        assert result.returncode != 0, everything
        assert "Traceback" not in everything, everything
        errors = [line for line in everything.splitlines() if message in line]
        assert len(errors) == 1, everything
        assert "cannot start voice" in errors[0], everything
