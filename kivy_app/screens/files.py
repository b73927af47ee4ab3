"""The Files sheet: every file announced in the channel (name, size, who has it), downloads with a
progress bar, rate, ETA, Cancel, Retry and Open folder; and "Share a file" through a file chooser
sized for fingers. The catalog rows come from the bridge (kivy_app/bridge.py, `files`); every
core call is an app method run through `app.spawn`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.properties import BooleanProperty, DictProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.filechooser import FileChooserController, FileChooserLayout
from kivy.uix.modalview import ModalView

from bisc.cli.transfers import human_bytes

if TYPE_CHECKING:
    from kivy_app.app import BiscApp

REFRESH_SECONDS = 0.5  # while downloading: the rate and ETA stay current between progress events
ACTIVE = ("queued", "downloading")
# state -> (action, button text); a cancelled or failed download keeps its verified chunks
ACTIONS = {
    "available": ("download", "Download"),
    "paused": ("download", "Resume"),
    "cancelled": ("download", "Resume"),
    "failed": ("download", "Retry"),
    "queued": ("cancel", "Cancel"),
    "downloading": ("cancel", "Cancel"),
    "complete": ("open", "Open folder"),
    "shared": ("open", "Open folder"),
}


def human_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s" if seconds < 600 else f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def who_has(row: dict[str, Any]) -> str:
    owners: list[str] = row["owners"]
    if row["mine"]:
        return "Shared by you" + (f", also {_names(owners)}" if owners else "")
    return f"From {_names(owners)}" if owners else "Nobody who has it is online"


def _names(names: list[str]) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    shown = ", ".join(names[:2])
    return f"{shown} and {len(names) - 2} more"


def describe(row: dict[str, Any]) -> dict[str, Any]:
    """What a FileRow shows for one catalog row (the bridge's dict)."""
    state, size, done = row["state"], row["size"], row["done"]
    fraction = 1.0 if size == 0 else min(1.0, done / size)
    pct = f"{fraction:.0%}"
    progress = status = ""
    kind = "muted"
    if state == "downloading":
        rate, eta = row["rate"], row["eta"]
        progress = f"{pct} · {human_bytes(done)} of {human_bytes(size)}"
        if rate > 0:
            progress += f" · {human_bytes(rate)}/s"
            progress += f" · {human_duration(eta)} left" if eta is not None else ""
        else:
            progress += " · waiting for data"
    elif state == "queued":
        progress = f"{pct} · " + ("connecting" if row["owners"] else "waiting for someone who has it")
    elif state == "complete":
        status, kind = f"Downloaded to {row['path']}" if row["path"] else "Downloaded", "good"
    elif state == "failed":
        again = f" Retry continues from {pct}." if done else ""
        status, kind = f"Failed: {row['reason'] or 'unknown reason'}.{again}", "bad"
    elif state == "cancelled":
        status = f"Cancelled at {pct}. Resume continues where it stopped."
    elif state == "paused":
        status = "Partly downloaded. Resume continues where it stopped."
    action, action_text = ACTIONS.get(state, ("", ""))
    return {
        "title": row["name"],
        "detail": f"{human_bytes(size)} · {who_has(row)}",
        "fraction": fraction,
        "show_bar": state in (*ACTIVE, "complete"),
        "progress_text": progress,
        "status": status,
        "status_kind": kind,
        "action": action,
        "action_text": action_text,
        # nobody to download from: the button would only produce an error
        "action_enabled": not (state == "available" and not row["owners"]),
    }


class FileRow(BoxLayout):  # type: ignore[misc]
    file_hash = StringProperty("")
    state = StringProperty("")
    path = StringProperty("")
    title = StringProperty("")
    detail = StringProperty("")
    fraction = NumericProperty(0.0)  # 0..1 of the file verified
    show_bar = BooleanProperty(False)
    progress_text = StringProperty("")
    status = StringProperty("")
    status_kind = StringProperty("muted")  # muted, good, bad
    action = StringProperty("")  # download, cancel, open, or "" (no button)
    action_text = StringProperty("")
    action_enabled = BooleanProperty(True)
    panel = ObjectProperty(None)

    def update(self, row: dict[str, Any]) -> None:
        self.file_hash, self.state, self.path = row["hash"], row["state"], row["path"]
        for name, value in describe(row).items():
            setattr(self, name, value)


class TouchListLayout(FileChooserLayout):  # type: ignore[misc]
    """FileChooserListLayout's list, with rows a finger can hit (its own are 24 px on desktops)."""

    VIEWNAME = "list"
    _ENTRY_TEMPLATE = "BiscFileEntry"  # files.kv

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fbind("on_entries_cleared", lambda *_a: setattr(self.ids.scrollview, "scroll_y", 1.0))


class TouchFileChooser(FileChooserController):  # type: ignore[misc]
    """A FileChooserListView with TouchListLayout (files.kv) and sizes as the rest of bisc writes them."""

    def get_nice_size(self, fn: str) -> str:
        try:
            return "" if os.path.isdir(fn) else human_bytes(os.stat(fn).st_size)
        except OSError:
            return ""


class ShareSheet(ModalView):  # type: ignore[misc]
    """Pick one file to share; opens in the last folder used, else the home directory."""

    selected = StringProperty("")
    selected_info = StringProperty("")

    def __init__(self, files: FilesSheet, **kwargs: Any) -> None:
        self.files = files
        self.last_folder = ""
        super().__init__(**kwargs)
        self.ids.chooser.bind(selection=self._on_selection)

    def show(self) -> None:
        start = self.last_folder if self.last_folder and os.path.isdir(self.last_folder) else str(Path.home())
        chooser = self.ids.chooser
        chooser.selection = []
        chooser.path = start
        chooser._trigger_update()  # the same folder again may hold new files: list it afresh
        self._on_selection(chooser, [])
        self.open()

    def go_up(self) -> None:
        chooser = self.ids.chooser
        chooser.path = str(Path(chooser.path).parent)

    def go_home(self) -> None:
        self.ids.chooser.path = str(Path.home())

    def _on_selection(self, _chooser: object, selection: list[str]) -> None:
        path = selection[0] if selection else ""
        self.selected = path if path and not os.path.isdir(path) else ""
        try:
            size = f" ({human_bytes(os.stat(self.selected).st_size)})" if self.selected else ""
        except OSError:
            size = ""
        self.selected_info = f"{Path(self.selected).name}{size}" if self.selected else "Tap a file to pick it"

    def share(self) -> None:
        if not self.selected:
            return
        self.last_folder = str(Path(self.selected).parent)
        self.dismiss()
        self.files.share(self.selected)


class FilesSheet(ModalView):  # type: ignore[misc]
    status = StringProperty("")  # the last action's outcome; errors in the danger colour
    status_bad = BooleanProperty(False)
    hashing = DictProperty()  # file name -> fraction hashed, while sharing
    hashing_text = StringProperty("")
    hashing_fraction = NumericProperty(0.0)
    storage = StringProperty("")
    count = NumericProperty(0)
    fixed_height = NumericProperty(0)  # everything but the list (files.kv): the sheet fits its rows

    def __init__(self, app: BiscApp, **kwargs: Any) -> None:
        self.app = app
        self.name = "files"
        self.rows: dict[str, FileRow] = {}
        self._bridge: Any = None
        self._picker: ShareSheet | None = None
        self._ticker: Any = None
        super().__init__(**kwargs)
        app.bind(bridge=self._on_bridge)
        self._on_bridge(app, app.bridge)

    def show(self) -> None:
        self.status = ""
        node = self.app.node
        self.storage = str(node.storage_dir / "bisc") if node is not None else ""
        self.open()
        if self._ticker is None:
            self._ticker = Clock.schedule_interval(self._tick, REFRESH_SECONDS)

    def on_dismiss(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._picker is not None and self._picker.get_parent_window() is not None:
            self._picker.dismiss()

    def chooser(self) -> ShareSheet:
        if self._picker is None:
            self._picker = ShareSheet(self)
        return self._picker

    # -- bridge -> rows --------------------------------------------------------
    def _on_bridge(self, _app: object, bridge: Any) -> None:
        if self._bridge is not None:
            self._bridge.unbind(files=self._on_files, file_notice=self._on_notice)
        self._bridge = bridge
        self.ids.list.clear_widgets()
        self.rows.clear()
        self.count = 0
        if bridge is None:
            self.dismiss()  # the channel was left
            return
        bridge.bind(files=self._on_files, file_notice=self._on_notice)
        self._on_files(bridge, bridge.files)

    def _on_notice(self, _bridge: object, text: str) -> None:
        if text:
            self._say(text, bad=True)

    def _on_files(self, _bridge: object, files: list[dict[str, Any]]) -> None:
        box = self.ids.list
        order = [f["hash"] for f in files]
        if order != [w.file_hash for w in reversed(box.children)]:  # new, gone or renamed: rebuild
            box.clear_widgets()
            self.rows = {key: self.rows.get(key) or FileRow(panel=self) for key in order}
            for key in order:
                box.add_widget(self.rows[key])
        for info in files:
            self.rows[info["hash"]].update(info)
        self.count = len(files)

    def _tick(self, _dt: float) -> None:
        if self._bridge is not None and any(r.state in ACTIVE for r in self.rows.values()):
            self._bridge.refresh_files()

    # -- actions -------------------------------------------------------------
    def act(self, row: FileRow) -> None:
        app, fail = self.app, self._fail
        if row.action == "download":
            app.spawn(app.download_file(row.file_hash), on_error=fail, what=f"Could not download {row.title}")
        elif row.action == "cancel":
            app.spawn(app.cancel_download(row.file_hash), on_error=fail, what=f"Could not cancel {row.title}")
        elif row.action == "open":
            app.spawn(app.open_file_folder(row.path), on_error=fail, what="Could not open the folder")

    def share(self, path: str) -> None:
        name = Path(path).name
        self.hashing[name] = 0.0
        self._show_hashing()

        def progress(done: int, total: int) -> None:
            if name in self.hashing:
                self.hashing[name] = done / total if total else 1.0
                self._show_hashing()

        async def run() -> None:
            try:
                info = await self.app.share_file(path, progress)
            finally:
                self.hashing.pop(name, None)
                self._show_hashing()
            self._say(f"You are sharing {info.name} ({human_bytes(info.size)}) with everyone in the channel.")

        self.app.spawn(run(), on_error=self._fail, what=f"Could not share {name}")

    def _show_hashing(self) -> None:
        if not self.hashing:
            self.hashing_text, self.hashing_fraction = "", 0.0
            return
        fraction = sum(self.hashing.values()) / len(self.hashing)
        names = next(iter(self.hashing)) if len(self.hashing) == 1 else f"{len(self.hashing)} files"
        self.hashing_text = f"Preparing {names} for sharing: {fraction:.0%}"
        self.hashing_fraction = fraction

    def _say(self, text: str, *, bad: bool = False) -> None:
        self.status, self.status_bad = text, bad

    def _fail(self, text: str) -> None:
        self._say(text, bad=True)


def create(app: BiscApp) -> FilesSheet:
    return FilesSheet(app)
