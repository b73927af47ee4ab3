"""Home: your name, create a channel, join one with a ticket, recent channels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kivy.properties import BooleanProperty, ListProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen

from bisc.errors import BiscError
from kivy_app.prefs import storage_dir
from kivy_app.recent import RecentChannel

if TYPE_CHECKING:
    from kivy_app.app import BiscApp


class RecentRow(ButtonBehavior, BoxLayout):  # type: ignore[misc]
    title = StringProperty("")
    detail = StringProperty("")
    ticket = StringProperty("")


class HomeScreen(Screen):  # type: ignore[misc]
    error = StringProperty("")  # shown under the join field: bad ticket, unreachable peers...
    recent = ListProperty()  # dicts: topic, ticket, title, detail
    working = BooleanProperty(False)
    storage_suggestion = StringProperty("")  # first run: where downloads would go
    storage_error = StringProperty("")

    def __init__(self, app: BiscApp, **kwargs: Any) -> None:
        self.app = app
        super().__init__(name="home", **kwargs)
        self.ids.name_input.text = app.display_name
        self.storage_suggestion = str(storage_dir(app.paths, app.settings))
        self.storage_card = self.ids.storage_question.__self__  # ids are weak: keep it once removed
        if not app.storage_question_pending():
            self.ids.form.remove_widget(self.storage_card)
        if app.settings_problem():
            app.notify("Your settings could not be read, so bisc uses the defaults (details in Settings).")

    # -- first run: where downloads go (asked once, answered with one tap) --------
    def accept_storage(self, folder: str | None = None) -> None:
        try:
            self.app.answer_storage_question(self.storage_suggestion if folder is None else folder)
        except BiscError as exc:
            self.storage_error = str(exc)
            return
        self.storage_error = ""
        self.ids.form.remove_widget(self.storage_card)

    def choose_storage(self) -> None:
        self.app.view("settings").picker.choose(Path(self.storage_suggestion), self.accept_storage)

    def on_pre_enter(self, *_args: object) -> None:
        self.refresh_recent()

    def refresh_recent(self) -> None:
        self.recent = [_row(r) for r in self.app.recent.load()]

    def on_recent(self, _instance: object, rows: list[dict[str, Any]]) -> None:
        box = self.ids.recent_list
        box.clear_widgets()
        for row in rows:
            widget = RecentRow(title=row["title"], detail=row["detail"], ticket=row["ticket"])
            widget.bind(on_release=lambda w: self.reopen(w.ticket))
            box.add_widget(widget)

    def _fail(self, text: str) -> None:
        self.error = text

    def create(self) -> None:
        self.error = ""
        self.app.spawn(
            self.app.create_channel(self.ids.name_input.text),
            on_error=self._fail,
            what="Could not create a channel",
        )

    def join(self, ticket: str | None = None) -> None:
        self.error = ""
        text = self.ids.ticket_input.text if ticket is None else ticket
        self.app.spawn(
            self.app.join_channel(self.ids.name_input.text, text), on_error=self._fail, what="Could not join"
        )


    def reopen(self, ticket: str) -> None:
        self.error = ""
        self.app.spawn(
            self.app.reopen_channel(self.ids.name_input.text, ticket),
            on_error=self._fail,
            what="Could not join",
        )


def _row(r: RecentChannel) -> dict[str, Any]:
    return {"topic": r.topic, "ticket": r.ticket, "title": r.title, "detail": f"{r.role} {r.when}"}


def create(app: BiscApp) -> HomeScreen:
    return HomeScreen(app)
