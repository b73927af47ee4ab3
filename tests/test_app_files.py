"""The Files sheet in a real window, driven by touch: a headless peer (a Node on the same loop)
shares and downloads; the app downloads into its storage dir (GuiOptions.storage_dir).

Bob's chunk server is slowed by a Throttle (its `outgoing_chunk` hook) so a download takes long
enough to be seen, cancelled or interrupted. Screenshots go to tests/artifacts/files*.png."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bisc.app import Channel, FileAnnounced, Node
from bisc.cli.transfers import human_bytes
from bisc.identity import EndpointId
from tests.gui_support import go_home, screenshot, tap, until

if TYPE_CHECKING:
    from kivy_app.app import BiscApp
    from kivy_app.screens.files import FileRow, FilesSheet

pytestmark = pytest.mark.asyncio(loop_scope="session")

MB = 1024 * 1024


class Throttle:
    """Bob's chunk server, slowed: one chunk at a time, `delay` seconds each, none while held."""

    def __init__(self, channel: Channel, delay: float) -> None:
        self.delay = delay
        self.sent = 0
        self.hold_at: int | None = None  # hold once this many chunks went out
        self._lock = asyncio.Lock()
        self._open = asyncio.Event()
        self._open.set()
        assert channel.sharing is not None
        channel.sharing.service.outgoing_chunk = self  # type: ignore[method-assign]

    async def __call__(self, peer: EndpointId, file_hash: bytes, index: int, data: bytes) -> bytes:
        async with self._lock:
            if self.hold_at is not None and self.sent >= self.hold_at:
                self._open.clear()
            await self._open.wait()
            await asyncio.sleep(self.delay)
            self.sent += 1
        return data

    def release(self) -> None:
        self.hold_at = None
        self._open.set()


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


@contextlib.asynccontextmanager
async def call_with_bob(gui: BiscApp, tmp_path: Path) -> AsyncIterator[Channel]:
    """A new channel created by touch, with Bob (headless) in it; Bob's channel."""
    await go_home(gui)
    await tap(gui.view("home").ids.create_button)
    await until(lambda: gui.channel is not None and gui.in_call, timeout=20, what="a new channel")
    assert gui.channel is not None
    ticket = gui.channel.ticket().to_text()
    bob_node = Node(
        data_dir=tmp_path / "bob",
        storage_dir=tmp_path / "bob-dl",
        display_name="Bob Builder",
        bind="127.0.0.1:0",
    )
    async with bob_node as bob:
        channel = await bob.join(ticket)
        await until(lambda: gui.bridge is not None and len(gui.bridge.members) == 2, timeout=15, what="Bob")
        yield channel
        await close_sheets(gui)  # an open sheet takes every touch, the Leave button's too
        await channel.leave()
    await go_home(gui)


async def close_sheets(gui: BiscApp) -> None:
    sheet = gui.view("files")
    views: list[Any] = [sheet.chooser(), sheet]
    for view in views:
        if view.get_parent_window() is not None:
            view.dismiss()
            await until(lambda: view.get_parent_window() is None, what="a sheet to close")  # noqa: B023


async def open_files(gui: BiscApp) -> FilesSheet:
    await tap(gui.view("call").ids.files_button)
    sheet: FilesSheet = gui.view("files")
    await until(lambda: sheet.get_parent_window() is not None, what="the Files sheet")
    return sheet


def row_of(sheet: FilesSheet, name: str) -> FileRow | None:
    return next((r for r in sheet.rows.values() if r.title == name and r.parent is not None), None)


async def wait_row(sheet: FilesSheet, name: str) -> FileRow:
    await until(lambda: row_of(sheet, name) is not None, timeout=15, what=f"{name} in the Files sheet")
    row = row_of(sheet, name)
    assert row is not None
    return row


async def until_row(
    row: FileRow, condition: Callable[[FileRow], bool], what: str, timeout: float = 20
) -> None:
    """`until`, and what the row showed if it timed out."""
    try:
        await until(lambda: condition(row), timeout=timeout, what=what)
    except AssertionError as exc:
        shown = (row.state, row.detail, row.progress_text, row.status)
        raise AssertionError(f"{exc}; the row showed {shown}") from None


def downloaded(gui: BiscApp, file_hash: bytes, name: str) -> Path:
    assert gui.options.storage_dir is not None
    return Path(gui.options.storage_dir) / "bisc" / file_hash.hex() / name


async def test_download_from_a_headless_peer(
    gui: BiscApp, kivy_window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random_file(tmp_path / "holiday photos.zip", 4 * MB)
    async with call_with_bob(gui, tmp_path) as bob:
        throttle = Throttle(bob, delay=0.1)  # 16 chunks: about 2 s
        info = await bob.share(data)
        sheet = await open_files(gui)
        row = await wait_row(sheet, data.name)
        assert row.detail == f"{human_bytes(4 * MB)} · From Bob Builder"
        assert row.ids.action_button.text == "Download" and row.ids.bar.opacity == 0

        fractions: list[float] = []
        row.bind(fraction=lambda _row, value: fractions.append(value))
        await tap(row.ids.action_button)
        await until(
            lambda: row.state == "downloading" and 0 < row.fraction < 1 and "left" in row.progress_text,
            timeout=20,
            what="a download in progress with its rate and ETA",
        )
        bar = row.ids.bar
        assert bar.opacity == 1 and bar.height > 0 and bar.width > 100 and bar.value == row.fraction
        assert f"{row.fraction:.0%}" in row.progress_text and "/s" in row.progress_text
        assert row.ids.action_button.text == "Cancel"
        throttle.hold_at = throttle.sent  # a picture of the download half way
        await screenshot(kivy_window, "files")
        throttle.release()

        await until(lambda: row.state == "complete", timeout=30, what="the download to complete")
        assert len(set(fractions)) >= 3 and fractions == sorted(fractions), fractions  # it advanced
        assert bar.value == 1 and bar.opacity == 1
        path = downloaded(gui, info.file_hash, data.name)
        assert path.read_bytes() == data.read_bytes()
        assert row.status == f"Downloaded to {path}"
        assert row.ids.action_button.text == "Open folder"

        # Open folder runs the platform's opener: here a stand-in xdg-open that records its argument.
        bin_dir, record = tmp_path / "bin", tmp_path / "opened.txt"
        bin_dir.mkdir()
        opener = bin_dir / "xdg-open"
        opener.write_text(f'#!/bin/sh\necho "$1" > "{record}"\n')
        opener.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        await tap(row.ids.action_button)
        await until(lambda: record.exists() and record.read_text().strip(), what="the opener to run")
        assert Path(record.read_text().strip()) == path.parent
        assert not sheet.status_bad, sheet.status
        # An opener that fails: one readable line in the sheet, no traceback.
        opener.write_text("#!/bin/sh\necho \"xdg-open: no method available for opening '$1'\" >&2\nexit 3\n")
        await tap(row.ids.action_button)
        await until(lambda: sheet.status_bad, what="the opener's failure")
        opened = f"Could not open the folder: The file manager did not open {path.parent} ("
        assert sheet.status.startswith(opened), sheet.status
        assert "xdg-open: no method available" in sheet.status and sheet.ids.status_label.opacity == 1
        await tap(sheet.ids.close_button)
        await until(lambda: sheet.get_parent_window() is None, what="the sheet to close")
    assert not gui.message, gui.message


async def test_share_through_the_chooser(gui: BiscApp, kivy_window: Any, tmp_path: Path) -> None:
    folder = tmp_path / "to share"
    (folder / "drafts").mkdir(parents=True)
    data = random_file(folder / "slides.pdf", 3 * MB)
    async with call_with_bob(gui, tmp_path) as bob:
        announced: list[FileAnnounced] = []

        async def read_bob() -> None:
            async for event in bob.events():
                if isinstance(event, FileAnnounced):
                    announced.append(event)

        reader = asyncio.ensure_future(read_bob())
        sheet = await open_files(gui)
        assert sheet.ids.empty_label.opacity == 1
        await tap(sheet.ids.share_button)
        picker = sheet.chooser()
        await until(lambda: picker.get_parent_window() is not None, what="the file chooser")
        chooser = picker.ids.chooser
        assert Path(chooser.path).is_dir()
        assert picker.ids.share_button.disabled  # nothing picked yet
        chooser.path = str(folder)  # what tapping through the folders does

        def entry() -> Any:
            nodes = chooser.layout.ids.treeview.iterate_all_nodes()
            return next((n for n in nodes if getattr(n, "path", None) == str(data)), None)

        await until(lambda: entry() is not None, what="slides.pdf in the chooser")
        assert entry().height >= gui.theme.touch  # a finger can hit it
        await tap(entry())
        assert picker.selected == str(data)
        assert picker.selected_info == f"slides.pdf ({human_bytes(3 * MB)})"
        await screenshot(kivy_window, "files-share")

        hashing: list[str] = []
        sheet.bind(hashing_text=lambda _sheet, text: hashing.append(text))
        await tap(picker.ids.share_button)
        row = await wait_row(sheet, "slides.pdf")
        assert row.state == "shared" and row.detail == f"{human_bytes(3 * MB)} · Shared by you"
        assert row.ids.action_button.text == "Open folder"  # ours: nothing to download
        assert any(t.startswith("Preparing slides.pdf for sharing: ") for t in hashing), hashing
        assert sheet.hashing_text == "" and sheet.ids.hashing_box.opacity == 0
        assert "You are sharing slides.pdf" in sheet.status and not sheet.status_bad

        await until(lambda: announced, timeout=15, what="Bob to hear of slides.pdf")
        file = announced[0].file
        assert (file.name, file.size) == ("slides.pdf", 3 * MB)
        path = await asyncio.wait_for(bob.download(file.file_hash).wait(), 30)
        assert path.read_bytes() == data.read_bytes()
        await until(lambda: "also Bob Builder" in row.detail, timeout=15, what="Bob as a second holder")

        # The chooser opens in the folder used last; a file gone before Share: a readable error.
        await tap(sheet.ids.share_button)
        await until(lambda: picker.get_parent_window() is not None, what="the file chooser again")
        assert chooser.path == str(folder)
        ghost = random_file(folder / "ghost.bin", 1000)
        chooser.selection = [str(ghost)]  # what tapping its entry does
        ghost.unlink()
        await tap(picker.ids.share_button)
        await until(lambda: sheet.status_bad, what="the share error")
        assert sheet.status == f"Could not share ghost.bin: {ghost} no longer exists"
        assert row_of(sheet, "ghost.bin") is None
        reader.cancel()
    assert not gui.message, gui.message


async def test_cancel_failure_and_a_peer_leaving(gui: BiscApp, kivy_window: Any, tmp_path: Path) -> None:
    movie = random_file(tmp_path / "movie.mkv", 4 * MB)
    notes = random_file(tmp_path / "notes.txt", MB + 12345)
    async with call_with_bob(gui, tmp_path) as bob:
        throttle = Throttle(bob, delay=0.02)
        throttle.hold_at = 3
        movie_info = await bob.share(movie)
        notes_info = await bob.share(notes)
        sheet = await open_files(gui)
        movie_row, notes_row = await wait_row(sheet, "movie.mkv"), await wait_row(sheet, "notes.txt")

        # Cancel mid-download: the verified part stays, Resume continues.
        await tap(movie_row.ids.action_button)
        await until(lambda: movie_row.fraction > 0, timeout=20, what="the first chunks")
        assert movie_row.state in ("downloading", "queued") and movie_row.ids.action_button.text == "Cancel"
        await tap(movie_row.ids.action_button)
        await until(lambda: movie_row.state == "cancelled", what="the cancel")
        assert movie_row.status.startswith("Cancelled at ") and movie_row.ids.bar.opacity == 0
        assert movie_row.ids.action_button.text == "Resume"
        throttle.release()

        # A download that cannot be stored: the reason, then Retry once the cause is gone.
        blocker = downloaded(gui, notes_info.file_hash, "notes.txt").parent
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_bytes(b"")  # a file where the download's folder must go
        await tap(notes_row.ids.action_button)
        await until(lambda: notes_row.state == "failed", timeout=20, what="the download to fail")
        assert notes_row.status.startswith(f"Failed: cannot write {blocker}"), notes_row.status
        assert notes_row.ids.status_label.opacity == 1 and notes_row.ids.action_button.text == "Retry"
        await screenshot(kivy_window, "files-states")
        blocker.unlink()
        await tap(notes_row.ids.action_button)
        await until(lambda: notes_row.state == "complete", timeout=30, what="the retried download")
        assert downloaded(gui, notes_info.file_hash, "notes.txt").read_bytes() == notes.read_bytes()

        # Bob leaves mid-download: the row says nobody has the file and waits for someone who does.
        throttle.hold_at = throttle.sent + 2
        await tap(movie_row.ids.action_button)
        await until(lambda: movie_row.state == "downloading", timeout=20, what="the resumed download")
        await bob.leave()
        await until_row(
            movie_row,
            lambda r: r.state == "queued" and "waiting for someone who has it" in r.progress_text,
            "the download to wait for a source",
        )
        assert movie_row.detail.endswith("Nobody who has it is online")
        assert not downloaded(gui, movie_info.file_hash, "movie.mkv").exists()
        await tap(movie_row.ids.action_button)  # Cancel
        await until(lambda: movie_row.state == "cancelled", what="the cancel")
        throttle.release()
    assert not gui.message, gui.message
