"""File sharing through the `bisc` command, as a user runs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_cli_channels import BiscProcess

pytestmark = pytest.mark.timeout(120)


def test_share_and_download_all(tmp_path: Path) -> None:
    source = tmp_path / "holiday video.bin"
    source.write_bytes(os.urandom(3 * 256 * 1024 + 777))
    common = ["--bind", "127.0.0.1:0", "--json"]
    alice = BiscProcess(
        "--data-dir", str(tmp_path / "a"), "create", "--name", "alice", "--share", str(source), *common
    )
    procs = [alice]
    try:
        ticket = alice.next_json()["ticket"]
        shared = alice.wait_for(lambda r: r["event"] == "file_shared")
        assert shared["name"] == "holiday video.bin" and shared["size"] == source.stat().st_size
        storage = tmp_path / "downloads"
        bob = BiscProcess(
            "--data-dir",
            str(tmp_path / "b"),
            "join",
            ticket,
            "--name",
            "bob",
            "--download",
            "all",
            "--storage",
            str(storage),
            *common,
        )
        procs.append(bob)
        announced = bob.wait_for(lambda r: r["event"] == "file_announced")
        assert announced["hash"] == shared["hash"] and announced["name"] == "holiday video.bin"
        done = bob.wait_for(lambda r: r["event"] in ("download_complete", "download_failed"), timeout=60)
        assert done["event"] == "download_complete", done
        assert done["hash"] == shared["hash"] and done["verified"] is True
        path = Path(done["path"])
        assert path == storage / "bisc" / shared["hash"] / "holiday video.bin"
        assert path.read_bytes() == source.read_bytes()
    finally:
        for proc in procs:
            proc.stop()


def test_sigkill_mid_download_then_resume(tmp_path: Path) -> None:
    """A downloader killed with SIGKILL resumes from its verified chunks on restart."""
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(64 * 1024 * 1024))
    common = ["--bind", "127.0.0.1:0", "--json"]
    alice = BiscProcess(
        "--data-dir", str(tmp_path / "a"), "create", "--name", "alice", "--share", str(source), *common
    )
    procs = [alice]
    storage = tmp_path / "downloads"
    bob_args = [
        "--data-dir",
        str(tmp_path / "b"),
        "join",
        "",
        "--name",
        "bob",
        "--download",
        "all",
        "--storage",
        str(storage),
        *common,
    ]
    try:
        ticket = alice.next_json()["ticket"]
        bob_args[3] = ticket
        bob = BiscProcess(*bob_args)
        procs.append(bob)
        size = source.stat().st_size
        progress = bob.wait_for(
            lambda r: r["event"] == "download_progress" and r["bytes_done"] > 0, timeout=60
        )
        bob.proc.kill()  # SIGKILL: no chance to save anything more
        bob.proc.wait(10)
        assert progress["bytes_done"] < size, "the download finished before it could be killed"

        again = BiscProcess(*bob_args)
        procs.append(again)
        first = again.wait_for(lambda r: r["event"] in ("download_progress", "download_complete"), timeout=60)
        if first["event"] == "download_progress":
            assert first["bytes_done"] > 0, first  # resumed, not restarted from zero
        done = again.wait_for(lambda r: r["event"] in ("download_complete", "download_failed"), timeout=90)
        assert done["event"] == "download_complete", done
        assert Path(done["path"]).read_bytes() == source.read_bytes()
    finally:
        for proc in procs:
            proc.stop()


def test_interactive_files_and_get(tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_bytes(b"meeting notes\n" * 1000)
    common = ["--bind", "127.0.0.1:0", "--json"]
    alice = BiscProcess("--data-dir", str(tmp_path / "a"), "create", "--name", "alice", *common, stdin=True)
    procs = [alice]
    try:
        ticket = alice.next_json()["ticket"]
        bob = BiscProcess(
            "--data-dir",
            str(tmp_path / "b"),
            "join",
            ticket,
            "--name",
            "bob",
            "--storage",
            str(tmp_path / "dl"),
            *common,
            stdin=True,
        )
        procs.append(bob)
        bob.wait_for(lambda r: r["event"] == "peer_joined" and r["name"] == "alice")
        alice.send(f"/share {source}")
        shared = alice.wait_for(lambda r: r["event"] == "file_shared")
        bob.wait_for(lambda r: r["event"] == "file_announced" and r["hash"] == shared["hash"])
        bob.send("/files")
        listing = bob.wait_for(lambda r: r["event"] == "file")
        assert "notes.txt" in listing["line"] and shared["hash"][:16] in listing["line"]
        bob.send("/get " + shared["hash"][:12])
        done = bob.wait_for(lambda r: r["event"] in ("download_complete", "download_failed"), timeout=30)
        assert done["event"] == "download_complete" and Path(done["path"]).read_bytes() == source.read_bytes()
        bob.send("/get ffff")
        assert "match" in bob.wait_for(lambda r: r["event"] == "error")["message"]
        alice.send("/share /no/such/file")
        assert "cannot share" in alice.wait_for(lambda r: r["event"] == "error")["message"]
    finally:
        for proc in procs:
            proc.stop()
